"""The schema: migrations from any earlier version, pragmas, and what the schema refuses."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from db import IntegrityError, MigrationError, migrations
from db import tasks as task_store
from db.sqlite import SqliteDatabase


async def test_a_new_file_gets_every_migration_and_the_pragmas(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "nested" / "bot.db")
    try:
        assert await db.version() == migrations()[-1][0]
        journal = await db.fetchone("PRAGMA journal_mode")
        foreign_keys = await db.fetchone("PRAGMA foreign_keys")
        busy = await db.fetchone("PRAGMA busy_timeout")
        assert journal is not None and journal[0] == "wal"
        assert foreign_keys is not None and foreign_keys[0] == 1
        assert busy is not None and busy[0] >= 1000
        strict = await db.fetchall("SELECT name, strict FROM pragma_table_list WHERE schema='main'")
        assert {
            row["name"]: row["strict"]
            for row in strict
            if row["name"] in ("members", "tasks", "ledger", "bot_state")
        } == {"members": 1, "tasks": 1, "ledger": 1, "bot_state": 1}
    finally:
        await db.close()


@pytest.mark.parametrize("start", range(len(migrations())))
async def test_every_earlier_version_migrates_to_the_latest(tmp_path: Path, start: int) -> None:
    path = tmp_path / "bot.db"
    old = await SqliteDatabase.open(path, target_version=start)
    assert await old.version() == start
    if start >= 1:
        # Data written under the old schema survives the upgrade.
        async with old.transaction() as conn:
            await conn.execute(
                "INSERT INTO members (guild_id, user_id, balance, created_at) VALUES (1, 2, 5, 'x')"
            )
            await conn.execute(
                "INSERT INTO ledger (guild_id, user_id, delta, balance_after, reason, created_at) "
                "VALUES (1, 2, 5, 5, 'welcome', 'x')"
            )
    await old.close()

    db = await SqliteDatabase.open(path)
    try:
        assert await db.version() == migrations()[-1][0]
        if start >= 1:
            row = await db.fetchone(
                "SELECT balance FROM members WHERE guild_id = 1 AND user_id = 2"
            )
            assert row is not None and row["balance"] == 5
            ledger = await db.fetchall("SELECT delta, reason FROM ledger")
            assert [(r["delta"], r["reason"]) for r in ledger] == [(5, "welcome")]
            # The rebuilt ledger is still append-only.
            with pytest.raises(IntegrityError, match="append-only"):
                async with db.transaction() as conn:
                    await conn.execute("DELETE FROM ledger")
        await db.set_state("k", "v")
        assert await db.get_state("k") == "v"
    finally:
        await db.close()


async def test_opening_twice_applies_nothing_again(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await (await SqliteDatabase.open(path)).close()
    db = await SqliteDatabase.open(path)
    try:
        assert await db.version() == migrations()[-1][0]
    finally:
        await db.close()


async def test_a_database_from_newer_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(MigrationError, match="newer than this code"):
        await SqliteDatabase.open(path)


async def test_the_ledger_cannot_be_rewritten(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "bot.db")
    try:
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO members (guild_id, user_id, balance, created_at) VALUES (1, 2, 5, 'x')"
            )
            await conn.execute(
                "INSERT INTO ledger (guild_id, user_id, delta, balance_after, reason, created_at) "
                "VALUES (1, 2, 5, 5, 'welcome', 'x')"
            )
        for statement in ("UPDATE ledger SET delta = 500", "DELETE FROM ledger"):
            with pytest.raises(IntegrityError, match="append-only"):
                async with db.transaction() as conn:
                    await conn.execute(statement)
        row = await db.fetchone("SELECT SUM(delta) FROM ledger")
        assert row is not None and row[0] == 5
    finally:
        await db.close()


async def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "bot.db")
    try:
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO members (guild_id, user_id, balance, created_at) "
                    "VALUES (1, 2, 5, 'x')"
                )
                raise RuntimeError("boom")
        assert await db.fetchone("SELECT * FROM members") is None
    finally:
        await db.close()


async def test_a_transaction_cancelled_at_its_start_leaves_the_connection_usable(
    tmp_path: Path,
) -> None:
    import asyncio

    db = await SqliteDatabase.open(tmp_path / "bot.db")
    try:

        async def write() -> None:
            async with db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO bot_state (key, value, updated_at) VALUES ('a', 'b', 'c')"
                )

        for _ in range(20):
            job = asyncio.create_task(write())
            await asyncio.sleep(0)  # let it reach BEGIN
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
        await db.set_state("after", "works")
        assert await db.get_state("after") == "works"
    finally:
        await db.close()


async def test_renders_finished_before_the_bounds_were_kept_teach_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bot.db"
    old = await SqliteDatabase.open(path, target_version=6)
    try:
        async with old.transaction() as conn:
            await conn.execute(
                "INSERT INTO members (guild_id, user_id, balance, created_at) VALUES (1, 3, 0, 'x')"
            )
            await conn.execute(
                "INSERT INTO tasks (id, guild_id, channel_id, user_id, prompt, aspect_ratio, "
                "duration, sound, image_urls, cost, upload_limit, provider_task_id, state, "
                "result_urls, created_at, submitted_at, finished_at, updated_at) VALUES "
                "('t1', 1, 2, 3, 'p', '16:9', 5, 0, '[]', 65, 1, 'sd15p_1', 'done', '[]', "
                "'2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', "
                "'2026-01-01T00:00:42+00:00', '2026-01-01T00:00:42+00:00')"
            )
    finally:
        await old.close()
    db = await SqliteDatabase.open(path)
    try:
        row = await db.fetchone("SELECT running_seconds, ready_seconds FROM tasks WHERE id = 't1'")
        # Their polls were up to a minute apart: too loose to say when the render ended.
        assert row is not None
        assert (row["running_seconds"], row["ready_seconds"]) == (None, None)
        assert await task_store.recent_renders(db, per_preset=20) == []
    finally:
        await db.close()
