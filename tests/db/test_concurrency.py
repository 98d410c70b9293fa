"""Two processes on one database at once: no limit is passed together, nothing is paid twice.

Each "process" is a database opened separately (its own SQLite connection, its own asyncpg
pool), so their transactions really run side by side on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

import db as db_module
from db import Database, budgets, credits
from db import tasks as task_store
from db.backends import open_database
from db.credits import NotEnoughCredits
from db.states import TaskState
from tests.harness import FOREVER, OWNER, new_task

GUILD, OTHER_GUILD, ADMIN = 10, 11, 1
ATTEMPTS = 12  # reservations started at once, half through each process


@pytest.fixture
async def other(database_url: str, db: Database) -> AsyncIterator[Database]:
    """The same database, opened a second time: another process."""
    second = await open_database(database_url)
    try:
        yield second
    finally:
        await second.close()


async def _reserve_at_once(
    first: Database,
    second: Database,
    requests: list[tuple[int, int]],
    *,
    starting_credits: int = 1000,
    ceiling: int | None = None,
) -> int:
    """Start one reservation per (guild, user) at once, alternating processes; count successes."""

    async def one(index: int, guild: int, user: int) -> bool:
        try:
            await task_store.reserve(
                first if index % 2 else second,
                new_task(guild, user, cost=30),
                owner=OWNER,
                lease_until=FOREVER,
                starting_credits=starting_credits,
                max_credits_per_day=ceiling,
            )
        except (NotEnoughCredits, budgets.BudgetRefusal):
            return False
        return True

    results = await asyncio.gather(*(one(i, g, u) for i, (g, u) in enumerate(requests)))
    return sum(results)


async def _charged(db: Database) -> int:
    row = await db.fetchone("SELECT COUNT(*) FROM ledger WHERE reason = 'charge'")
    assert row is not None
    return int(row[0])


async def test_a_balance_is_never_spent_twice(db: Database, other: Database) -> None:
    await budgets.set_max_concurrent(db, GUILD, 100, actor_id=ADMIN)
    won = await _reserve_at_once(db, other, [(GUILD, 7)] * ATTEMPTS, starting_credits=100)
    assert won == 3  # 100 credits cover three tasks of 30
    assert await credits.balance(db, GUILD, 7, 100) == 10
    assert await credits.unexplained_balances(db) == []


async def test_the_concurrency_limit_holds_across_processes(db: Database, other: Database) -> None:
    await budgets.set_max_concurrent(db, GUILD, 2, actor_id=ADMIN)
    assert await _reserve_at_once(db, other, [(GUILD, 7)] * ATTEMPTS) == 2
    assert await _charged(db) == 2


async def test_a_server_cap_holds_across_processes(db: Database, other: Database) -> None:
    await budgets.set_cap(db, GUILD, 90, "day", actor_id=ADMIN)
    members = [(GUILD, 100 + n) for n in range(ATTEMPTS)]
    assert await _reserve_at_once(db, other, members) == 3  # 3 x 30 = the cap
    async with db.transaction() as conn:
        assert await budgets.spent_in(conn, GUILD, "day", db_module.now()) == 90


async def test_the_operator_ceiling_holds_across_servers_and_processes(
    db: Database, other: Database
) -> None:
    members = [(GUILD if n % 2 else OTHER_GUILD, 100 + n) for n in range(ATTEMPTS)]
    assert await _reserve_at_once(db, other, members, ceiling=120) == 4
    async with db.transaction() as conn:
        assert await budgets.spent_in(conn, None, "day", db_module.now()) == 120


async def test_two_processes_refunding_one_task_refund_it_once(
    db: Database, other: Database
) -> None:
    task, _ = await task_store.reserve(
        db, new_task(GUILD, 7, cost=30), owner=OWNER, lease_until=FOREVER, starting_credits=100
    )
    results = await asyncio.gather(
        *(
            task_store.finish_with_refund(
                database,
                task.id,
                TaskState.REJECTED,
                "no",
                owner=OWNER,
                allowed_from=(TaskState.SUBMITTING,),
            )
            for database in (db, other, db, other)
        )
    )
    assert sorted(results, key=str) == [100, None, None, None]
    refunds = [e for e in await credits.ledger_for(db, GUILD, 7) if e.reason == "refund"]
    assert len(refunds) == 1
    assert await credits.unexplained_balances(db) == []


@pytest.fixture
def tomorrow() -> Iterator[None]:
    """Move the database's clock a day ahead, so daily allowances are due."""
    moment = datetime.now(UTC) + timedelta(days=1)
    db_module.set_clock(lambda: moment)
    try:
        yield
    finally:
        db_module.set_clock(None)


async def test_a_refill_is_given_once_when_both_processes_see_the_new_day(
    db: Database, other: Database, request: pytest.FixtureRequest
) -> None:
    await budgets.set_allowance(db, GUILD, 100, "day", actor_id=ADMIN)
    await task_store.reserve(
        db, new_task(GUILD, 7, cost=30), owner=OWNER, lease_until=FOREVER, starting_credits=100
    )
    request.getfixturevalue("tomorrow")
    balances = await asyncio.gather(
        *(credits.balance(database, GUILD, 7, 100) for database in (db, other) * 4)
    )
    assert balances == [100] * 8
    refills = [e for e in await credits.ledger_for(db, GUILD, 7) if e.reason == "refill"]
    assert [e.delta for e in refills] == [30]
