"""`python bot.py --check`: try everything the bot needs, one line each, without starting it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import discord

from core import logs
from core.bot import invite_url
from core.settings import Settings, SettingsError
from db import migrations
from provider.client import SeedanceClient
from provider.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderOutOfCredits,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)

# A task id the provider cannot have issued: asking for it proves the key without a charge.
PROBE_TASK_ID = "bot-self-check-no-such-task"
TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Check:
    """The outcome of one check: what was checked, and what the operator should know or do."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        """Return the check as the one line `--check` prints."""
        return f"{'✓' if self.ok else '✗'} {self.name}: {self.detail}"


def main(environ: Mapping[str, str]) -> int:
    """Print one line per check; return 0 when every check passed, 1 otherwise."""
    try:
        settings = Settings.from_env(environ)
    except SettingsError as error:
        print(Check("settings", False, str(error)).line())
        return 1
    logs.configure("WARNING", settings.log_format, settings.secrets)
    checks = asyncio.run(run_checks(settings))
    redact = logs.Redactor(settings.secrets)
    for check in checks:
        print(redact(check.line()))
    return 0 if all(check.ok for check in checks) else 1


async def run_checks(settings: Settings) -> list[Check]:
    """Run every check that applies to these settings."""
    checks = [Check("settings", True, "every setting parses")]
    path = settings.database_path
    if path is None:
        checks.append(await check_postgres(settings.database_url))
    else:
        checks.append(await asyncio.to_thread(check_database, path))
    checks.append(await check_discord(settings.discord_token))
    async with aiohttp.ClientSession() as session:
        checks.append(await check_provider(settings, session))
    if settings.metrics_port is not None:
        checks.append(check_port(settings.metrics_host, settings.metrics_port))
    return checks


async def check_postgres(url: str) -> Check:
    """Check that PostgreSQL answers and say which migrations are pending (changing nothing)."""
    import asyncpg

    from db.postgres import connect_options

    available = migrations("postgres")
    latest = available[-1][0] if available else 0
    try:
        conn = await asyncio.wait_for(asyncpg.connect(**connect_options(url)), 10)
    except Exception as error:
        # The error's class only: its text may hold the host and user of the URL.
        return Check(
            "database",
            False,
            f"PostgreSQL did not answer ({type(error).__name__}): check DATABASE_URL",
        )
    try:
        exists = await conn.fetchval("SELECT to_regclass('schema_version')")
        current = (
            0 if exists is None else int(await conn.fetchval("SELECT version FROM schema_version"))
        )
    finally:
        await conn.close()
    if current > latest:
        return Check(
            "database", False, f"schema version {current} is newer than this code ({latest})"
        )
    pending = [name for version, name, _ in available if version > current]
    if pending:
        return Check(
            "database", True, "PostgreSQL answers; pending migrations: " + ", ".join(pending)
        )
    return Check("database", True, f"PostgreSQL answers; schema version {current}, up to date")


def check_database(path: Path) -> Check:
    """Check that the SQLite file can be opened and say which migrations are pending."""
    available = migrations()
    latest = available[-1][0] if available else 0
    if not path.exists():
        folder = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            return Check(
                "database",
                False,
                f"cannot create {path}: {folder} is not a writable "
                "folder; fix DATABASE_URL or the folder's permissions",
            )
        return Check(
            "database",
            True,
            f"{path} does not exist yet; the first start creates it with {latest} migrations",
        )
    try:
        # Read-only: a check never creates, migrates or locks the bot's database.
        uri = path.absolute().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as error:
        return Check("database", False, f"cannot read {path} ({error}); fix DATABASE_URL")
    if not os.access(path, os.W_OK):
        return Check("database", False, f"{path} is read-only for this user; fix its permissions")
    if version > latest:
        return Check(
            "database",
            False,
            f"{path} is at schema version {version}, newer than this "
            f"code ({latest}); run the release that wrote it",
        )
    pending = [name for number, name, _ in available if number > version]
    if pending:
        return Check(
            "database",
            True,
            f"{path} is reachable at schema version {version}; "
            f"pending, applied on the next start: {', '.join(pending)}",
        )
    return Check("database", True, f"{path} is reachable, schema version {version}, up to date")


async def check_discord(token: str) -> Check:
    """Log in over REST (`GET /users/@me`); name the bot and give its invite link."""
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            me = await http.static_login(token)
            application = await http.application_info()
    except discord.LoginFailure:
        return Check(
            "Discord token",
            False,
            "Discord refused DISCORD_TOKEN (401); copy the bot "
            "token again (Developer Portal → Bot → Reset Token)",
        )
    except discord.HTTPException as error:
        return Check(
            "Discord token",
            False,
            f"Discord answered HTTP {error.status}; try again in a few minutes",
        )
    except (OSError, TimeoutError, aiohttp.ClientError) as error:
        return Check(
            "Discord token",
            False,
            f"could not reach Discord ({type(error).__name__}); check the network and any proxy",
        )
    finally:
        await http.close()
    name = (
        me["username"]
        if me.get("discriminator") in (None, "0")
        else (f"{me['username']}#{me['discriminator']}")
    )
    link = invite_url(int(application["id"]))
    return Check("Discord token", True, f"accepted: the bot is {name}; invite it with {link}")


async def check_provider(settings: Settings, session: aiohttp.ClientSession) -> Check:
    """Ask for a task that cannot exist: any answer but 401 means the key is accepted."""
    if settings.sandbox:
        return Check("provider key", True, "sandbox: the built-in simulator; nothing is spent")
    base = settings.seedance_api_base
    client = SeedanceClient(
        session,
        base,
        settings.seedance_api_key,
        request_timeout=TIMEOUT_SECONDS,
        max_attempts=1,
        max_rps=0,
    )
    try:
        await client.status(PROBE_TASK_ID)
    except ProviderAuthError:
        return Check(
            "provider key",
            False,
            "the provider refused SEEDANCE_API_KEY (401); copy "
            "the key again from the provider's dashboard",
        )
    except ProviderOutOfCredits:
        return Check(
            "provider key",
            False,
            "the key is accepted but the provider account is out of credits; top it up",
        )
    except ProviderRejected as error:
        return Check(
            "provider key",
            True,
            f"accepted ({base} answered a made-up task id with HTTP {error.status or error.code})",
        )
    except (ProviderUnavailable, ProviderTimeout) as error:
        return Check(
            "provider key",
            False,
            f"could not reach {base} ({error}); check SEEDANCE_API_BASE and the network",
        )
    except ProviderError as error:
        return Check("provider key", False, f"{error} Try again in a few minutes.")
    return Check("provider key", True, f"accepted ({base} answered)")


def check_port(host: str, port: int) -> Check:
    """Check that the metrics server could listen on host:port now."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as sock:
            # As aiohttp's server does: a port left in TIME_WAIT by the last run is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as error:
        return Check(
            "metrics port",
            False,
            f"cannot listen on {host}:{port} ({error.strerror}); "
            "stop what uses it or choose another METRICS_PORT",
        )
    return Check("metrics port", True, f"{host}:{port} is free")
