"""The bot's SQLite database: one connection, one writer path, numbered migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    """The database file is newer than this code or a migration is malformed."""


def _system_clock() -> datetime:
    return datetime.now(UTC)


_clock: Callable[[], datetime] = _system_clock


def now() -> datetime:
    """Return the current UTC time as every timestamp and budget period sees it."""
    return _clock()


def set_clock(clock: Callable[[], datetime] | None) -> None:
    """Let tests move time (budget periods, refills); None restores the system clock."""
    global _clock  # one process-wide notion of "now", swapped only by tests
    _clock = clock or _system_clock


def iso(moment: datetime) -> str:
    """Return a moment as the ISO text stored in every timestamp column."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow() -> str:
    """Return the current UTC time as the ISO text stored in every timestamp column."""
    return iso(now())


def migrations() -> list[tuple[int, str, str]]:
    """Return (version, name, sql) for every migration file, in order."""
    found: list[tuple[int, str, str]] = []
    for entry in resources.files("db").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (version, name, _) in enumerate(found, start=1):
        if version != expected:
            raise MigrationError(f"migration {name} is out of sequence (expected {expected:04d})")
    return found


class Database:
    """The one connection every part of the bot reads and writes through.

    aiosqlite runs each connection on its own thread, and SQLite allows one writer at a
    time; an asyncio lock around every statement group keeps two coroutines from
    interleaving inside one transaction.
    """

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: Path, *, target_version: int | None = None) -> Database:
        """Open (creating if needed) the database at `path` and migrate it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await conn.execute("PRAGMA busy_timeout = 5000")
            # FULL: a committed charge or refund survives a power cut, not only a crash.
            await conn.execute("PRAGMA synchronous = FULL")
            db = cls(conn, path)
            await db.migrate(target_version)
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        """Wait for the statement in flight, then close the connection."""
        async with self._lock:
            await self._conn.close()

    async def version(self) -> int:
        """Return the schema version recorded in PRAGMA user_version."""
        row = await self.fetchone("PRAGMA user_version")
        assert row is not None
        return int(row[0])

    async def migrate(self, target_version: int | None = None) -> None:
        """Apply every migration newer than the file's user_version, each in its own transaction."""
        available = migrations()
        latest = available[-1][0] if available else 0
        target = latest if target_version is None else target_version
        current = await self.version()
        if current > latest:
            raise MigrationError(
                f"the database is at schema version {current}, newer than this code ({latest})"
            )
        for version, name, sql in available:
            if current < version <= target:
                async with self._lock:
                    # The BEGIN inside the script makes the file and its version bump one
                    # transaction: a failed migration leaves the previous version intact.
                    try:
                        await self._conn.executescript(
                            f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;"
                        )
                    except BaseException:
                        if self._conn.in_transaction:
                            await self._conn.execute("ROLLBACK")
                        raise
                log.info("Applied database migration %s", name)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Run the block as one write transaction; roll back if it raises."""
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
                await self._conn.execute("COMMIT")
            except BaseException:
                # Even when cancelled mid-BEGIN the statement still runs on aiosqlite's
                # thread; a ROLLBACK queued behind it keeps the shared connection usable.
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._conn.execute("ROLLBACK")
                raise

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        """Run one read query and return its first row."""
        async with self._lock, self._conn.execute(sql, tuple(params)) as cursor:
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        """Run one read query and return all its rows."""
        async with self._lock, self._conn.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())

    async def get_state(self, key: str) -> str | None:
        """Return a value the bot kept between runs."""
        row = await self.fetchone("SELECT value FROM bot_state WHERE key = ?", (key,))
        return None if row is None else str(row["value"])

    async def set_state(self, key: str, value: str) -> None:
        """Keep a value between runs."""
        async with self.transaction() as conn:
            await conn.execute(
                "INSERT INTO bot_state (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (key, value, utcnow()),
            )
