"""Budget rules found wanting in review: each is a money bug that must stay fixed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import db as db_module
from db import Database, budgets, credits, reports
from db import tasks as task_store
from db.states import TaskState
from db.tasks import NewTask
from tests.harness import FOREVER, OWNER, new_task

GUILD, USER, ROLE, ADMIN = 1, 11, 500, 99
WEDNESDAY = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@contextlib.contextmanager
def at(moment: datetime) -> Iterator[list[datetime]]:
    now = [moment]
    db_module.set_clock(lambda: now[0])
    try:
        yield now
    finally:
        db_module.set_clock(None)


def request(cost: int = 260) -> NewTask:
    return new_task(GUILD, USER, duration=10, sound=True, cost=cost)


async def test_switching_the_allowance_period_never_refills_twice(db: Database) -> None:
    with at(WEDNESDAY):
        await budgets.set_allowance(db, GUILD, 260, "week", actor_id=ADMIN)
        assert await credits.balance(db, GUILD, USER, 100) == 260
        await budgets.set_max_concurrent(db, GUILD, 20, actor_id=ADMIN)
        await task_store.reserve(
            db, request(), owner=OWNER, lease_until=FOREVER, starting_credits=100
        )
        periods: tuple[budgets.Period, ...] = ("month", "week", "day", "week")
        for period in periods:
            await budgets.set_allowance(db, GUILD, 260, period, actor_id=ADMIN)
            if await credits.balance(db, GUILD, USER, 100) >= 260:
                await task_store.reserve(
                    db, request(), owner=OWNER, lease_until=FOREVER, starting_credits=100
                )
        reasons = [e.reason for e in await credits.ledger_for(db, GUILD, USER)]
        # Every period that holds Wednesday noon had its top-up already (the welcome).
        assert reasons == ["welcome", "charge"]
        assert await credits.balance(db, GUILD, USER, 100) == 0


async def test_a_first_command_that_is_not_generate_still_gives_the_role_allowance(
    db: Database,
) -> None:
    await budgets.set_role_allowance(db, GUILD, ROLE, 1000, actor_id=ADMIN)
    await credits.set_notify(db, GUILD, USER, True, 260, roles=[ROLE])
    assert await credits.balance(db, GUILD, USER, 260, [ROLE]) == 1000


async def test_usage_counts_a_refund_in_the_period_its_task_was_charged(db: Database) -> None:
    last_day = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
    with at(last_day) as now:
        task, _ = await task_store.reserve(
            db, request(), owner=OWNER, lease_until=FOREVER, starting_credits=1000
        )
        now[0] = last_day + timedelta(minutes=2)  # December
        await task_store.finish_with_refund(
            db, task.id, TaskState.FAILED, "x", owner=OWNER, allowed_from=(TaskState.SUBMITTING,)
        )
        december = budgets.period_start("month", now[0])
        november = budgets.period_start("month", last_day)
        assert december is not None and november is not None
        assert (await reports.usage(db, GUILD, december)).spent == 0
        assert (await reports.usage(db, GUILD, november)).spent == 0
        assert (await reports.usage(db, GUILD, november)).refunded == 260
