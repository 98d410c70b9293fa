"""Start the Seedance video bot: read settings, open shared resources, run until stopped."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import discord
from dotenv import find_dotenv, load_dotenv

from core import logs, monitoring, selfcheck
from core.bot import VideoBot
from core.settings import Settings, SettingsError
from db import DatabaseUnavailable, ProcessConflict, coordination
from db.backends import open_database
from provider.client import SeedanceClient
from provider.simulator import ProviderSimulator

log = logging.getLogger("bot")


@contextlib.asynccontextmanager
async def provider_base(settings: Settings) -> AsyncIterator[str]:
    """Yield the provider's base URL, serving the built-in simulator in sandbox mode."""
    if not settings.sandbox:
        yield settings.seedance_api_base
        return
    simulator = ProviderSimulator(render_seconds=settings.sandbox_render_seconds)
    base = await simulator.start()
    log.info("Sandbox mode: using the built-in provider simulator at %s; nothing is spent", base)
    try:
        yield base
    finally:
        await simulator.stop()


@contextlib.asynccontextmanager
async def open_bot(
    settings: Settings,
    *,
    client_options: Mapping[str, Any] | None = None,
    bot_options: Mapping[str, Any] | None = None,
) -> AsyncIterator[VideoBot]:
    """Own the lifetimes of the HTTP session, the provider, the database and the bot.

    `client_options` tune the provider client and `bot_options` the discord.py client
    (tests shorten timeouts and backoff).
    """
    async with aiohttp.ClientSession() as session, provider_base(settings) as base:
        db = await open_database(settings.database_url)
        try:
            options = {
                "max_rps": settings.provider_max_rps,
                "on_answer": monitoring.provider_answered,
                # Only processes on a shared database (PostgreSQL) call with the same key.
                "shared_pace": coordination.ProviderPace(db) if db.shared else None,
                **(client_options or {}),
            }
            provider = SeedanceClient(session, base, settings.seedance_api_key, **options)
            async with VideoBot(settings, db, provider, **(bot_options or {})) as bot:
                yield bot
        finally:
            await db.close()


async def run(settings: Settings) -> None:
    """Run the bot until Discord closes it or the process is told to stop."""
    async with open_bot(settings) as bot:
        loop = asyncio.get_running_loop()
        closing: set[asyncio.Task[None]] = set()
        closed = asyncio.Event()

        async def close() -> None:
            # close() lets the poller finish its step before the database closes.
            await bot.close()
            closed.set()

        def stop() -> None:
            job = asyncio.create_task(close())
            closing.add(job)
            job.add_done_callback(closing.discard)

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        if settings.gateway:
            await bot.start(settings.discord_token)
            # A signal's close may still be handing back claims: the database stays open for it.
            await asyncio.gather(*closing)
            return
        # SHARD_IDS=none: no gateway; over REST alone this process polls and delivers.
        await bot.login(settings.discord_token)
        log.info("SHARD_IDS=none: not connecting to the gateway; polling and delivering only")
        await closed.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the bot (or only check its settings); return the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="check settings, database, token and key; then exit"
    )
    options = parser.parse_args(argv)
    load_dotenv(find_dotenv(usecwd=True), override=False)
    if options.check:
        return selfcheck.main(os.environ)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        logs.settings_failed(error, os.environ)
        return 2
    logs.configure(settings.log_level, settings.log_format, settings.secrets)
    try:
        asyncio.run(run(settings))
    except (DatabaseUnavailable, ProcessConflict) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except discord.LoginFailure:
        print("error: Discord refused DISCORD_TOKEN: copy the bot token again", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
