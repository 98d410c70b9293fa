"""Fixtures for the end-to-end scenarios: the bot over the fake gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from provider.simulator import ProviderSimulator
from tests.e2e import openapi
from tests.e2e.live import STARTED, LiveHarness, live_bot
from tests.fakediscord import FakeDiscord
from tests.harness import bot_settings, errors_logged

HEARTBEAT_MS = 200


@pytest.fixture(autouse=True)
async def no_bot_process_outlives_its_test() -> AsyncIterator[None]:
    """Kill what a failed test left running, so it cannot poll into the next test's fakes."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.process is not None and process.process.returncode is None:
            await process.kill()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    """A fake Discord with a gateway that heartbeats quickly."""
    async with FakeDiscord(heartbeat_interval_ms=HEARTBEAT_MS) as fake_discord:
        yield fake_discord
    assert not fake_discord.errors
    # Every body the bot sent has the shape Discord's own spec gives (when the spec is here).
    assert openapi.violations(fake_discord.requests) == []


@pytest.fixture
async def live(
    tmp_path: Path,
    database_url: str,
    fake: FakeDiscord,
    simulator: ProviderSimulator,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[LiveHarness]:
    """The bot, started as bot.py starts it, connected through the fake gateway."""
    marker = request.node.get_closest_marker("settings")
    overrides = marker.kwargs if marker else {}
    async with live_bot(
        fake, simulator, bot_settings(tmp_path, simulator, database_url=database_url, **overrides)
    ) as h:
        yield h
    if request.node.get_closest_marker("allow_errors") is None:
        logged = caplog.get_records("setup") + caplog.get_records("call") + caplog.records
        assert errors_logged(logged) == []
