"""The PostgreSQL backend's own ground: its migrations, its URL, and its password kept secret."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit, urlunsplit

import pytest

from core.settings import Settings
from db import (
    Database,
    DatabaseUnavailable,
    IntegrityError,
    MigrationError,
    migrations,
)
from db.backends import dialect_of, open_database
from db.postgres import connect_options, numbered
from tests import postgres

SECRET = "s3cr3t-pa55"


async def test_an_empty_database_gets_every_migration_and_records_the_version(
    postgres_server: str,
) -> None:
    async with postgres.fresh_database(migrated=False) as url:
        # Two processes starting at once on an empty database: one migrates, the other waits.
        first, second = await asyncio.gather(open_database(url), open_database(url))
        try:
            latest = migrations("postgres")[-1][0]
            assert await first.version() == latest and await second.version() == latest
            row = await first.fetchone("SELECT COUNT(*) FROM schema_version")
            assert row is not None and row[0] == 1
            await first.set_state("k", "v")
            assert await second.get_state("k") == "v"
        finally:
            await first.close()
            await second.close()


async def test_a_database_newer_than_the_code_is_refused(postgres_server: str) -> None:
    async with postgres.fresh_database() as url:
        db = await open_database(url)
        async with db.transaction() as conn:
            await conn.execute("UPDATE schema_version SET version = 99")
        await db.close()
        with pytest.raises(MigrationError, match="newer than this code"):
            await open_database(url)


async def test_the_ledger_refuses_changes_on_both_backends(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO members (guild_id, user_id, balance, created_at) VALUES (1, 2, 5, 'x')"
        )
        await conn.execute(
            "INSERT INTO ledger (guild_id, user_id, delta, balance_after, reason, created_at) "
            "VALUES (1, 2, 5, 5, 'welcome', 'x')"
        )
    for statement in ("UPDATE ledger SET delta = 50", "DELETE FROM ledger"):
        with pytest.raises(IntegrityError, match="append-only"):
            async with db.transaction() as conn:
                await conn.execute(statement)
    row = await db.fetchone("SELECT SUM(delta) FROM ledger")
    assert row is not None and row[0] == 5


def test_placeholders_are_numbered_outside_string_literals() -> None:
    assert numbered("SELECT '?', ? FROM t WHERE a = ? AND b LIKE 'x''?'") == (
        "SELECT '?', $1 FROM t WHERE a = $2 AND b LIKE 'x''?'"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:p@host:port/db", "port that is not a number"),
        ("postgresql://u:p@host:5432", "must name one database"),
        ("postgres://u:p@host/db?application_name=x", "no query parameter but sslmode"),
    ],
)
def test_a_malformed_postgres_url_is_refused_without_repeating_it(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        dialect_of(url)
    assert "u:p" not in str(refused.value)


def test_a_postgres_url_reads_as_its_parts_and_shows_without_its_password() -> None:
    url = f"postgres://bot:{SECRET.replace('-', '%2D')}@db.example:6543/seedance?sslmode=require"
    assert connect_options(url) == {
        "host": "db.example",
        "port": 6543,
        "user": "bot",
        "password": SECRET,
        "database": "seedance",
        "ssl": "require",
    }
    settings = Settings.from_env(
        {"DISCORD_TOKEN": "t", "SEEDANCE_API_KEY": "k", "DATABASE_URL": url}
    )
    assert settings.database_url == url
    assert "bot:***@db.example:6543/seedance" in repr(settings)
    assert SECRET not in repr(settings) + str(settings)


async def test_a_refused_login_names_the_server_but_never_the_password(
    postgres_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    parts = urlsplit(postgres_server)
    wrong = urlunsplit(
        parts._replace(netloc=f"{parts.username}:{SECRET}@{parts.hostname}:{parts.port}")
    )
    with pytest.raises(DatabaseUnavailable) as refused:
        await open_database(wrong)
    text = str(refused.value)
    assert "password authentication failed" in text and f"{parts.hostname}:{parts.port}" in text
    assert SECRET not in text and SECRET not in caplog.text
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


async def test_an_unreachable_server_is_one_clear_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(DatabaseUnavailable, match="cannot open") as refused:
        await open_database(f"postgresql://bot:{SECRET}@127.0.0.1:{closed_port}/seedance")
    assert SECRET not in str(refused.value)
