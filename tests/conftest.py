"""Fixtures shared by every test: a real SQLite file, the provider simulator on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from db import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database in a temporary folder."""
    database = await Database.open(tmp_path / "bot.db")
    try:
        yield database
    finally:
        await database.close()
