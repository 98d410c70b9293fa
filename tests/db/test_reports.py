"""The ledger export's reads: one scope, pinned to the rows present when the export began."""

from __future__ import annotations

import io

from db import Database, credits, reports

GUILD, USER, OTHER, ADMIN = 10, 20, 21, 30


async def test_rows_written_during_an_export_stay_out_of_it(db: Database) -> None:
    await credits.balance(db, GUILD, USER, 260)
    await credits.grant(db, GUILD, USER, 5, actor_id=ADMIN, starting_credits=260)
    extent = await reports.ledger_extent(db, reports.LedgerScope(GUILD))
    assert extent.rows == 2

    # A grant lands between the passes of one export (plain, then gzip, then by month).
    await credits.grant(db, GUILD, USER, 7, actor_id=ADMIN, starting_credits=260)
    await credits.balance(db, GUILD, OTHER, 260)

    out = io.StringIO()
    assert await reports.write_ledger_csv(db, extent.scope, out) == 2
    assert [line.split(",")[3] for line in out.getvalue().splitlines()[1:]] == ["260", "5"]
    fresh = await reports.ledger_extent(db, reports.LedgerScope(GUILD))
    assert fresh.rows == 4


async def test_an_empty_scope_stays_empty_while_rows_arrive(db: Database) -> None:
    extent = await reports.ledger_extent(db, reports.LedgerScope(GUILD, USER))
    assert (extent.rows, extent.first_at, extent.last_at) == (0, None, None)
    await credits.balance(db, GUILD, USER, 260)
    out = io.StringIO()
    assert await reports.write_ledger_csv(db, extent.scope, out) == 0
    assert out.getvalue() == ",".join(reports.LEDGER_COLUMNS) + "\n"
