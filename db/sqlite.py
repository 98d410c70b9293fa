"""The SQLite backend: one aiosqlite connection, one writer path, `PRAGMA user_version`."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from db import Connection, Database, IntegrityError, ProcessConflict, Row, migrations

log = logging.getLogger(__name__)


def sqlite_path(url: str) -> Path:
    """Turn `sqlite:///relative.db` or `sqlite:////absolute.db` into a path."""
    return Path(url.removeprefix("sqlite:///"))


class SqliteConnection(Connection):
    """The shared connection, inside a transaction the database's lock holds."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement and return how many rows it changed."""
        try:
            cursor = await self._conn.execute(sql, tuple(params))
        except sqlite3.IntegrityError as error:
            raise IntegrityError(str(error)) from error
        rowcount = cursor.rowcount
        await cursor.close()
        return rowcount

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        """Run one statement once per row of parameters."""
        try:
            await self._conn.executemany(sql, [tuple(row) for row in rows])
        except sqlite3.IntegrityError as error:
            raise IntegrityError(str(error)) from error

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """Run one query (or a statement with RETURNING) and return its first row."""
        try:
            async with self._conn.execute(sql, tuple(params)) as cursor:
                row: Row | None = await cursor.fetchone()
                return row
        except sqlite3.IntegrityError as error:
            raise IntegrityError(str(error)) from error

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """Run one query and return all its rows."""
        async with self._conn.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())

    async def serialize(self, *scope: object) -> None:
        """Nothing to take: BEGIN IMMEDIATE already made this the only writer."""


class SqliteDatabase(Database):
    """The one connection every part of the bot reads and writes through.

    aiosqlite runs each connection on its own thread, and SQLite allows one writer at a
    time; an asyncio lock around every statement group keeps two coroutines from
    interleaving inside one transaction.
    """

    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path
        self._process_lock: int | None = None

    def keep_to_this_process(self) -> bool:
        """Hold `<file>.lock` for as long as this process runs: one bot process per file.

        SQLite has one writer and the bot's claims on tasks assume one process; a second one
        would poll and post the same tasks. The operating system drops the lock when the
        process ends, however it ends, so a killed bot never leaves it behind.
        """
        if self._process_lock is not None:
            return True
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ProcessConflict(
                f"another bot process (pid {holder}) is running on {self.path}; SQLite serves "
                "one process: stop that one, or move to PostgreSQL to run several"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._process_lock = fd
        return True

    @classmethod
    async def open(cls, path: Path, *, target_version: int | None = None) -> SqliteDatabase:
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
        """Wait for the statement in flight, then close the connection (and the lock)."""
        async with self._lock:
            await self._conn.close()
        if self._process_lock is not None:
            os.close(self._process_lock)
            self._process_lock = None

    async def version(self) -> int:
        """Return the schema version recorded in PRAGMA user_version."""
        row = await self.fetchone("PRAGMA user_version")
        assert row is not None
        return int(row[0])

    async def migrate(self, target_version: int | None = None) -> None:
        """Apply every migration newer than the file's user_version, each in its own transaction."""
        available = migrations("sqlite")
        current = await self.version()
        latest = self._check_version(current, available)
        target = latest if target_version is None else target_version
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
    async def transaction(self) -> AsyncIterator[Connection]:
        """Run the block as one write transaction; roll back if it raises."""
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                yield SqliteConnection(self._conn)
                await self._conn.execute("COMMIT")
            except BaseException:
                # Even when cancelled mid-BEGIN the statement still runs on aiosqlite's
                # thread; a ROLLBACK queued behind it keeps the shared connection usable.
                with contextlib.suppress(sqlite3.OperationalError):
                    await self._conn.execute("ROLLBACK")
                raise

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """Run one read query and return its first row."""
        async with self._lock, self._conn.execute(sql, tuple(params)) as cursor:
            row: Row | None = await cursor.fetchone()
            return row

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """Run one read query and return all its rows."""
        async with self._lock, self._conn.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())
