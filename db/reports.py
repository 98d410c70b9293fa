"""What admins read back: a server's usage over a period and the ledger as CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

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


async def ledger_csv(db: Database, guild_id: int, user_id: int | None = None) -> bytes:
    """Return the server's ledger (or one member's) as CSV, oldest first, with a header row."""
    rows = await db.fetchall(
        f"SELECT {', '.join(LEDGER_COLUMNS)} FROM ledger "  # noqa: S608 - constant column names
        "WHERE guild_id = ? AND (CAST(? AS BIGINT) IS NULL OR user_id = ?) ORDER BY id",
        (guild_id, user_id, user_id),
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LEDGER_COLUMNS)
    for row in rows:
        writer.writerow(
            ["" if row[column] is None else str(row[column]) for column in LEDGER_COLUMNS]
        )
    return out.getvalue().encode()
