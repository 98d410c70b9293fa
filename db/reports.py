"""What admins read back: a server's usage over a period and the ledger as CSV."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TextIO

from db import Database, iso
from db.states import SPENDING, sql_list

LEDGER_COLUMNS = (
    "created_at",
    "guild_id",
    "user_id",
    "delta",
    "balance_after",
    "reason",
    "task_id",
    "actor_id",
)
# Rows read per query: the export holds one page at a time, never the whole ledger.
LEDGER_PAGE_ROWS = 2000
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Usage:
    """A server's spending since a moment."""

    charged: int
    refunded: int
    tasks_by_outcome: dict[tuple[int, bool, str], int]
    top_members: list[tuple[int, int]]

    @property
    def spent(self) -> int:
        """Credits charged net of refunds."""
        return self.charged - self.refunded


async def usage(db: Database, guild_id: int, since: datetime) -> Usage:
    """Sum up the server's ledger and tasks since `since`."""
    start = iso(since)
    # By the tasks started in the period, as the cap counts them: a refund that lands in
    # the next period still belongs to the period its task was charged in.
    states = sql_list(SPENDING)
    totals = await db.fetchone(
        "SELECT COALESCE(SUM(cost), 0) AS charged, "  # noqa: S608 - constants only
        f"COALESCE(SUM(CASE WHEN state NOT IN ({states}) THEN cost END), 0) AS refunded "
        "FROM tasks WHERE guild_id = ? AND created_at >= ?",
        (guild_id, start),
    )
    assert totals is not None
    outcomes = await db.fetchall(
        "SELECT duration, sound, state, COUNT(*) AS n FROM tasks "
        "WHERE guild_id = ? AND created_at >= ? GROUP BY duration, sound, state",
        (guild_id, start),
    )
    top = await db.fetchall(
        "SELECT user_id, SUM(cost) AS spent FROM tasks "  # noqa: S608 - constants only
        f"WHERE guild_id = ? AND created_at >= ? AND state IN ({states}) "
        "GROUP BY user_id ORDER BY spent DESC, user_id LIMIT 5",
        (guild_id, start),
    )
    return Usage(
        charged=int(totals["charged"]),
        refunded=int(totals["refunded"]),
        tasks_by_outcome={
            (int(row["duration"]), bool(row["sound"]), str(row["state"])): int(row["n"])
            for row in outcomes
        },
        top_members=[(int(row["user_id"]), int(row["spent"])) for row in top],
    )


@dataclass(frozen=True)
class LedgerScope:
    """Which ledger rows an export covers: a server, maybe one member, maybe a time range."""

    guild_id: int
    user_id: int | None = None
    since: datetime | None = None  # first moment included
    until: datetime | None = None  # first moment no longer included
    # Rows appended after the export began are left out, so every pass sees the same rows.
    last_id: int | None = None

    def between(self, since: datetime, until: datetime) -> LedgerScope:
        """Narrow the scope to [since, until), within the range it already has."""
        return replace(
            self,
            since=since if self.since is None else max(since, self.since),
            until=until if self.until is None else min(until, self.until),
        )


@dataclass(frozen=True)
class LedgerExtent:
    """A scope pinned to the rows present now, and the times of its first and last row."""

    scope: LedgerScope
    rows: int
    first_at: datetime | None
    last_at: datetime | None


def _where(scope: LedgerScope) -> tuple[str, list[Any]]:
    # Conditions are left out rather than written `? IS NULL OR ...`: PostgreSQL cannot
    # type a parameter that is only ever compared with NULL.
    clauses: list[str] = ["guild_id = ?"]
    params: list[Any] = [scope.guild_id]
    for clause, value in (
        ("user_id = ?", scope.user_id),
        ("created_at >= ?", None if scope.since is None else iso(scope.since)),
        ("created_at < ?", None if scope.until is None else iso(scope.until)),
        ("id <= ?", scope.last_id),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return " AND ".join(clauses), params


def _moment(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


async def ledger_extent(db: Database, scope: LedgerScope) -> LedgerExtent:
    """Pin `scope` to the ledger rows it holds now and say how many there are and when."""
    where, params = _where(scope)
    row = await db.fetchone(
        "SELECT COUNT(*) AS n, MAX(id) AS last_id, MIN(created_at) AS first_at, "  # noqa: S608 - constant clauses
        f"MAX(created_at) AS last_at FROM ledger WHERE {where}",
        params,
    )
    assert row is not None
    # An empty scope is pinned to id 0 so that rows written during the export stay out.
    pinned = replace(scope, last_id=int(row["last_id"] or 0))
    return LedgerExtent(pinned, int(row["n"]), _moment(row["first_at"]), _moment(row["last_at"]))


async def ledger_pages(db: Database, scope: LedgerScope) -> AsyncIterator[list[list[str]]]:
    """Yield the scope's ledger rows as CSV cells, oldest first, a page at a time."""
    where, params = _where(scope)
    after = 0
    while True:
        # Keyset paging: each page is one short query, so the export never holds the
        # database (or its lock) for long, and no page is read twice.
        rows = await db.fetchall(
            f"SELECT id, {', '.join(LEDGER_COLUMNS)} FROM ledger "  # noqa: S608 - constant clauses
            f"WHERE {where} AND id > ? ORDER BY id LIMIT ?",
            [*params, after, LEDGER_PAGE_ROWS],
        )
        if not rows:
            return
        after = int(rows[-1]["id"])
        yield [[csv_cell(row[column]) for column in LEDGER_COLUMNS] for row in rows]
        if len(rows) < LEDGER_PAGE_ROWS:
            return


def csv_cell(value: Any) -> str:
    """Return a value as CSV text a spreadsheet shows as text, never runs as a formula."""
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)  # a signed number is a number, not a formula
    if isinstance(value, datetime):
        return iso(value)
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


async def write_ledger_csv(db: Database, scope: LedgerScope, out: TextIO) -> int:
    """Write the header and the scope's ledger rows to `out` as CSV; return the row count."""
    writer = csv.writer(out, lineterminator="\n")
    await asyncio.to_thread(writer.writerow, LEDGER_COLUMNS)
    count = 0
    async for page in ledger_pages(db, scope):
        # Off the event loop: a compressing `out` spends real time in each write.
        await asyncio.to_thread(writer.writerows, page)
        count += len(page)
    return count


async def ledger_csv(db: Database, guild_id: int, user_id: int | None = None) -> bytes:
    """Return a small ledger (the server's, or one member's) as CSV bytes, oldest first."""
    out = io.StringIO()
    await write_ledger_csv(db, LedgerScope(guild_id, user_id), out)
    return out.getvalue().encode()
