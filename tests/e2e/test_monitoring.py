"""/healthz of a bot connected through the fake gateway: healthy, then a database that hangs."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp

from provider.simulator import ProviderSimulator
from tests.e2e.live import live_bot
from tests.fakediscord import FakeDiscord
from tests.harness import bot_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def healthz(port: int) -> tuple[int, dict[str, Any], float]:
    """GET /healthz; return the status, the body and how long the answer took."""
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as resp,
    ):
        return resp.status, await resp.json(), time.monotonic() - started


async def test_health_follows_the_database_and_answers_within_a_second(
    tmp_path: Path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    port = free_port()
    settings = bot_settings(tmp_path, simulator, metrics_port=port)
    async with live_bot(fake, simulator, settings) as live:
        status, body, _ = await healthz(port)
        assert status == 200, body
        assert body["status"] == "ok" and body["problems"] == []
        [shard] = body["shards"]
        assert shard["id"] == 0 and shard["connected"] is True
        assert body["database"]["ok"] is True

        # Another process holds SQLite's write lock: the bot can read but not write, so it
        # cannot charge or deliver. The real file, the real lock, no mock.
        assert settings.database_path is not None
        blocker = sqlite3.connect(settings.database_path, timeout=0, isolation_level=None)
        with contextlib.closing(blocker):
            blocker.execute("BEGIN EXCLUSIVE")
            for _ in range(2):  # the second call must not queue behind the first
                status, body, took = await healthz(port)
                assert status == 503, body
                assert took < 1.0, took
                [problem] = body["problems"]
                assert problem.startswith("database: no answer for")
                assert body["database"] == {"ok": False, "round_trip_ms": None}
                assert body["shards"][0]["connected"] is True
            blocker.execute("ROLLBACK")

        deadline = time.monotonic() + 6  # the waiting ping gets the lock once it is free
        while (await healthz(port))[0] != 200:
            assert time.monotonic() < deadline, "the bot stayed unhealthy after the lock went"
            await asyncio.sleep(0.1)
        assert live.bot.monitoring is not None
    # Closing the bot stopped the server.
    try:
        await healthz(port)
    except aiohttp.ClientConnectionError:
        pass
    else:
        raise AssertionError("/healthz still answered after the bot closed")
