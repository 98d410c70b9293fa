"""Fixtures shared by every test: a real SQLite file, the provider simulator on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import Database
from db.sqlite import SqliteDatabase
from provider.simulator import ProviderSimulator
from tests.fakediscord import FakeDiscord
from tests.harness import API_KEY, Harness, bot_settings, errors_logged, running_bot


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database in a temporary folder."""
    database = await SqliteDatabase.open(tmp_path / "bot.db")
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def simulator() -> AsyncIterator[ProviderSimulator]:
    """The provider simulator on 127.0.0.1, rendering in a fraction of a second."""
    sim = ProviderSimulator(api_key=API_KEY, render_seconds=0.2)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    """A fake Discord REST API on 127.0.0.1 that the real discord.py talks to."""
    async with FakeDiscord() as fake_discord:
        yield fake_discord


@pytest.fixture
async def harness(
    tmp_path: Path,
    fake: FakeDiscord,
    simulator: ProviderSimulator,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Harness]:
    """The bot, logged in to the fake Discord, driving the simulator.

    Tests change settings with `@pytest.mark.settings(name=value)`; a test that expects
    the bot to log an error says so with `@pytest.mark.allow_errors`.
    """
    marker = request.node.get_closest_marker("settings")
    overrides = marker.kwargs if marker else {}
    async with running_bot(fake, simulator, bot_settings(tmp_path, simulator, **overrides)) as h:
        yield h
    assert not fake.errors
    if request.node.get_closest_marker("allow_errors") is None:
        logged = caplog.get_records("setup") + caplog.get_records("call") + caplog.records
        assert errors_logged(logged) == []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures the end-to-end scenarios measured (to watch, not to assert)."""
    from tests.e2e.live import FIGURES

    if FIGURES:
        terminalreporter.section("figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
