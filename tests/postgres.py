"""A fresh PostgreSQL database per test, on the server TEST_DATABASE_URL names (.ci/run starts one).

Every test gets a database of its own, migrated and empty. CREATE DATABASE costs 13 ms on a
new server but grows with every database created and dropped (240 ms after a few hundred),
so a database a test is done with is emptied (TRUNCATE, identities restarted: about 10 ms)
and handed to the next test; a test that needs a database without the schema gets a new one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from db import migrations
from db.backends import open_database
from db.postgres import connect_options

SERVER_URL = os.environ.get("TEST_DATABASE_URL", "")
# CI sets it: there a skipped PostgreSQL test is a failure, not a shrug.
REQUIRED = os.environ.get("REQUIRE_POSTGRES") == "1"
SKIP_REASON = "TEST_DATABASE_URL is not set (a PostgreSQL server's URL; .ci/run starts one)"

_names = itertools.count(1)
_template: str | None = None
_clean: list[str] = []  # migrated, emptied databases, ready for the next test


def url_of(name: str) -> str:
    """Return the URL of database `name` on the test server."""
    parts = urlsplit(SERVER_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(**connect_options(SERVER_URL))
    try:
        yield conn
    finally:
        await conn.close()


async def _migrated_template() -> str:
    global _template  # one template per test run, made when the first test needs it
    if _template is None:
        name = f"seedance_template_{os.getpid()}"
        async with _server() as server:
            await server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await server.execute(f"CREATE DATABASE {name}")
        await (await open_database(url_of(name))).close()
        _template = name
    return _template


@contextlib.asynccontextmanager
async def fresh_database(*, migrated: bool = True) -> AsyncIterator[str]:
    """Lend one test an empty, migrated database (or one without any schema); yield its URL."""
    if migrated and _clean:
        name = _clean.pop()
    else:
        template = await _migrated_template() if migrated else "template0"
        name = f"seedance_test_{os.getpid()}_{next(_names)}"
        async with _server() as server:
            await server.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    try:
        yield url_of(name)
    finally:
        if migrated and await _emptied(name):
            _clean.append(name)
        else:
            async with _server() as server:
                await server.execute(f"DROP DATABASE {name} WITH (FORCE)")


async def _emptied(name: str) -> bool:
    """Empty every table but the schema version; False if the test left the schema changed."""
    conn = await asyncpg.connect(**{**connect_options(SERVER_URL), "database": name})
    try:
        if await conn.fetchval("SELECT version FROM schema_version") != _latest():
            return False
        # A process a test killed may still hold a connection; it must not hold a lock.
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        tables = await conn.fetchval(
            "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'schema_version'"
        )
        # replica: the ledger's append-only trigger does not fire for the cleaner.
        await conn.execute(
            f"SET session_replication_role = replica; TRUNCATE {tables} RESTART IDENTITY CASCADE"
        )
        return True
    finally:
        await conn.close()


def _latest() -> int:
    return migrations("postgres")[-1][0]


async def drop_databases() -> None:
    """Drop the run's template and the emptied databases it kept for reuse."""
    async with _server() as server:
        for name in [*_clean, *([_template] if _template else [])]:
            await server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _clean.clear()
