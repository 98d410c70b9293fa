"""End to end: several `python bot.py` processes on one PostgreSQL database act as one bot.

Each test runs real processes against the fake Discord (one gateway connection per shard)
and the simulator, and reads the outcome the way members and operators see it: clips in
channels, balances, and the provider's request log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

from db import Database, credits
from db.backends import open_database
from db.tasks import Task
from provider.simulator import ProviderSimulator
from tests import payloads, postgres
from tests.e2e.live import FIGURES, BotProcess
from tests.e2e.test_shards import clips_in, guild_on_shard
from tests.fakediscord import FakeDiscord
from tests.harness import MEMBER_PERMISSIONS

SHARDS = 2
FIVE_SECONDS_SILENT = 65  # credits a default clip costs


@contextlib.asynccontextmanager
async def shared_database(postgres_server: str) -> AsyncIterator[tuple[str, Database]]:
    """A fresh PostgreSQL database for the processes, and the test's own connection to it."""
    async with postgres.fresh_database() as url:
        db = await open_database(url)
        try:
            yield url, db
        finally:
            await db.close()


def process(
    fake: FakeDiscord,
    simulator: ProviderSimulator,
    tmp_path: Path,
    url: str,
    shards: str,
    **env: str,
) -> BotProcess:
    """A bot process on the shared database, serving `shards` of SHARD_COUNT (or none)."""
    settings = {"SHARD_IDS": shards, **env}
    if shards != "none":
        settings["SHARD_COUNT"] = str(SHARDS)
    folder = tmp_path / f"shards-{shards}"
    folder.mkdir(exist_ok=True)
    return BotProcess(fake, simulator, folder / "unused.db", env=settings, database_url=url)


async def generate(fake: FakeDiscord, guild_id: int, channel_id: int, user_id: int) -> None:
    """A member's /video generate, sent over the gateway of the guild's shard."""
    payload = payloads.slash_command(
        fake,
        name="video",
        subcommand="generate",
        options={"prompt": f"a kite flown by member {user_id}"},
        permissions=MEMBER_PERMISSIONS,
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=user_id,
    )
    await fake.send_interaction(payload)


async def tasks_in(db: Database) -> list[Task]:
    rows = await db.fetchall("SELECT * FROM tasks ORDER BY created_at")
    return [Task.from_row(row) for row in rows]


async def wait_until(db: Database, count: int, *states: str, within: float = 30.0) -> list[Task]:
    """Wait until `count` tasks exist and every one is in one of `states`."""
    deadline = time.monotonic() + within
    while True:
        tasks = await tasks_in(db)
        if len(tasks) == count and all(task.state in states for task in tasks):
            return tasks
        if time.monotonic() > deadline:
            seen = sorted(str(task.state) for task in tasks)
            raise AssertionError(f"expected {count} tasks {states}, found {seen}")
        await asyncio.sleep(0.05)


def polls_closer_than(simulator: ProviderSimulator, gap: float) -> list[tuple[str, float]]:
    """Every pair of status polls of one provider task that came closer than `gap`."""
    times: dict[str, list[float]] = defaultdict(list)
    for request in simulator.requests_to("status"):
        times[request.query["task_id"]].append(request.received_at)
    return [
        (task_id, later - earlier)
        for task_id, seen in times.items()
        for earlier, later in zip(sorted(seen), sorted(seen)[1:], strict=False)
        if later - earlier < gap
    ]


async def assert_every_balance_explained(db: Database, tasks: list[Task]) -> None:
    assert await credits.unexplained_balances(db) == []
    for task in tasks:
        charged = await db.fetchall(
            "SELECT delta FROM ledger WHERE task_id = ? ORDER BY id", (task.id,)
        )
        assert [row["delta"] for row in charged] == [-FIVE_SECONDS_SILENT], task.id


async def test_clips_started_on_two_shards_are_posted_once_by_a_process_without_a_gateway(
    tmp_path: Path, postgres_server: str, simulator: ProviderSimulator
) -> None:
    simulator.render_seconds = 3600  # rendering until the test says otherwise
    async with (
        FakeDiscord(heartbeat_interval_ms=200, shard_count=SHARDS) as fake,
        shared_database(postgres_server) as (url, db),
    ):
        places = [guild_on_shard(fake, shard, SHARDS) for shard in (0, 1, 0, 1)]
        # A lease far longer than the test: the worker gets the tasks only by hand-back.
        lease = {"WORK_LEASE_SECONDS": "300"}
        first = process(fake, simulator, tmp_path, url, "0", **lease)
        second = process(fake, simulator, tmp_path, url, "1", **lease)
        worker = process(fake, simulator, tmp_path, url, "none", **lease)
        for bot in (first, second, worker):
            await bot.start()
        for user, (guild, channel) in enumerate(places, start=1):
            await generate(fake, guild, channel, user)
        await wait_until(db, len(places), "rendering")

        # Both gateway processes stop (SIGTERM hands their claims back); renders then end.
        assert await first.terminate() == 0 and await second.terminate() == 0
        for provider_task in simulator.tasks:
            simulator.finish(provider_task)
        # Handed back: the worker takes them at once, not when the 300 s leases run out.
        tasks = await wait_until(db, len(places), "done", within=10)

        assert await worker.terminate() == 0
        for guild, channel in places:
            assert len(clips_in(fake, channel)) == 1, f"one clip in guild {guild}'s channel"
        assert len(simulator.requests_to("generate")) == len(places), "each submitted once"
        await assert_every_balance_explained(db, tasks)
        for bot in (first, second, worker):
            assert not any("Traceback" in line for line in bot.output), bot.output
        assert not fake.errors


async def test_the_tasks_of_a_killed_process_are_finished_by_another_within_the_lease(
    tmp_path: Path, postgres_server: str, simulator: ProviderSimulator
) -> None:
    simulator.render_seconds = 3600
    poll_interval = 0.2
    async with (
        FakeDiscord(heartbeat_interval_ms=200, shard_count=SHARDS) as fake,
        shared_database(postgres_server) as (url, db),
    ):
        settings = {"WORK_LEASE_SECONDS": "1", "POLL_INTERVAL_SECONDS": str(poll_interval)}
        doomed = process(fake, simulator, tmp_path, url, "0", **settings)
        survivor = process(fake, simulator, tmp_path, url, "1", **settings)
        guild, channel = guild_on_shard(fake, 0, SHARDS)
        await doomed.start()
        await survivor.start()
        for user in range(1, 4):
            await generate(fake, guild, channel, user)
        await wait_until(db, 3, "rendering")

        await doomed.kill()
        killed_at = time.monotonic()
        for provider_task in simulator.tasks:
            simulator.finish(provider_task)
        # Within the lease and a second, with room for a loaded machine: not the 30 s a
        # process waits when nothing of its own is due.
        tasks = await wait_until(db, 3, "done", within=10)
        FIGURES["kill -9 to the last clip posted by another process (lease 1 s)"] = (
            f"{time.monotonic() - killed_at:.2f} s"
        )

        assert await survivor.terminate() == 0
        assert len(clips_in(fake, channel)) == 3, "each clip posted once"
        assert len(simulator.requests_to("generate")) == 3
        await assert_every_balance_explained(db, tasks)
        # Two processes polled these tasks, one before the kill, one after: never both at once.
        assert polls_closer_than(simulator, poll_interval * 0.9) == []


async def test_processes_together_keep_to_the_providers_request_rate(
    tmp_path: Path, postgres_server: str, simulator: ProviderSimulator
) -> None:
    rate = 10
    # The provider refuses past half again the ceiling: only a shared pace stays under it
    # with three processes each allowed the whole ceiling.
    simulator.max_rps = rate * 1.5
    simulator.render_seconds = 3600
    async with (
        FakeDiscord(heartbeat_interval_ms=200, shard_count=SHARDS) as fake,
        shared_database(postgres_server) as (url, db),
    ):
        settings = {"PROVIDER_MAX_RPS": str(rate)}
        bots = [
            process(fake, simulator, tmp_path, url, shards, **settings)
            for shards in ("0", "1", "none")
        ]
        places = [guild_on_shard(fake, shard, SHARDS) for shard in (0, 1) * 3]
        for bot in bots:
            await bot.start()
        for user, (guild, channel) in enumerate(places, start=1):
            await generate(fake, guild, channel, user)
        await wait_until(db, len(places), "rendering")
        # Six renders due every 0.05 s: far more polls wanted than the ceiling allows.
        started = time.monotonic()
        polls = len(simulator.requests_to("status"))
        while len(simulator.requests_to("status")) < polls + 2 * rate:
            assert time.monotonic() - started < 30, "the processes stopped polling"
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started

        for bot in bots:
            assert await bot.terminate() == 0
        assert simulator.rate_limited == 0, "the provider never had to refuse a request"
        FIGURES["status polls per second, three processes sharing PROVIDER_MAX_RPS=10"] = (
            f"{2 * rate / elapsed:.1f}"
        )
