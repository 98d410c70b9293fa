"""Which backend a DATABASE_URL names, and opening it: the one place that knows both.

Kept out of `db/__init__.py`, which both backends import for the interface they implement.
"""

from __future__ import annotations

from db import Database, DatabaseURLError, Dialect
from db.postgres import PostgresDatabase, connect_options
from db.sqlite import SqliteDatabase, sqlite_path


def dialect_of(url: str) -> Dialect:
    """Return which backend a DATABASE_URL selects; raise DatabaseURLError for anything else."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return "sqlite"
    if url.startswith(("postgresql://", "postgres://")):
        connect_options(url)  # raises on a malformed URL, before anything connects
        return "postgres"
    raise DatabaseURLError(
        "DATABASE_URL must look like sqlite:///relative/path.db, sqlite:////absolute/path.db "
        "or postgresql://USER:PASSWORD@HOST:PORT/NAME"
    )


async def open_database(url: str, *, target_version: int | None = None) -> Database:
    """Open the database DATABASE_URL names (creating a SQLite file if needed) and migrate it."""
    if dialect_of(url) == "postgres":
        return await PostgresDatabase.open(url, target_version=target_version)
    return await SqliteDatabase.open(sqlite_path(url), target_version=target_version)
