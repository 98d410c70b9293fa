"""Work claimed with leases: one process at a time per task, taken over when a holder dies."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from core.claims import Claims
from core.settings import Settings
from db import Database, ProcessConflict, coordination, credits
from db import tasks as task_store
from db.backends import open_database
from db.coordination import Process
from db.sqlite import SqliteDatabase
from db.states import TaskState
from tests import postgres
from tests.harness import FOREVER, new_task

GUILD, USER = 10, 7
NOW, LEASE = 1000.0, 30.0


async def rendering_task(db: Database, *, next_poll_at: float = NOW) -> str:
    task, _ = await task_store.reserve(
        db, new_task(GUILD, USER, cost=65), owner="a", lease_until=FOREVER, starting_credits=260
    )
    assert await task_store.mark_rendering(
        db, task.id, "sd_1", owner="a", next_poll_at=next_poll_at
    )
    return task.id


async def claim(db: Database, owner: str, now: float) -> list[str]:
    claimed = await task_store.claim_due(
        db, owner=owner, now=now, lease_until=now + LEASE, limit=10
    )
    return [task.id for task in claimed]


async def test_a_claimed_task_is_nobody_elses_until_its_lease_runs_out(db: Database) -> None:
    task_id = await rendering_task(db)
    assert await claim(db, "a", NOW) == [task_id]
    assert await claim(db, "b", NOW + 1) == [], "a holds it"
    # The other process waits for the lease, not for the poll that is already due.
    assert await task_store.next_due_at(db, owner="b") == NOW + LEASE
    assert await claim(db, "b", NOW + LEASE + 1) == [task_id], "a stopped renewing: b takes over"


async def test_a_process_that_lost_its_lease_can_neither_post_nor_refund(db: Database) -> None:
    task_id = await rendering_task(db)
    await claim(db, "a", NOW)
    await claim(db, "b", NOW + LEASE + 1)  # a was paused past its lease
    assert not await task_store.holds(db, task_id, "a", NOW + LEASE + 2)
    refunded_by_a = await task_store.finish_with_refund(
        db, task_id, TaskState.FAILED, "late", owner="a", allowed_from=(TaskState.RENDERING,)
    )
    assert refunded_by_a is None
    assert not await task_store.mark_delivering(
        db, task_id, ("https://cdn/x.mp4",), owner="a", ready_seconds=None, next_poll_at=NOW
    )
    refunded_by_b = await task_store.finish_with_refund(
        db, task_id, TaskState.FAILED, "failed", owner="b", allowed_from=(TaskState.RENDERING,)
    )
    assert refunded_by_b == 260
    entries = await credits.ledger_for(db, GUILD, USER)
    assert [e.reason for e in entries] == ["welcome", "charge", "refund"]


async def test_a_submission_is_cut_off_only_when_its_submitters_lease_runs_out(
    db: Database,
) -> None:
    task, _ = await task_store.reserve(
        db, new_task(GUILD, USER, cost=65), owner="a", lease_until=NOW + LEASE, starting_credits=260
    )

    async def stranded(now: float) -> list[str]:
        found = await task_store.claim_stranded(db, owner="b", now=now, lease_until=now + LEASE)
        return [t.id for t in found]

    assert await stranded(NOW + 1) == [], "a is still waiting for the provider"
    assert await stranded(NOW + LEASE + 1) == [task.id]


async def test_a_clean_stop_hands_every_claim_back_at_once(db: Database) -> None:
    task_id = await rendering_task(db)
    await claim(db, "a", NOW)
    assert await task_store.release_leases(db, owner="a") == 1
    assert await claim(db, "b", NOW + 1) == [task_id]


def process(name: str, shard_ids: tuple[int, ...] | None, count: int | None = 4) -> Process:
    return Process(name, "host", 100, count, shard_ids)


@pytest.mark.parametrize(
    ("shard_ids", "count", "refusal"),
    [
        ((1, 2), 4, "shards 1 are already connected"),
        (None, 4, "both would connect every shard"),
        ((2, 3), 2, "SHARD_COUNT differs"),
        ((2, 3), 4, None),
        ((), None, None),
    ],
)
async def test_a_process_whose_shards_overlap_a_live_ones_is_refused(
    db: Database,
    shard_ids: tuple[int, ...] | None,
    count: int | None,
    refusal: str | None,
) -> None:
    await coordination.register_process(db, process("a", (0, 1)), now=NOW, lease=LEASE)
    second = process("b", shard_ids, count)
    if refusal is None:
        await coordination.register_process(db, second, now=NOW, lease=LEASE)
        assert {p.id for p in await coordination.processes(db)} == {"a", "b"}
        return
    with pytest.raises(ProcessConflict, match=refusal) as refused:
        await coordination.register_process(db, second, now=NOW, lease=LEASE)
    assert "pid 100 on host" in str(refused.value)
    assert [p.id for p in await coordination.processes(db)] == ["a"]


async def test_a_process_whose_heartbeat_lapsed_no_longer_holds_its_shards(db: Database) -> None:
    await coordination.register_process(db, process("a", (0, 1)), now=NOW, lease=LEASE)
    await coordination.register_process(db, process("b", (0, 1)), now=NOW + LEASE + 1, lease=LEASE)
    assert [p.id for p in await coordination.processes(db)] == ["b"]


async def test_a_second_process_on_one_sqlite_file_is_refused_until_the_first_ends(
    tmp_path,
) -> None:
    path = tmp_path / "bot.db"
    first = await SqliteDatabase.open(path)
    second = await SqliteDatabase.open(path)
    try:
        assert first.keep_to_this_process()
        with pytest.raises(ProcessConflict, match=r"another bot process \(pid \d+\) is running on"):
            second.keep_to_this_process()
        await first.close()
        assert second.keep_to_this_process(), "the lock goes with the first process"
    finally:
        await second.close()


def a_pid_that_is_gone() -> int:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(ended.stdout)


@pytest.mark.parametrize(
    ("where", "freed"),
    [("this machine", True), ("a container with the same hostname", False)],
)
async def test_a_dead_process_is_forgotten_at_once_only_where_its_pid_can_be_checked(
    postgres_server: str, where: str, freed: bool
) -> None:
    async with postgres.fresh_database() as url:
        db = await open_database(url)
        try:
            settings = Settings(discord_token="t", seedance_api_key="k", database_url=url)
            mine = Claims(db, settings, clock=lambda: NOW)
            place = mine.process.host
            if where != "this machine":
                # Its own pid namespace: a pid missing here says nothing about it.
                place = place.partition("#")[0] + "#0000000[4026530000]"
            dead = Process("dead", place, a_pid_that_is_gone(), None, ())
            await coordination.register_process(db, dead, now=time.time(), lease=LEASE)
            task_id = await rendering_task(db)
            assert await claim(db, "dead", NOW) == [task_id]

            await mine.start()
            try:
                taken = await claim(db, mine.owner, NOW + 1)
                alive = {process.id for process in await coordination.processes(db)}
            finally:
                await mine.stop()
            assert (taken == [task_id]) is freed
            assert ("dead" in alive) is not freed
        finally:
            await db.close()
