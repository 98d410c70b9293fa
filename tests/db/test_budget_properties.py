"""Property: whatever members and admins do, in any order and at once, the money adds up.

Hypothesis runs random sequences of generations (one at a time and in simultaneous bursts),
failures, deliveries, grants, allowance and cap changes and the passing of days, and after
every step checks that each member's ledger sums to their balance, that no reservation ever
pushed a server past its cap or the bot past the operator's daily ceiling, and that every
task was charged once and refunded at most once (exactly when it could not succeed).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import db as db_module
from db import Database, budgets, credits
from db import tasks as task_store
from db.backends import open_database
from db.credits import NotEnoughCredits
from db.states import TaskState
from db.tasks import NewTask
from provider.models import PRICES
from tests import postgres
from tests.harness import FOREVER, OWNER, claim, new_task

GUILDS = (1, 2)
MEMBERS = (11, 12, 13)
ADMIN = 99
DEFAULT_CREDITS = 200
CEILING = 1500
START = datetime(2026, 11, 27, 22, 0, tzinfo=UTC)  # two hours before a day and month turn

member = st.tuples(st.sampled_from(GUILDS), st.sampled_from(MEMBERS))
preset = st.sampled_from(sorted(PRICES.items()))
operation = st.one_of(
    st.tuples(st.just("generate"), member, preset),
    st.tuples(st.just("burst"), st.lists(member, min_size=2, max_size=6), preset),
    st.tuples(st.just("fail"), st.integers(0, 50)),
    st.tuples(st.just("deliver"), st.integers(0, 50)),
    st.tuples(st.just("grant"), member, st.integers(-300, 300)),
    st.tuples(
        st.just("allowance"),
        st.sampled_from(GUILDS),
        st.integers(0, 600),
        st.sampled_from(budgets.PERIODS),
    ),
    st.tuples(
        st.just("cap"),
        st.sampled_from(GUILDS),
        st.one_of(st.none(), st.integers(0, 800)),
        st.sampled_from(("day", "week", "month")),
    ),
    st.tuples(st.just("limits"), st.sampled_from(GUILDS), st.integers(1, 4)),
    st.tuples(st.just("time"), st.integers(1, 60)),
    st.tuples(st.just("balance"), member),
)


@contextlib.contextmanager
def virtual_clock() -> Iterator[list[datetime]]:
    """Let the scenario move time; restore the real clock after."""
    now = [START]
    db_module.set_clock(lambda: now[0])
    try:
        yield now
    finally:
        db_module.set_clock(None)


def request_for(guild: int, user: int, duration: int, sound: bool) -> NewTask:
    return new_task(guild, user, duration=duration, sound=sound)


async def reserve(db: Database, request: NewTask) -> str | None:
    try:
        task, _ = await task_store.reserve(
            db,
            request,
            owner=OWNER,
            lease_until=FOREVER,
            starting_credits=DEFAULT_CREDITS,
            max_credits_per_day=CEILING,
        )
    except (NotEnoughCredits, budgets.BudgetRefusal):
        return None
    return task.id


async def check_invariants(db: Database) -> None:
    assert await credits.unexplained_balances(db) == []
    rows = await db.fetchall(
        # LEFT JOIN: a task whose charge never reached the ledger must show up, not vanish.
        "SELECT t.id, t.state, t.cost, "
        "COALESCE(SUM(CASE WHEN l.reason = 'charge' THEN 1 ELSE 0 END), 0) AS charges, "
        "COALESCE(SUM(CASE WHEN l.reason = 'refund' THEN 1 ELSE 0 END), 0) AS refunds, "
        "COALESCE(SUM(l.delta), 0) AS net FROM tasks t LEFT JOIN ledger l ON l.task_id = t.id "
        "GROUP BY t.id"
    )
    for row in rows:
        assert row["charges"] == 1, dict(row)
        refunded = TaskState(row["state"]).refunded
        assert row["refunds"] == (1 if refunded else 0), dict(row)
        assert row["net"] == (0 if refunded else -row["cost"]), dict(row)


async def check_limits_after_charge(
    db: Database, guild: int, now: datetime, users: Iterable[int] = ()
) -> None:
    """A reservation that just succeeded left the server, its members and the bot in limits."""
    rules = await budgets.budget(db, guild)
    async with db.transaction() as conn:
        for user in users:
            assert await budgets.active_tasks_in(conn, guild, user) <= rules.max_concurrent
        if rules.cap is not None:
            assert await budgets.spent_in(conn, guild, rules.cap_period, now) <= rules.cap
        assert await budgets.spent_in(conn, None, "day", now) <= CEILING


@contextlib.asynccontextmanager
async def fresh_database(backend: str) -> AsyncIterator[Database]:
    """A new, migrated database of the backend for one example; closed and dropped after."""
    with tempfile.TemporaryDirectory() as folder:
        async with contextlib.AsyncExitStack() as stack:
            if backend == "sqlite":
                url = f"sqlite:///{Path(folder) / 'bot.db'}"
            else:
                url = await stack.enter_async_context(postgres.fresh_database())
            db = await open_database(url)
            try:
                yield db
            finally:
                await db.close()


async def run(operations: list[tuple[Any, ...]], backend: str) -> None:
    with virtual_clock() as now:
        async with fresh_database(backend) as db:
            tasks: list[str] = []
            for op in operations:
                await step(db, op, tasks, now)
                await check_invariants(db)


async def step(db: Database, op: tuple[Any, ...], tasks: list[str], now: list[datetime]) -> None:
    kind = op[0]
    if kind == "generate":
        (guild, user), ((duration, sound), _) = op[1], op[2]
        task_id = await reserve(db, request_for(guild, user, duration, sound))
        if task_id is not None:
            tasks.append(task_id)
            await check_limits_after_charge(db, guild, now[0], [user])
    elif kind == "burst":
        ((duration, sound), _) = op[2]
        started = await asyncio.gather(
            *(reserve(db, request_for(g, u, duration, sound)) for g, u in op[1])
        )
        tasks.extend(task_id for task_id in started if task_id is not None)
        # An admin may lower a cap below what was spent; only a new charge must respect it.
        charged = {(g, u) for (g, u), task_id in zip(op[1], started, strict=True) if task_id}
        for guild in {g for g, _ in charged}:
            users = [u for g, u in charged if g == guild]
            await check_limits_after_charge(db, guild, now[0], users)
    elif kind == "fail" and tasks:
        task_id = tasks[op[1] % len(tasks)]
        await task_store.finish_with_refund(
            db,
            task_id,
            TaskState.FAILED,
            "provider failed",
            owner=OWNER,
            allowed_from=(TaskState.SUBMITTING, TaskState.RENDERING),
        )
    elif kind == "deliver" and tasks:
        task_id = tasks[op[1] % len(tasks)]
        await task_store.mark_rendering(db, task_id, f"sd_{task_id}", owner=OWNER, next_poll_at=0)
        await claim(db, task_id)
        await task_store.mark_delivering(
            db, task_id, ("https://x/clip.mp4",), owner=OWNER, ready_seconds=1.0, next_poll_at=0
        )
        await task_store.mark_delivered(
            db, task_id, owner=OWNER, via="link", message_id=1, channel_id=5
        )
    elif kind == "grant":
        (guild, user), amount = op[1], op[2]
        if amount:
            with contextlib.suppress(NotEnoughCredits):
                await credits.grant(
                    db, guild, user, amount, actor_id=ADMIN, starting_credits=DEFAULT_CREDITS
                )
    elif kind == "allowance":
        await budgets.set_allowance(db, op[1], op[2], op[3], actor_id=ADMIN)
    elif kind == "cap":
        await budgets.set_cap(db, op[1], op[2], op[3], actor_id=ADMIN)
    elif kind == "limits":
        await budgets.set_max_concurrent(db, op[1], op[2], actor_id=ADMIN)
    elif kind == "time":
        now[0] += timedelta(hours=op[1])
    elif kind == "balance":
        guild, user = op[1]
        await credits.balance(db, guild, user, DEFAULT_CREDITS)


@settings(
    max_examples=100,
    deadline=None,
    # `backend` is a name, the same for every example.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(operation, min_size=1, max_size=30))
def test_the_ledger_always_explains_every_balance_and_no_limit_is_passed(
    backend: str, operations: list[tuple[Any, ...]]
) -> None:
    asyncio.run(run(operations, backend))


def test_a_refill_raises_a_low_balance_to_the_allowance_and_keeps_grants(backend: str) -> None:
    async def scenario() -> None:
        with virtual_clock() as now:
            async with fresh_database(backend) as db:
                await budgets.set_allowance(db, 1, 520, "week", actor_id=ADMIN)
                assert await credits.balance(db, 1, 11, DEFAULT_CREDITS) == 520
                assert await credits.balance(db, 1, 12, DEFAULT_CREDITS) == 520
                await reserve(db, request_for(1, 11, 10, True))  # 260 spent
                await credits.grant(db, 1, 12, 100, actor_id=ADMIN, starting_credits=0)
                now[0] += timedelta(days=7)
                assert await credits.balance(db, 1, 11, DEFAULT_CREDITS) == 520  # refilled
                assert await credits.balance(db, 1, 12, DEFAULT_CREDITS) == 620  # grant kept
                reasons = [e.reason for e in await credits.ledger_for(db, 1, 11)]
                assert reasons == ["welcome", "charge", "refill"]
                await check_invariants(db)

    asyncio.run(scenario())
