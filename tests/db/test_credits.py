"""Credits: reservations never overspend, refunds happen once, the ledger explains every balance."""

from __future__ import annotations

import asyncio

import pytest

from db import Database, budgets, credits
from db import tasks as task_store
from db.credits import NotEnoughCredits
from db.states import TaskState
from db.tasks import NewTask
from tests.harness import FOREVER, OWNER, claim, new_task

GUILD, USER, ADMIN = 10, 20, 30


def request(cost: int = 65, *, user: int = USER) -> NewTask:
    return new_task(GUILD, user, cost=cost)


async def ledger_sum(db: Database, user: int = USER) -> int:
    return sum(entry.delta for entry in await credits.ledger_for(db, GUILD, user))


async def test_a_new_member_starts_with_the_default_credits_as_a_ledger_row(db: Database) -> None:
    assert await credits.balance(db, GUILD, USER, 260) == 260
    assert await credits.balance(db, GUILD, USER, 999) == 260  # only the first use gives credits
    entries = await credits.ledger_for(db, GUILD, USER)
    assert [(e.reason, e.delta, e.balance_after) for e in entries] == [("welcome", 260, 260)]


async def test_credits_live_per_server(db: Database) -> None:
    await task_store.reserve(db, request(), owner=OWNER, lease_until=FOREVER, starting_credits=260)
    assert await credits.balance(db, GUILD, USER, 260) == 195
    assert await credits.balance(db, GUILD + 1, USER, 260) == 260


async def test_reserving_charges_and_records_the_task_together(db: Database) -> None:
    task, left = await task_store.reserve(
        db, request(65), owner=OWNER, lease_until=FOREVER, starting_credits=260
    )
    assert left == 195
    assert task.state is TaskState.SUBMITTING and task.cost == 65
    entries = await credits.ledger_for(db, GUILD, USER)
    assert [(e.reason, e.delta, e.task_id) for e in entries][-1] == ("charge", -65, task.id)


async def test_not_enough_credits_records_nothing(db: Database) -> None:
    with pytest.raises(NotEnoughCredits) as refusal:
        await task_store.reserve(
            db, request(260), owner=OWNER, lease_until=FOREVER, starting_credits=100
        )
    assert (refusal.value.balance, refusal.value.needed) == (100, 260)
    assert await task_store.count_for_member(db, GUILD, USER) == 0
    assert await credits.balance(db, GUILD, USER, 100) == 100
    assert await ledger_sum(db) == 100


async def test_fifty_simultaneous_reservations_with_credit_for_three(db: Database) -> None:
    await budgets.set_max_concurrent(db, GUILD, 100, actor_id=ADMIN)  # only credits limit here
    results = await asyncio.gather(
        *(
            task_store.reserve(
                db, request(65), owner=OWNER, lease_until=FOREVER, starting_credits=195
            )
            for _ in range(50)
        ),
        return_exceptions=True,
    )
    succeeded = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, NotEnoughCredits)]
    assert len(succeeded) == 3 and len(refused) == 47
    assert await credits.balance(db, GUILD, USER, 195) == 0
    assert await task_store.count_for_member(db, GUILD, USER) == 3
    assert await credits.unexplained_balances(db) == []


async def test_a_refund_happens_exactly_once(db: Database) -> None:
    task, _ = await task_store.reserve(
        db, request(130), owner=OWNER, lease_until=FOREVER, starting_credits=260
    )
    first, second = await asyncio.gather(
        task_store.finish_with_refund(
            db, task.id, TaskState.FAILED, "boom", owner=OWNER, allowed_from=(TaskState.SUBMITTING,)
        ),
        task_store.finish_with_refund(
            db,
            task.id,
            TaskState.UNCERTAIN,
            "boom",
            owner=OWNER,
            allowed_from=(TaskState.SUBMITTING,),
        ),
    )
    assert sorted([first, second], key=lambda b: b is None) == [260, None]
    assert await credits.balance(db, GUILD, USER, 260) == 260
    refunds = [e for e in await credits.ledger_for(db, GUILD, USER) if e.reason == "refund"]
    assert len(refunds) == 1 and refunds[0].delta == 130


async def test_a_delivered_task_cannot_be_refunded_afterwards(db: Database) -> None:
    task, _ = await task_store.reserve(
        db, request(65), owner=OWNER, lease_until=FOREVER, starting_credits=260
    )
    await task_store.mark_rendering(db, task.id, "sd15p_x", owner=OWNER, next_poll_at=0)
    await claim(db, task.id)
    await task_store.mark_delivering(
        db, task.id, ("https://cdn/x.mp4",), owner=OWNER, ready_seconds=1.0, next_poll_at=0
    )
    await task_store.mark_delivered(
        db, task.id, owner=OWNER, via="attachment", message_id=1, channel_id=40
    )
    assert (
        await task_store.finish_with_refund(
            db,
            task.id,
            TaskState.TIMED_OUT,
            "late",
            owner=OWNER,
            allowed_from=(TaskState.RENDERING,),
        )
        is None
    )
    assert await credits.balance(db, GUILD, USER, 260) == 195


async def test_grants_add_and_take_but_never_below_zero(db: Database) -> None:
    assert await credits.grant(db, GUILD, USER, 100, actor_id=ADMIN, starting_credits=260) == 360
    assert await credits.grant(db, GUILD, USER, -300, actor_id=ADMIN, starting_credits=260) == 60
    with pytest.raises(NotEnoughCredits):
        await credits.grant(db, GUILD, USER, -61, actor_id=ADMIN, starting_credits=260)
    assert await credits.balance(db, GUILD, USER, 260) == 60
    grants = [e for e in await credits.ledger_for(db, GUILD, USER) if e.reason == "grant"]
    assert [(g.delta, g.actor_id) for g in grants] == [(100, ADMIN), (-300, ADMIN)]


async def test_the_ledger_explains_every_balance_after_mixed_operations(db: Database) -> None:
    users = [USER, USER + 1, USER + 2]
    await budgets.set_max_concurrent(db, GUILD, 100, actor_id=ADMIN)
    for round_ in range(4):
        for user in users:
            try:
                task, _ = await task_store.reserve(
                    db,
                    request(65, user=user),
                    owner=OWNER,
                    lease_until=FOREVER,
                    starting_credits=200,
                )
            except NotEnoughCredits:
                await credits.grant(db, GUILD, user, 65, actor_id=ADMIN, starting_credits=200)
                continue
            if (round_ + user) % 2:
                await task_store.finish_with_refund(
                    db,
                    task.id,
                    TaskState.FAILED,
                    "x",
                    owner=OWNER,
                    allowed_from=(TaskState.SUBMITTING,),
                )
    assert await credits.unexplained_balances(db) == []
    for user in users:
        entries = await credits.ledger_for(db, GUILD, user)
        running = 0
        for entry in entries:
            running += entry.delta
            assert entry.balance_after == running
