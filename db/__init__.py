"""The bot's database: one interface, a SQLite and a PostgreSQL implementation, plain SQL.

Every module below writes its SQL once, with `?` placeholders, in the subset both dialects
share; a backend that needs another spelling (PostgreSQL's `$1`) rewrites it. Each backend
has its own numbered migrations (`db/migrations/<dialect>/NNNN_*.sql`), applied at start,
and records the schema version in the database.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from importlib import resources
from typing import Any, ClassVar, Literal, Protocol

log = logging.getLogger(__name__)

Dialect = Literal["sqlite", "postgres"]
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    """The database is newer than this code or a migration is malformed."""


class IntegrityError(Exception):
    """A write broke a rule the schema enforces: a unique index, a check, the append-only ledger."""


class DatabaseUnavailable(Exception):
    """The database server could not be reached or refused the login; never shows the password."""


class ProcessConflict(Exception):
    """This process may not start beside the ones already running on the database."""


class DatabaseURLError(ValueError):
    """DATABASE_URL names no backend this code has; the message never repeats the URL."""


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


def migrations(dialect: Dialect = "sqlite") -> list[tuple[int, str, str]]:
    """Return (version, name, sql) for every migration file of the dialect, in order."""
    found: list[tuple[int, str, str]] = []
    for entry in resources.files("db").joinpath("migrations", dialect).iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (version, name, _) in enumerate(found, start=1):
        if version != expected:
            raise MigrationError(f"migration {name} is out of sequence (expected {expected:04d})")
    return found


def redacted(url: str) -> str:
    """Return the URL with its password, if any, replaced by `***`: safe to log or show."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{location}"


class Row(Protocol):
    """A result row: by column name or position, and `dict(row)` (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def keys(self) -> Iterable[str]: ...


class Connection(ABC):
    """One open transaction, as the modules below see it."""

    @abstractmethod
    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement and return how many rows it changed."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        """Run one statement once per row of parameters (bulk inserts: copies, tests)."""

    @abstractmethod
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """Run one query (or a statement with RETURNING) and return its first row."""

    @abstractmethod
    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """Run one query and return all its rows."""

    @abstractmethod
    async def serialize(self, *scope: object) -> None:
        """Hold `scope` (e.g. "member", guild, user) until this transaction ends.

        Another transaction serializing the same scope waits until this one commits, then
        reads what it wrote. Transactions take scopes in one fixed order (member, then
        server, then all servers) so two of them never wait for each other.
        """


class Database(ABC):
    """What every part of the bot reads and writes through."""

    dialect: ClassVar[Dialect]
    # How a `SELECT … LIMIT n` that picks rows to claim says "skip rows another transaction
    # is claiming": PostgreSQL's row locks; SQLite has one writer, so nothing to skip.
    skip_locked: ClassVar[str] = ""
    # Whether other processes may write here too: then this one must look for their work
    # and lessons (PostgreSQL), rather than trust that it wrote everything itself (SQLite).
    shared: ClassVar[bool] = False

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """Run the block as one write transaction; roll back if it raises."""

    @abstractmethod
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """Run one read query and return its first row."""

    @abstractmethod
    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """Run one read query and return all its rows."""

    @abstractmethod
    async def version(self) -> int:
        """Return the schema version recorded in the database."""

    @abstractmethod
    async def migrate(self, target_version: int | None = None) -> None:
        """Apply every migration newer than the recorded version, each in its own transaction."""

    @abstractmethod
    async def close(self) -> None:
        """Wait for the statements in flight, then close."""

    def keep_to_this_process(self) -> bool:
        """Refuse other bot processes if this backend serves only one; say whether it does.

        Raises ProcessConflict when another process holds the database already.
        """
        return False

    def _check_version(self, current: int, available: list[tuple[int, str, str]]) -> int:
        latest = available[-1][0] if available else 0
        if current > latest:
            raise MigrationError(
                f"the database is at schema version {current}, newer than this code ({latest})"
            )
        return latest

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
