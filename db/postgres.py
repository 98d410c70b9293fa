"""The PostgreSQL backend: an asyncpg pool, `$n` placeholders, a one-row schema_version table.

The modules above write `?` placeholders as for SQLite; `numbered` rewrites them. Transactions
run at READ COMMITTED: single-statement changes (a balance update with its guard, a state
move with its allowed states) are atomic under it, and where a transaction reads before it
writes (a refill, the reserve's limits) it serializes on an advisory lock first.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from db import (
    Connection,
    Database,
    DatabaseUnavailable,
    DatabaseURLError,
    IntegrityError,
    Row,
    migrations,
    redacted,
)

log = logging.getLogger(__name__)

# Enough for a bot's bursts (each transaction holds one connection for milliseconds) and far
# under PostgreSQL's default max_connections of 100 for a few processes.
POOL_SIZE = 10
_SHAPE = "postgresql://USER:PASSWORD@HOST:PORT/NAME"
_TOKENS = re.compile(r"'(?:[^']|'')*'|\?")
_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    version  INTEGER NOT NULL
);
INSERT INTO schema_version (version) VALUES (0) ON CONFLICT DO NOTHING;
"""


def connect_options(url: str) -> dict[str, Any]:
    """Split a postgresql:// URL into asyncpg's keyword arguments, or raise DatabaseURLError."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise DatabaseURLError(f"DATABASE_URL has a port that is not a number ({_SHAPE})") from None
    name = unquote(parts.path.removeprefix("/"))
    if not name or "/" in name:
        raise DatabaseURLError(f"DATABASE_URL must name one database ({_SHAPE})")
    query = parse_qs(parts.query)
    if set(query) - {"sslmode"}:
        raise DatabaseURLError("DATABASE_URL takes no query parameter but sslmode")
    options: dict[str, Any] = {
        "host": unquote(parts.hostname) if parts.hostname else None,
        "port": port,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password is not None else None,
        "database": name,
    }
    if "sslmode" in query:
        options["ssl"] = query["sslmode"][-1]
    return options


@lru_cache(maxsize=1024)
def numbered(sql: str) -> str:
    """Rewrite `?` placeholders (outside string literals) as PostgreSQL's `$1`, `$2`, …."""
    counter = itertools.count(1)
    return _TOKENS.sub(lambda m: f"${next(counter)}" if m.group() == "?" else m.group(), sql)


def _rowcount(status: str) -> int:
    """Return the row count of a command tag such as `INSERT 0 1` or `UPDATE 3`."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def _lock_key(scope: tuple[object, ...]) -> int:
    """Return the 64-bit advisory-lock key of a scope (a collision only makes two wait)."""
    digest = hashlib.blake2b(repr(scope).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_MIGRATION_LOCK = _lock_key(("schema migrations",))


@contextmanager
def _integrity() -> Iterator[None]:
    try:
        yield
    except asyncpg.IntegrityConstraintViolationError as error:
        raise IntegrityError(str(error)) from error


class PostgresConnection(Connection):
    """One pooled connection inside its transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement and return how many rows it changed."""
        with _integrity():
            status = await self._conn.execute(numbered(sql), *params)
        return _rowcount(str(status))

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        """Run one statement once per row of parameters."""
        with _integrity():
            await self._conn.executemany(numbered(sql), [tuple(row) for row in rows])

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """Run one query (or a statement with RETURNING) and return its first row."""
        with _integrity():
            row: Row | None = await self._conn.fetchrow(numbered(sql), *params)
        return row

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """Run one query and return all its rows."""
        return list(await self._conn.fetch(numbered(sql), *params))

    async def serialize(self, *scope: object) -> None:
        """Wait for the transaction-scoped advisory lock of `scope` (released at commit)."""
        await self._conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(scope))


class PostgresDatabase(Database):
    """A pool of connections to one PostgreSQL database, shared by any number of processes."""

    dialect = "postgres"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    shared = True

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, *, target_version: int | None = None) -> PostgresDatabase:
        """Connect a pool to the database the URL names and migrate it."""
        options = connect_options(url)
        try:
            pool = await asyncpg.create_pool(**options, min_size=1, max_size=POOL_SIZE)
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            # Not chained: the driver's frames hold the password; its text (scrubbed) is enough.
            reason = str(error) or type(error).__name__
            if options["password"]:
                reason = reason.replace(options["password"], "***")
            raise DatabaseUnavailable(f"cannot open {redacted(url)}: {reason}") from None
        db = cls(pool)
        try:
            await db.migrate(target_version)
        except BaseException:
            await pool.close()
            raise
        return db

    async def close(self) -> None:
        """Wait for the connections in use to come back, then close them all."""
        await self._pool.close()

    async def version(self) -> int:
        """Return the schema version recorded in the schema_version table (0 before any)."""
        if await self._pool.fetchval("SELECT to_regclass('schema_version')") is None:
            return 0
        return int(await self._pool.fetchval("SELECT version FROM schema_version"))

    async def migrate(self, target_version: int | None = None) -> None:
        """Apply every migration newer than the recorded version, each in its own transaction."""
        available = migrations("postgres")
        async with self._pool.acquire() as conn:
            for version, name, sql in available:
                if target_version is not None and version > target_version:
                    break
                async with conn.transaction():
                    # Processes starting at once migrate one after the other, never both.
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                    await conn.execute(_VERSION_TABLE)
                    current = int(await conn.fetchval("SELECT version FROM schema_version"))
                    self._check_version(current, available)
                    if current >= version:
                        continue
                    await conn.execute(sql)
                    await conn.execute("UPDATE schema_version SET version = $1", version)
                log.info("Applied database migration %s", name)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """Run the block as one transaction on a pooled connection; roll back if it raises."""
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresConnection(conn)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """Run one read query and return its first row."""
        row: Row | None = await self._pool.fetchrow(numbered(sql), *params)
        return row

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """Run one read query and return all its rows."""
        return list(await self._pool.fetch(numbered(sql), *params))
