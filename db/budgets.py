"""What admins decide about spending: allowances, role allowances, caps, concurrency.

Periods are calendar periods in UTC: a day starts at 00:00, a week on Monday, a month on
the 1st. Every change of a setting is recorded with who made it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, overload

from db import Connection, Database, iso, utcnow
from db.states import ACTIVE, SPENDING, sql_list

Period = Literal["day", "week", "month", "none"]
CapPeriod = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month", "none")
DEFAULT_MAX_CONCURRENT = 2


@overload
def period_start(period: CapPeriod, moment: datetime) -> datetime: ...
@overload
def period_start(period: Period, moment: datetime) -> datetime | None: ...
def period_start(period: Period, moment: datetime) -> datetime | None:
    """Return when the calendar period holding `moment` began (None for `none`)."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return None


@overload
def next_period_start(period: CapPeriod, moment: datetime) -> datetime: ...
@overload
def next_period_start(period: Period, moment: datetime) -> datetime | None: ...
def next_period_start(period: Period, moment: datetime) -> datetime | None:
    """Return when the period after the one holding `moment` begins (None for `none`)."""
    start = period_start(period, moment)
    if start is None:
        return None
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


class BudgetRefusal(Exception):
    """A generation refused by a budget rule, before anything is charged."""


class TooManyActive(BudgetRefusal):
    """The member already has as many tasks rendering as the server allows."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} tasks already active")
        self.limit = limit


class ServerCapReached(BudgetRefusal):
    """The server's spending cap for this period would be passed."""

    def __init__(self, cap: int, period: CapPeriod, spent: int, resets_at: datetime) -> None:
        super().__init__(f"cap {cap} per {period} reached ({spent} spent)")
        self.cap = cap
        self.period = period
        self.spent = spent
        self.resets_at = resets_at


class OperatorCeilingReached(BudgetRefusal):
    """The operator's ceiling across all servers for this UTC day would be passed."""

    def __init__(self, ceiling: int, spent: int, resets_at: datetime) -> None:
        super().__init__(f"daily ceiling {ceiling} reached ({spent} spent)")
        self.ceiling = ceiling
        self.spent = spent
        self.resets_at = resets_at


@dataclass(frozen=True)
class GuildBudget:
    """One server's spending settings (defaults where the admins set nothing)."""

    guild_id: int
    allowance: int | None = None
    allowance_period: Period = "none"
    cap: int | None = None
    cap_period: CapPeriod = "month"
    max_concurrent: int = DEFAULT_MAX_CONCURRENT


@dataclass(frozen=True)
class Allowance:
    """What a member is owed: `amount` per `period` (or once, for `none`)."""

    amount: int
    period: Period

    def next_refill(self, moment: datetime) -> datetime | None:
        """Return when the balance is next raised back to `amount`."""
        return next_period_start(self.period, moment)


async def budget_in(conn: Connection, guild_id: int) -> GuildBudget:
    """Return the server's settings inside an open transaction."""
    row = await conn.fetchone("SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,))
    if row is None:
        return GuildBudget(guild_id)
    return GuildBudget(
        guild_id=guild_id,
        allowance=row["allowance"],
        allowance_period=row["allowance_period"],
        cap=row["cap"],
        cap_period=row["cap_period"],
        max_concurrent=row["max_concurrent"],
    )


async def budget(db: Database, guild_id: int) -> GuildBudget:
    """Return the server's settings."""
    async with db.transaction() as conn:
        return await budget_in(conn, guild_id)


async def allowance_in(
    conn: Connection, guild_id: int, roles: Collection[int], default_credits: int
) -> Allowance:
    """Return the highest allowance the member gets: the server's or one of their roles'."""
    settings = await budget_in(conn, guild_id)
    best = Allowance(
        default_credits if settings.allowance is None else settings.allowance,
        settings.allowance_period,
    )
    # Every member holds @everyone, whose role id is the server's id.
    roles = {*roles, guild_id}
    if roles:
        marks = ", ".join("?" for _ in roles)
        row = await conn.fetchone(
            "SELECT amount FROM role_allowances "  # noqa: S608 - only placeholders
            f"WHERE guild_id = ? AND role_id IN ({marks}) ORDER BY amount DESC LIMIT 1",
            (guild_id, *roles),
        )
        if row is not None and row["amount"] > best.amount:
            best = Allowance(row["amount"], settings.allowance_period)
    return best


async def member_allowance(
    db: Database, guild_id: int, roles: Collection[int], default_credits: int
) -> Allowance:
    """Return the allowance a member with these roles gets in this server."""
    async with db.transaction() as conn:
        return await allowance_in(conn, guild_id, roles, default_credits)


async def spent_in(
    conn: Connection, guild_id: int | None, period: CapPeriod, moment: datetime
) -> int:
    """Return credits charged in the period holding `moment`, net of refunds (one server, or
    all when `guild_id` is None). Tasks count in the period they started in."""
    since = period_start(period, moment)
    states = sql_list(SPENDING)
    row = await conn.fetchone(
        f"SELECT COALESCE(SUM(cost), 0) FROM tasks WHERE created_at >= ? AND state IN ({states}) "  # noqa: S608 - constants only
        "AND (CAST(? AS BIGINT) IS NULL OR guild_id = ?)",
        (iso(since), guild_id, guild_id),
    )
    return 0 if row is None else int(row[0])


async def active_tasks_in(conn: Connection, guild_id: int, user_id: int) -> int:
    """Return how many of the member's tasks are submitted and not yet delivered or refunded."""
    states = sql_list(ACTIVE)
    row = await conn.fetchone(
        f"SELECT COUNT(*) FROM tasks WHERE guild_id = ? AND user_id = ? AND state IN ({states})",  # noqa: S608 - constants only
        (guild_id, user_id),
    )
    return 0 if row is None else int(row[0])


async def _record_change(
    conn: Connection,
    guild_id: int,
    actor_id: int,
    setting: str,
    old: object,
    new: object,
) -> None:
    await conn.execute(
        "INSERT INTO settings_changes (guild_id, actor_id, setting, old_value, new_value, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (
            guild_id,
            actor_id,
            setting,
            None if old is None else str(old),
            None if new is None else str(new),
            utcnow(),
        ),
    )


async def _update(conn: Connection, guild_id: int, **columns: object) -> None:
    await conn.execute(
        "INSERT INTO guild_settings (guild_id, updated_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (guild_id, utcnow()),
    )
    assignments = ", ".join(f"{name} = ?" for name in columns)
    await conn.execute(
        f"UPDATE guild_settings SET {assignments}, updated_at = ? WHERE guild_id = ?",  # noqa: S608 - names are ours
        (*columns.values(), utcnow(), guild_id),
    )


async def _change(
    db: Database,
    guild_id: int,
    *,
    actor_id: int,
    setting: str,
    shown: Callable[[GuildBudget], object],
    **columns: object,
) -> None:
    """Set the server's `columns`; record the change as `shown` describes the rules."""
    async with db.transaction() as conn:
        old = await budget_in(conn, guild_id)
        await _update(conn, guild_id, **columns)
        new = await budget_in(conn, guild_id)
        await _record_change(conn, guild_id, actor_id, setting, shown(old), shown(new))


def _per(amount: int | None, period: str) -> str | None:
    return None if amount is None else f"{amount} per {period}"


async def set_allowance(
    db: Database, guild_id: int, amount: int, period: Period, *, actor_id: int
) -> None:
    """Give every member `amount` credits per `period` (or once, for `none`)."""
    await _change(
        db,
        guild_id,
        actor_id=actor_id,
        setting="allowance",
        shown=lambda rules: _per(rules.allowance, rules.allowance_period),
        allowance=amount,
        allowance_period=period,
    )


async def set_role_allowance(
    db: Database, guild_id: int, role_id: int, amount: int, *, actor_id: int
) -> int | None:
    """Give members holding the role `amount` instead (0 removes it); return the old amount."""
    async with db.transaction() as conn:
        row = await conn.fetchone(
            "SELECT amount FROM role_allowances WHERE guild_id = ? AND role_id = ?",
            (guild_id, role_id),
        )
        old = None if row is None else int(row["amount"])
        if amount == 0:
            await conn.execute(
                "DELETE FROM role_allowances WHERE guild_id = ? AND role_id = ?",
                (guild_id, role_id),
            )
        else:
            await conn.execute(
                "INSERT INTO role_allowances (guild_id, role_id, amount, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (guild_id, role_id) DO UPDATE SET "
                "amount = excluded.amount, updated_at = excluded.updated_at",
                (guild_id, role_id, amount, utcnow()),
            )
        await _record_change(
            conn, guild_id, actor_id, f"role allowance <@&{role_id}>", old, amount or None
        )
    return old


async def set_cap(
    db: Database, guild_id: int, amount: int | None, period: CapPeriod, *, actor_id: int
) -> None:
    """Limit what the whole server may spend per period (None removes the cap)."""
    await _change(
        db,
        guild_id,
        actor_id=actor_id,
        setting="cap",
        shown=lambda rules: _per(rules.cap, rules.cap_period),
        cap=amount,
        cap_period=period,
    )


async def set_max_concurrent(
    db: Database, guild_id: int, max_concurrent: int, *, actor_id: int
) -> None:
    """Set how many tasks one member may have rendering at once."""
    await _change(
        db,
        guild_id,
        actor_id=actor_id,
        setting="max_concurrent",
        shown=lambda rules: rules.max_concurrent,
        max_concurrent=max_concurrent,
    )


@dataclass(frozen=True)
class SettingsChange:
    """One recorded change of a server setting."""

    actor_id: int
    setting: str
    old_value: str | None
    new_value: str | None
    created_at: str


async def recent_changes(db: Database, guild_id: int, *, limit: int) -> list[SettingsChange]:
    """Return the server's latest settings changes, newest first."""
    rows = await db.fetchall(
        "SELECT actor_id, setting, old_value, new_value, created_at FROM settings_changes "
        "WHERE guild_id = ? ORDER BY id DESC LIMIT ?",
        (guild_id, limit),
    )
    return [SettingsChange(**dict(row)) for row in rows]
