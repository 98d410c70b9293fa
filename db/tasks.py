"""Video tasks: their rows, their states, and the credit changes that go with each state.

States (every change is written before the bot acts on it):

    submitting ──provider accepted──▶ rendering ──SUCCESS──▶ delivering ──posted──▶ done
        │                                 │
        ├─provider refused──▶ rejected    ├─FAILED──▶ failed
        └─answer never came─▶ uncertain   └─too long─▶ timed_out

Every state after the arrow-less ones (rejected, uncertain, failed, timed_out) refunds the
charge in the same transaction that enters it.

Work on a task is claimed, never assumed: the process that submits, polls or delivers it
holds a lease on its row (`lease_owner`, `lease_expires_at`), and every write below that
moves the task on names its `owner` and changes nothing when the lease is someone else's.
A process that lost its lease (paused, cut off) therefore cannot post or refund after
another one took the task over. Writes that end a step hand the lease back.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection
from dataclasses import dataclass, fields

from db import Connection, Database, IntegrityError, Row, budgets, utcnow
from db import now as current_time
from db.credits import charge_task, ensure_member, refund_task
from db.states import TaskState


@dataclass(frozen=True)
class NewTask:
    """What a member asked for, before it is recorded."""

    guild_id: int
    channel_id: int
    user_id: int
    prompt: str
    aspect_ratio: str
    duration: int
    sound: bool
    image_urls: tuple[str, ...]
    cost: int
    upload_limit: int


@dataclass(frozen=True)
class Task:
    """A recorded task."""

    id: str
    guild_id: int
    channel_id: int
    user_id: int
    card_message_id: int | None
    prompt: str
    aspect_ratio: str
    duration: int
    sound: bool
    image_urls: tuple[str, ...]
    cost: int
    upload_limit: int
    provider_task_id: str | None
    state: TaskState
    next_poll_at: float | None
    poll_attempts: int
    delivery_attempts: int
    result_urls: tuple[str, ...]
    error: str | None
    delivery_message_id: int | None
    delivery_channel_id: int | None
    delivered_via: str | None
    created_at: str
    submitted_at: str | None
    finished_at: str | None
    updated_at: str
    running_seconds: float | None
    ready_seconds: float | None
    lease_owner: str | None
    lease_expires_at: float | None

    @classmethod
    def from_row(cls, row: Row) -> Task:
        """Build a task from a `SELECT * FROM tasks` row."""
        # Only the task's own columns: PostgreSQL's table also has an explicit rowid.
        values = {field.name: row[field.name] for field in fields(cls)}
        values["sound"] = bool(values["sound"])
        values["state"] = TaskState(values["state"])
        values["image_urls"] = tuple(json.loads(values["image_urls"]))
        values["result_urls"] = tuple(json.loads(values["result_urls"]))
        return cls(**values)


def new_task_id() -> str:
    """Return a short id a member can read off the task card and type back."""
    return secrets.token_hex(5)


async def reserve(
    db: Database,
    request: NewTask,
    *,
    owner: str,
    lease_until: float,
    starting_credits: int,
    roles: Collection[int] = (),
    max_credits_per_day: int | None = None,
) -> tuple[Task, int]:
    """Charge the member and record the task in one transaction; return it and the balance left.

    Every budget rule is checked inside that transaction, so members acting at the same
    moment can never pass a limit together. Raises a BudgetRefusal or NotEnoughCredits
    (recording nothing) when a rule says no.
    """
    now = utcnow()
    async with db.transaction() as conn:
        await ensure_member(conn, request.guild_id, request.user_id, starting_credits, roles)
        await _check_budgets(conn, request, max_credits_per_day)
        task_id = await _insert_task(conn, request, now, owner, lease_until)
        # Raises NotEnoughCredits, rolling back the insert above.
        balance = await charge_task(conn, request.guild_id, request.user_id, task_id, request.cost)
        task = await _get_in(conn, task_id)
    return task, balance


async def _insert_task(
    conn: Connection, request: NewTask, now: str, owner: str, lease_until: float
) -> str:
    """Record the task under a fresh id, claimed by its submitter, and return the id."""
    for _ in range(3):
        task_id = new_task_id()
        # A fresh random id may collide with an old one (rare, but ids are short); DO NOTHING
        # lets the transaction go on with another id where a failed insert would abort it.
        inserted = await conn.execute(
            "INSERT INTO tasks (id, guild_id, channel_id, user_id, prompt, aspect_ratio, duration, "
            "sound, image_urls, cost, upload_limit, state, created_at, updated_at, "
            "lease_owner, lease_expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (
                task_id,
                request.guild_id,
                request.channel_id,
                request.user_id,
                request.prompt,
                request.aspect_ratio,
                request.duration,
                int(request.sound),
                json.dumps(list(request.image_urls)),
                request.cost,
                request.upload_limit,
                TaskState.SUBMITTING.value,
                now,
                now,
                owner,
                lease_until,
            ),
        )
        if inserted == 1:
            return task_id
    raise IntegrityError("three fresh task ids were all taken")


async def _check_budgets(
    conn: Connection, request: NewTask, max_credits_per_day: int | None
) -> None:
    # Two reservations at once (two processes on PostgreSQL) check these limits one after
    # the other: the server's after the member's (ensure_member), then all servers'.
    await conn.serialize("server", request.guild_id)
    if max_credits_per_day is not None:
        await conn.serialize("all servers")
    rules = await budgets.budget_in(conn, request.guild_id)
    moment = current_time()
    active = await budgets.active_tasks_in(conn, request.guild_id, request.user_id)
    if active >= rules.max_concurrent:
        raise budgets.TooManyActive(rules.max_concurrent)
    if rules.cap is not None:
        spent = await budgets.spent_in(conn, request.guild_id, rules.cap_period, moment)
        if spent + request.cost > rules.cap:
            resets = budgets.next_period_start(rules.cap_period, moment)
            raise budgets.ServerCapReached(rules.cap, rules.cap_period, spent, resets)
    if max_credits_per_day is not None:
        spent = await budgets.spent_in(conn, None, "day", moment)
        if spent + request.cost > max_credits_per_day:
            resets = budgets.next_period_start("day", moment)
            raise budgets.OperatorCeilingReached(max_credits_per_day, spent, resets)


async def get(db: Database, task_id: str) -> Task | None:
    """Return the task with our id or the provider's id."""
    row = await db.fetchone(
        "SELECT * FROM tasks WHERE id = ? OR provider_task_id = ?", (task_id, task_id)
    )
    return None if row is None else Task.from_row(row)


async def _get_in(conn: Connection, task_id: str) -> Task:
    row = await conn.fetchone("SELECT * FROM tasks WHERE id = ?", (task_id,))
    if row is None:
        raise LookupError(f"task {task_id} vanished")
    return Task.from_row(row)


async def _move(
    conn: Connection,
    task_id: str,
    to: TaskState,
    *,
    owner: str,
    allowed_from: Collection[TaskState],
    release: bool = True,
    **columns: object,
) -> bool:
    """Move the task to `to` if `owner` holds it and it is in one of `allowed_from`.

    `columns` are set too; the lease is handed back unless `release` is False.
    """
    now = utcnow()
    columns = {"state": to.value, "updated_at": now, **columns}
    if to.finished:
        columns.setdefault("finished_at", now)
        columns.setdefault("next_poll_at", None)
    if release:
        columns.update(lease_owner=None, lease_expires_at=None)
    assignments = ", ".join(f"{name} = ?" for name in columns)
    placeholders = ", ".join("?" for _ in allowed_from)
    changed = await conn.execute(
        f"UPDATE tasks SET {assignments} "  # noqa: S608 - names are ours
        f"WHERE id = ? AND lease_owner = ? AND state IN ({placeholders})",
        (*columns.values(), task_id, owner, *(state.value for state in allowed_from)),
    )
    return changed == 1


async def set_card(db: Database, task_id: str, message_id: int) -> None:
    """Remember the message that shows the task card, so later states can edit it."""
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE tasks SET card_message_id = ?, updated_at = ? WHERE id = ?",
            (message_id, utcnow(), task_id),
        )


async def mark_rendering(
    db: Database, task_id: str, provider_task_id: str, *, owner: str, next_poll_at: float
) -> bool:
    """Record the provider's task id; whichever process polls first takes it from here."""
    async with db.transaction() as conn:
        return await _move(
            conn,
            task_id,
            TaskState.RENDERING,
            owner=owner,
            allowed_from=(TaskState.SUBMITTING,),
            provider_task_id=provider_task_id,
            submitted_at=utcnow(),
            next_poll_at=next_poll_at,
        )


async def finish_with_refund(
    db: Database,
    task_id: str,
    to: TaskState,
    error: str,
    *,
    owner: str,
    allowed_from: Collection[TaskState],
) -> int | None:
    """Enter a refunding end state and give the credits back in the same transaction.

    Returns the member's new balance, or None when the task was not in `allowed_from`
    (someone else finished it first), had been refunded already, or is not `owner`'s.
    """
    if not to.refunded:
        raise ValueError(f"{to} does not refund")
    async with db.transaction() as conn:
        moved = await _move(
            conn, task_id, to, owner=owner, allowed_from=allowed_from, error=error[:500]
        )
        if not moved:
            return None
        return await refund_task(conn, task_id, note=f"{to.value}: {error}"[:200])


async def still_running(
    db: Database, task_id: str, *, owner: str, running_seconds: float, next_poll_at: float
) -> None:
    """Count a poll that found the task rendering `running_seconds` in; set the next one."""
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE tasks SET poll_attempts = poll_attempts + 1, running_seconds = ?, "
            "next_poll_at = ?, updated_at = ?, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE id = ? AND lease_owner = ? AND state = 'rendering'",
            (running_seconds, next_poll_at, utcnow(), task_id, owner),
        )


async def reschedule(db: Database, task_id: str, next_attempt_at: float, *, owner: str) -> None:
    """Set when to poll (or try delivering) the task again; a repeated poll is counted."""
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE tasks SET poll_attempts = poll_attempts "
            "+ CASE WHEN state = 'rendering' THEN 1 ELSE 0 END, "
            "next_poll_at = ?, updated_at = ?, lease_owner = NULL, lease_expires_at = NULL "
            "WHERE id = ? AND lease_owner = ? AND state IN ('rendering', 'delivering')",
            (next_attempt_at, utcnow(), task_id, owner),
        )


async def begin_delivery_attempt(db: Database, task_id: str, *, owner: str) -> int:
    """Count a delivery attempt before it touches Discord; return which attempt this is.

    An attempt above 1 means an earlier one may have posted the clip without living to
    record it, so the caller looks for that post before posting again. 0: the task is no
    longer delivering, or no longer `owner`'s.
    """
    async with db.transaction() as conn:
        row = await conn.fetchone(
            "UPDATE tasks SET delivery_attempts = delivery_attempts + 1, updated_at = ? "
            "WHERE id = ? AND lease_owner = ? AND state = 'delivering' "
            "RETURNING delivery_attempts",
            (utcnow(), task_id, owner),
        )
    return 0 if row is None else int(row[0])


async def mark_delivering(
    db: Database,
    task_id: str,
    result_urls: tuple[str, ...],
    *,
    owner: str,
    ready_seconds: float | None,
    next_poll_at: float,
) -> bool:
    """Record the clip's URLs; delivery may now begin, by the same owner.

    `ready_seconds` is when the render was seen done, for the schedule to learn from; None
    when its polls bound it too loosely to teach anything.
    """
    async with db.transaction() as conn:
        return await _move(
            conn,
            task_id,
            TaskState.DELIVERING,
            owner=owner,
            allowed_from=(TaskState.RENDERING,),
            release=False,
            result_urls=json.dumps(list(result_urls)),
            ready_seconds=ready_seconds,
            next_poll_at=next_poll_at,
        )


async def mark_delivered(
    db: Database,
    task_id: str,
    *,
    owner: str,
    via: str,
    message_id: int | None,
    channel_id: int | None,
) -> bool:
    """Record where the clip was posted; the task is done."""
    async with db.transaction() as conn:
        return await _move(
            conn,
            task_id,
            TaskState.DONE,
            owner=owner,
            allowed_from=(TaskState.DELIVERING,),
            delivered_via=via,
            delivery_message_id=message_id,
            delivery_channel_id=channel_id,
        )


async def claim_due(
    db: Database, *, owner: str, now: float, lease_until: float, limit: int
) -> list[Task]:
    """Claim up to `limit` tasks whose next poll or delivery attempt has come, soonest first."""
    tasks = await _claim(
        db,
        "state IN ('rendering', 'delivering') AND next_poll_at <= ?",
        (now,),
        order="next_poll_at, rowid",
        owner=owner,
        now=now,
        lease_until=lease_until,
        limit=limit,
    )
    return sorted(tasks, key=lambda task: task.next_poll_at or 0.0)


async def claim_stranded(
    db: Database, *, owner: str, now: float, lease_until: float, limit: int = 100
) -> list[Task]:
    """Claim tasks charged but never confirmed by the provider, whose submitter is gone.

    Its submitter renews the lease while it waits for the provider; a lease that ran out
    means that process died or lost its database before it could record the answer.
    """
    tasks = await _claim(
        db,
        "state = 'submitting'",
        (),
        order="created_at",
        owner=owner,
        now=now,
        lease_until=lease_until,
        limit=limit,
    )
    return sorted(tasks, key=lambda task: task.created_at)


async def _claim(
    db: Database,
    where: str,
    params: tuple[object, ...],
    *,
    order: str,
    owner: str,
    now: float,
    lease_until: float,
    limit: int,
) -> list[Task]:
    """Lease to `owner` up to `limit` free tasks matching `where`, first by `order`.

    A task is free when nobody holds it or its holder's lease ran out (that process died or
    stalled); on PostgreSQL, rows another process is claiming this instant are skipped.
    """
    async with db.transaction() as conn:
        rows = await conn.fetchall(
            "UPDATE tasks SET lease_owner = ?, lease_expires_at = ? WHERE id IN ("  # noqa: S608 - ours
            f"SELECT id FROM tasks WHERE {where} "
            "AND (lease_expires_at IS NULL OR lease_expires_at < ?) "
            f"ORDER BY {order} LIMIT ?{db.skip_locked}) RETURNING *",
            (owner, lease_until, *params, now, limit),
        )
    return [Task.from_row(row) for row in rows]


async def next_due_at(db: Database, *, owner: str) -> float | None:
    """Return when the soonest poll or delivery attempt of a task `owner` could claim is due."""
    # One round trip for the poller's every tick: the soonest free task, and the soonest
    # moment another process's task comes free (its lease runs out, if not handed back).
    row = await db.fetchone(
        "SELECT (SELECT next_poll_at FROM tasks WHERE state IN ('rendering', 'delivering') "
        "AND lease_owner IS NULL ORDER BY next_poll_at LIMIT 1), "
        "(SELECT MIN(CASE WHEN next_poll_at > lease_expires_at THEN next_poll_at "
        "ELSE lease_expires_at END) FROM tasks WHERE lease_owner IS NOT NULL "
        "AND lease_owner <> ? AND state IN ('rendering', 'delivering'))",
        (owner,),
    )
    assert row is not None
    found = [float(value) for value in (row[0], row[1]) if value is not None]
    return min(found, default=None)


async def holds(db: Database, task_id: str, owner: str, now: float) -> bool:
    """Whether `owner`'s lease on the task still runs at `now`."""
    row = await db.fetchone(
        "SELECT 1 FROM tasks WHERE id = ? AND lease_owner = ? AND lease_expires_at > ?",
        (task_id, owner, now),
    )
    return row is not None


async def renew_leases(
    db: Database, *, owner: str, task_ids: Collection[str], lease_until: float
) -> int:
    """Extend `owner`'s leases on the tasks it is working on; return how many it still holds."""
    ids = list(task_ids)
    held = 0
    async with db.transaction() as conn:
        # Chunks keep every statement far below SQLite's limit on parameters.
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            placeholders = ", ".join("?" for _ in chunk)
            held += await conn.execute(
                "UPDATE tasks SET lease_expires_at = ? "  # noqa: S608 - only placeholders
                f"WHERE lease_owner = ? AND id IN ({placeholders})",
                (lease_until, owner, *chunk),
            )
    return held


async def release_leases(db: Database, *, owner: str) -> int:
    """Hand back every lease `owner` holds; return how many."""
    async with db.transaction() as conn:
        return await conn.execute(
            "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner = ?",
            (owner,),
        )


async def release_other_leases(db: Database, *, owner: str) -> int:
    """Hand back every lease not `owner`'s: for a process that knows it is the only one."""
    async with db.transaction() as conn:
        return await conn.execute(
            "UPDATE tasks SET lease_owner = NULL, lease_expires_at = NULL "
            "WHERE lease_owner IS NOT NULL AND lease_owner <> ?",
            (owner,),
        )


async def for_member(
    db: Database, guild_id: int, user_id: int, *, limit: int, offset: int = 0
) -> list[Task]:
    """Return the member's tasks in this server, newest first."""
    rows = await db.fetchall(
        "SELECT * FROM tasks WHERE guild_id = ? AND user_id = ? "
        "ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?",
        (guild_id, user_id, limit, offset),
    )
    return [Task.from_row(row) for row in rows]


async def count_for_member(db: Database, guild_id: int, user_id: int) -> int:
    """Return how many tasks the member started in this server."""
    row = await db.fetchone(
        "SELECT COUNT(*) FROM tasks WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
    )
    return 0 if row is None else int(row[0])


async def search(
    db: Database, guild_id: int, user_id: int | None, text: str, *, limit: int
) -> list[Task]:
    """Return recent tasks in the server (of one member, unless None) whose id or prompt match."""
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = await db.fetchall(
        "SELECT * FROM tasks WHERE guild_id = ? AND (CAST(? AS BIGINT) IS NULL OR user_id = ?) "
        # LOWER: SQLite's LIKE ignores case, PostgreSQL's does not.
        "AND (LOWER(id) LIKE LOWER(?) ESCAPE '\\' OR LOWER(prompt) LIKE LOWER(?) ESCAPE '\\') "
        "ORDER BY created_at DESC, rowid DESC LIMIT ?",
        (guild_id, user_id, user_id, pattern, pattern, limit),
    )
    return [Task.from_row(row) for row in rows]


@dataclass(frozen=True)
class FinishedRender:
    """When one render of a preset ended, as its polls bound it (seconds after submission)."""

    duration: int
    sound: bool
    running_seconds: float | None
    """The last poll that saw it running; None when its first poll found it done."""
    ready_seconds: float


async def recent_renders(db: Database, *, per_preset: int) -> list[FinishedRender]:
    """Return the last `per_preset` finished renders of every preset, newest first."""
    presets = await db.fetchall(
        "SELECT DISTINCT duration, sound FROM tasks WHERE ready_seconds IS NOT NULL"
    )
    found: list[FinishedRender] = []
    for preset in presets:
        rows = await db.fetchall(
            "SELECT running_seconds, ready_seconds FROM tasks "
            "WHERE ready_seconds IS NOT NULL AND duration = ? AND sound = ? "
            "ORDER BY submitted_at DESC LIMIT ?",
            (preset["duration"], preset["sound"], per_preset),
        )
        found.extend(
            FinishedRender(
                preset["duration"],
                bool(preset["sound"]),
                row["running_seconds"],
                float(row["ready_seconds"]),
            )
            for row in rows
        )
    return found


async def spread_overdue(db: Database, now: float, *, per_second: float) -> int:
    """Give overdue rendering tasks staggered poll times, oldest first, at `per_second`.

    After a restart thousands of tasks can be due at once; spreading them in one statement
    means every one is scheduled at once, and the provider sees a steady, fair rate.
    """
    async with db.transaction() as conn:
        # The casts keep PostgreSQL from reading the rate as a whole number.
        return await conn.execute(
            "UPDATE tasks SET next_poll_at = CAST(? AS DOUBLE PRECISION) "
            "+ ranked.position / CAST(? AS DOUBLE PRECISION) FROM ("
            "SELECT id, ROW_NUMBER() OVER (ORDER BY next_poll_at, id) - 1 AS position "
            "FROM tasks WHERE state = 'rendering' AND next_poll_at <= ?) AS ranked "
            "WHERE tasks.id = ranked.id",
            (now, per_second, now),
        )
