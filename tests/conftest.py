"""Fixtures shared by every test: a real database (a SQLite file, or a PostgreSQL database on
the server TEST_DATABASE_URL names), the provider simulator on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import Database
from db.backends import open_database
from provider.simulator import ProviderSimulator
from tests import postgres
from tests.fakediscord import FakeDiscord
from tests.harness import API_KEY, Harness, bot_settings, errors_logged, running_bot


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Which database the test runs on; every test that uses a database runs on both."""
    if request.param == "postgres":
        _need_postgres()
    return str(request.param)


@pytest.fixture
def postgres_server() -> str:
    """The URL of the PostgreSQL server's maintenance database, for tests of that backend alone."""
    _need_postgres()
    return postgres.SERVER_URL


def _need_postgres() -> None:
    if not postgres.SERVER_URL:
        if postgres.REQUIRED:
            pytest.fail(f"REQUIRE_POSTGRES=1: {postgres.SKIP_REASON}")
        pytest.skip(postgres.SKIP_REASON)


@pytest.fixture
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """The DATABASE_URL of a fresh, migrated database of the backend under test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.db'}"  # the bot creates and migrates it
    else:
        async with postgres.fresh_database() as url:
            yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated database: a file in a temporary folder, or a PostgreSQL database of its own."""
    database = await open_database(database_url)
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
    database_url: str,
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
    async with running_bot(
        fake, simulator, bot_settings(tmp_path, simulator, database_url=database_url, **overrides)
    ) as h:
        yield h
    assert not fake.errors
    if request.node.get_closest_marker("allow_errors") is None:
        logged = caplog.get_records("setup") + caplog.get_records("call") + caplog.records
        assert errors_logged(logged) == []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures the end-to-end scenarios measured (to watch, not to assert)."""
    from tests.e2e.live import FIGURES

    left_out = terminalreporter.config.stash.get(_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(f"SKIPPED {left_out} PostgreSQL tests: {postgres.SKIP_REASON}")

    if FIGURES:
        terminalreporter.section("figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a PostgreSQL server, leave its tests out (one summary line says so)."""
    if postgres.SERVER_URL or postgres.REQUIRED:
        return  # with REQUIRE_POSTGRES=1 and no server they run, and fail in `backend`
    needing = [item for item in items if _needs_postgres(item)]
    if needing:
        config.hook.pytest_deselected(items=needing)
        items[:] = [item for item in items if not _needs_postgres(item)]
        config.stash[_LEFT_OUT] = len(needing)


def _needs_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    on_postgres = callspec is not None and callspec.params.get("backend") == "postgres"
    return on_postgres or "postgres_server" in getattr(item, "fixturenames", ())


_LEFT_OUT = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop the PostgreSQL databases the run made."""
    if postgres.SERVER_URL:
        asyncio.run(postgres.drop_databases())
