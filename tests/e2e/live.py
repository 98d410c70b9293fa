"""The bot running for real: `bot.start()` over the fake gateway, or `bot.py` as a process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bot import open_bot
from core.settings import Settings
from db import Row
from db.backends import dialect_of
from db.postgres import connect_options
from provider.simulator import ProviderSimulator
from tests.fakediscord import FakeDiscord
from tests.harness import API_KEY, CLIENT_OPTIONS, TOKEN, Harness

ROOT = Path(__file__).resolve().parents[2]
INVOKERS = (
    "CommandTree-invoker",
    "discord-ui-view-dispatch",
    "discord-ui-dynamic-item",
    "discord-ui-modal-dispatch",
)
# discord.py waits this long after the last GUILD_CREATE before "ready" (default 2 s).
GUILD_READY_TIMEOUT = 0.05

# Discord's 5 s between two shards' IDENTIFYs, shortened (the spacing is still enforced).
IDENTIFY_GAP = 0.2
# Figures the suite prints at the end (a figure to watch, not a timed assertion).
FIGURES: dict[str, str] = {}
# Every bot.py process a test started: one a failed test left running is killed after it.
STARTED: list[BotProcess] = []


@dataclass
class LiveHarness(Harness):
    """A bot connected through the fake gateway; interactions arrive over the websocket."""

    sent_at: dict[str, float] = field(default_factory=dict)

    async def dispatch(self, payload: dict[str, Any]) -> None:
        """Send the interaction over the gateway and wait for its handler to end."""
        interaction_id = int(payload["id"])
        seen = asyncio.ensure_future(
            self.bot.wait_for("interaction", check=lambda i: i.id == interaction_id, timeout=5)
        )
        before = set(asyncio.all_tasks())
        self.sent_at[payload["id"]] = time.monotonic()
        await self.fake.send_interaction(payload)
        await seen
        # The command tree starts its handler just before it dispatches "interaction".
        started = [t for t in asyncio.all_tasks() - before if t.get_name().startswith(INVOKERS)]
        await asyncio.gather(*started)

    def ack_latency(self, payload: dict[str, Any]) -> float:
        """Seconds from sending the interaction to Discord receiving its acknowledgement."""
        return self.callback(payload).time - self.sent_at[payload["id"]]


@contextlib.asynccontextmanager
async def live_bot(
    fake: FakeDiscord,
    simulator: ProviderSimulator,
    settings: Settings,
    client_options: Mapping[str, Any] = CLIENT_OPTIONS,
    *,
    within: float = 10.0,
) -> AsyncIterator[LiveHarness]:
    """Run the bot as bot.py's run() does (login, gateway, ready) and close it cleanly after.

    The provider client is the tests' unlimited one unless `client_options` say otherwise
    (the benchmark passes production's).
    """
    fake.gateway_connected.clear()
    async with open_bot(
        settings,
        client_options=client_options,
        bot_options={"guild_ready_timeout": GUILD_READY_TIMEOUT},
    ) as bot:
        bot.identify_gap = IDENTIFY_GAP
        runner = asyncio.create_task(bot.start(settings.discord_token), name="bot-start")
        try:
            waiter = asyncio.ensure_future(_ready(fake, bot))
            done, _ = await asyncio.wait(
                {waiter, runner}, timeout=within, return_when="FIRST_COMPLETED"
            )
            waiter.cancel()
            if runner in done:
                runner.result()
                raise AssertionError("bot.start() returned before the bot was ready")
            assert waiter in done, f"the bot was not ready within {within:g} s"
            yield LiveHarness(bot, fake, simulator, settings)
        finally:
            await bot.close()
            await asyncio.wait_for(runner, within)
            await fake.wait_for_gateway_closed()


async def _ready(fake: FakeDiscord, bot: Any) -> None:
    await fake.gateway_connected.wait()
    await bot.wait_until_ready()


@dataclass
class BotProcess:
    """`python bot.py` in a child process, pointed at the fakes through its environment."""

    fake: FakeDiscord
    simulator: ProviderSimulator
    database: Path
    env: dict[str, str] = field(default_factory=dict)
    database_url: str = ""
    """The DATABASE_URL it runs on; empty: the SQLite file `database`."""
    process: asyncio.subprocess.Process | None = None
    output: list[str] = field(default_factory=list)

    async def start(self) -> None:
        """Start the process and wait until its gateway session is up."""
        self.fake.gateway_connected.clear()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "SEEDANCE"))},
            "DISCORD_TOKEN": TOKEN,
            "SEEDANCE_API_KEY": API_KEY,
            "SEEDANCE_API_BASE": self.simulator.base_url,
            "DATABASE_URL": self.database_url or f"sqlite:///{self.database}",
            "POLL_INTERVAL_SECONDS": "0.05",
            "FAKE_DISCORD_API": self.fake.api_base,
            "FAKE_DISCORD_BASE": self.fake.base_url,
            "FAKE_DISCORD_GATEWAY": self.fake.gateway_url,
            "FAKE_DISCORD_IDENTIFY_GAP": str(IDENTIFY_GAP),
            "PYTHONPATH": str(ROOT),
            **self.env,
        }
        STARTED.append(self)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "tests" / "e2e" / "launch.py"),
            cwd=self.database.parent,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        if self.env.get("SHARD_IDS") == "none":
            await self._wait_for_output("polling and delivering only")
            return
        connected = asyncio.ensure_future(self.fake.gateway_connected.wait())
        exited = asyncio.ensure_future(self.process.wait())
        await asyncio.wait({connected, exited}, timeout=20, return_when="FIRST_COMPLETED")
        connected.cancel()
        exited.cancel()
        if not self.fake.gateway_connected.is_set():
            if self.process.returncode is not None:
                await self._reader  # the whole of what it printed before it ended
            raise AssertionError("bot.py never connected:\n" + "\n".join(self.output))

    async def _wait_for_output(self, text: str, within: float = 20.0) -> None:
        """Wait until the process has logged a line containing `text`."""
        assert self.process is not None
        deadline = time.monotonic() + within
        while not any(text in line for line in self.output):
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"bot.py never logged {text!r}:\n" + "\n".join(self.output))
            await asyncio.sleep(0.05)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for line in self.process.stdout:
            self.output.append(line.decode(errors="replace").rstrip())

    async def kill(self) -> None:
        """End the process at once, as a crash or `kill -9` would."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()
        await self._reader

    async def terminate(self) -> int:
        """Ask the process to stop (SIGTERM) and return its exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(self.process.wait(), 20)
        await self._reader
        return status

    async def wait_for_state(self, *states: str, within: float = 15.0) -> Row:
        """Wait until the newest task in the database is in one of `states`."""
        deadline = time.monotonic() + within
        while True:
            row = await self._newest()
            if row is not None and row["state"] in states:
                return row
            if time.monotonic() > deadline:
                raise AssertionError(f"the task stayed {row and row['state']}: {self.output}")
            await asyncio.sleep(0.05)

    async def _newest(self) -> Row | None:
        if dialect_of(self.database_url or "sqlite:///x") == "sqlite":
            return await asyncio.to_thread(self._newest_task)
        # Its own connection, beside the process's pool, as another process would read.
        conn = await asyncpg.connect(**connect_options(self.database_url))
        try:
            row: Row | None = await conn.fetchrow("SELECT * FROM tasks ORDER BY rowid DESC LIMIT 1")
            return row
        finally:
            await conn.close()

    def _newest_task(self) -> sqlite3.Row | None:
        if not self.database.exists():
            return None
        with contextlib.closing(sqlite3.connect(self.database, timeout=5)) as conn:
            conn.row_factory = sqlite3.Row
            try:
                row: sqlite3.Row | None = conn.execute(
                    "SELECT * FROM tasks ORDER BY rowid DESC LIMIT 1"
                ).fetchone()
            except sqlite3.OperationalError:
                return None  # not migrated yet
            return row
