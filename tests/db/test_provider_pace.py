"""PROVIDER_MAX_RPS across processes: turns taken from the database every process shares."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp

from db import Database, coordination
from db.backends import open_database
from provider.client import SeedanceClient
from provider.models import GenerationRequest
from provider.simulator import ProviderSimulator
from tests.harness import API_KEY

RPS = 50.0
PROCESSES = 3
POLLS_EACH = 8


@contextlib.asynccontextmanager
async def processes(
    database_url: str, simulator: ProviderSimulator
) -> AsyncIterator[list[SeedanceClient]]:
    """One client per would-be process, each on its own connection to the database."""
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        clients = []
        for _ in range(PROCESSES):
            db = await open_database(database_url)
            stack.push_async_callback(db.close)
            pace = coordination.ProviderPace(db)
            clients.append(
                SeedanceClient(session, simulator.base_url, API_KEY, max_rps=RPS, shared_pace=pace)
            )
        yield clients


async def test_processes_together_keep_to_one_request_rate(
    database_url: str, simulator: ProviderSimulator
) -> None:
    async with processes(database_url, simulator) as clients:
        task_id = await clients[0].generate(GenerationRequest("a lantern", "16:9", 5))
        await asyncio.gather(
            *(client.status(task_id) for client in clients for _ in range(POLLS_EACH))
        )

    times = sorted(r.received_at for r in simulator.requests_to("status"))
    assert len(times) == PROCESSES * POLLS_EACH
    # Each client alone would send its eight in 0.14 s, all three together in the same
    # 0.14 s. Shared, they queue: 23 gaps of 1.02/50 s; arrivals jitter, so one gap of slack.
    assert times[-1] - times[0] >= (len(times) - 2) * 1.02 / RPS


async def test_a_rate_limit_seen_by_one_process_holds_the_others_off(
    database_url: str, simulator: ProviderSimulator, db: Database
) -> None:
    async with processes(database_url, simulator) as (first, second, _):
        task_id = await first.generate(GenerationRequest("a lantern", "16:9", 5))
        simulator.fail_next("status", 429, retry_after=0.3)
        limited = asyncio.create_task(first.status(task_id))
        # Until the first process has told the others to hold off (its pause is in the row).
        async with asyncio.timeout(5):
            while not await pause_recorded(db, after=time.time() + 0.1):  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        await second.status(task_id)
        await limited

    refused, *answered = simulator.requests_to("status")
    assert len(answered) == 2
    assert min(r.received_at for r in answered) - refused.received_at >= 0.29


async def pause_recorded(db: Database, *, after: float) -> bool:
    row = await db.fetchone(
        "SELECT value FROM bot_state WHERE key = ?", (coordination.ProviderPace.KEY,)
    )
    return row is not None and float(row["value"]) > after
