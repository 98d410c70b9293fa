"""Members' credits and the append-only ledger that explains every balance.

Every change of a balance goes through `_apply`, which updates the member row and appends
the ledger row in the caller's transaction, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from db import Connection, Database, Row, iso, now, utcnow
from db.budgets import Allowance, allowance_in, period_start


class LedgerReason(StrEnum):
    """Why a balance changed; stored in the ledger's `reason` column."""

    WELCOME = "welcome"
    CHARGE = "charge"
    REFUND = "refund"
    GRANT = "grant"
    REFILL = "refill"


class NotEnoughCredits(Exception):
    """The member's balance cannot cover the change."""

    def __init__(self, balance: int, needed: int) -> None:
        super().__init__(f"balance {balance} cannot cover {needed}")
        self.balance = balance
        self.needed = needed


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ledger."""

    id: int
    guild_id: int
    user_id: int
    delta: int
    balance_after: int
    reason: str
    note: str | None
    task_id: str | None
    actor_id: int | None
    created_at: str

    @classmethod
    def from_row(cls, row: Row) -> LedgerEntry:
        """Build an entry from a `SELECT * FROM ledger` row."""
        return cls(**dict(row))


async def ensure_member(
    conn: Connection,
    guild_id: int,
    user_id: int,
    default_credits: int,
    roles: Collection[int],
) -> int:
    """Give a newcomer their allowance, refill a member whose period turned; return the balance.

    Both are ledger rows like any other. A refill raises the balance back to the allowance
    when it is lower; credits above it (grants) stay.
    """
    allowance = await allowance_in(conn, guild_id, roles, default_credits)
    return await _settle(conn, guild_id, user_id, allowance)


async def _settle(conn: Connection, guild_id: int, user_id: int, allowance: Allowance) -> int:
    moment = now()
    # A refill reads the balance, then writes it: a second one must wait and read after it.
    await conn.serialize("member", guild_id, user_id)
    inserted = await conn.execute(
        "INSERT INTO members (guild_id, user_id, balance, created_at, refilled_at) "
        "VALUES (?, ?, 0, ?, ?) ON CONFLICT DO NOTHING",
        (guild_id, user_id, iso(moment), iso(moment)),
    )
    if inserted == 1:
        return await _apply(
            conn, guild_id, user_id, allowance.amount, LedgerReason.WELCOME, note="starting credits"
        )
    row = await conn.fetchone(
        "SELECT balance, refilled_at FROM members WHERE guild_id = ? AND user_id = ?",
        (guild_id, user_id),
    )
    assert row is not None
    balance = int(row["balance"])
    start = period_start(allowance.period, moment)
    if start is None or (row["refilled_at"] or "") >= iso(start):
        return balance  # no refills, or this period's was given already
    await conn.execute(
        "UPDATE members SET refilled_at = ? WHERE guild_id = ? AND user_id = ?",
        (iso(moment), guild_id, user_id),
    )
    if balance >= allowance.amount:
        return balance
    return await _apply(
        conn,
        guild_id,
        user_id,
        allowance.amount - balance,
        LedgerReason.REFILL,
        note=f"{allowance.period} allowance of {allowance.amount}",
    )


async def balance_in(conn: Connection, guild_id: int, user_id: int) -> int:
    """Return the member's balance inside an open transaction (0 for a stranger)."""
    row = await conn.fetchone(
        "SELECT balance FROM members WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
    )
    return 0 if row is None else int(row["balance"])


async def _apply(
    conn: Connection,
    guild_id: int,
    user_id: int,
    delta: int,
    reason: LedgerReason,
    *,
    task_id: str | None = None,
    actor_id: int | None = None,
    note: str | None = None,
) -> int:
    """Change the balance by `delta` and append the ledger row; return the new balance."""
    row = await conn.fetchone(
        "UPDATE members SET balance = balance + ? "
        "WHERE guild_id = ? AND user_id = ? AND balance + ? >= 0 RETURNING balance",
        (delta, guild_id, user_id, delta),
    )
    if row is None:
        raise NotEnoughCredits(await balance_in(conn, guild_id, user_id), -delta)
    balance_after = int(row["balance"])
    await conn.execute(
        "INSERT INTO ledger (guild_id, user_id, delta, balance_after, reason, note, task_id, "
        "actor_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (guild_id, user_id, delta, balance_after, reason.value, note, task_id, actor_id, utcnow()),
    )
    return balance_after


async def charge_task(
    conn: Connection, guild_id: int, user_id: int, task_id: str, cost: int
) -> int:
    """Take a task's cost from the member; raise NotEnoughCredits when it does not fit."""
    return await _apply(conn, guild_id, user_id, -cost, LedgerReason.CHARGE, task_id=task_id)


async def refund_task(conn: Connection, task_id: str, note: str) -> int | None:
    """Give back what the task was charged, once; return the new balance, or None if done before."""
    row = await conn.fetchone(
        "SELECT guild_id, user_id, -delta AS amount FROM ledger "
        "WHERE task_id = ? AND reason = 'charge' AND NOT EXISTS "
        "(SELECT 1 FROM ledger WHERE task_id = ? AND reason = 'refund')",
        (task_id, task_id),
    )
    if row is None:
        return None
    return await _apply(
        conn,
        int(row["guild_id"]),
        int(row["user_id"]),
        int(row["amount"]),
        LedgerReason.REFUND,
        task_id=task_id,
        note=note,
    )


async def grant(
    db: Database,
    guild_id: int,
    user_id: int,
    amount: int,
    *,
    actor_id: int,
    starting_credits: int,
    note: str | None = None,
    roles: Collection[int] = (),
) -> int:
    """Add (or, when negative, take) credits on an admin's word; return the new balance."""
    async with db.transaction() as conn:
        await ensure_member(conn, guild_id, user_id, starting_credits, roles)
        return await _apply(
            conn, guild_id, user_id, amount, LedgerReason.GRANT, actor_id=actor_id, note=note
        )


async def balance(
    db: Database,
    guild_id: int,
    user_id: int,
    starting_credits: int,
    roles: Collection[int] = (),
) -> int:
    """Return the member's balance, giving a newcomer their starting credits (or a refill)."""
    async with db.transaction() as conn:
        return await ensure_member(conn, guild_id, user_id, starting_credits, roles)


async def standing(
    db: Database,
    guild_id: int,
    user_id: int,
    starting_credits: int,
    roles: Collection[int] = (),
) -> tuple[int, Allowance]:
    """Return the member's balance, as `balance` does, and the allowance it refills to."""
    async with db.transaction() as conn:
        allowance = await allowance_in(conn, guild_id, roles, starting_credits)
        return await _settle(conn, guild_id, user_id, allowance), allowance


async def ledger_for(db: Database, guild_id: int, user_id: int) -> list[LedgerEntry]:
    """Return the member's ledger, oldest first."""
    rows = await db.fetchall(
        "SELECT * FROM ledger WHERE guild_id = ? AND user_id = ? ORDER BY id", (guild_id, user_id)
    )
    return [LedgerEntry.from_row(row) for row in rows]


async def unexplained_balances(db: Database) -> list[tuple[int, int, int, int]]:
    """Return (guild, user, balance, ledger sum) for every member whose ledger disagrees."""
    rows = await db.fetchall(
        "SELECT m.guild_id, m.user_id, m.balance, COALESCE(SUM(l.delta), 0) AS total "
        "FROM members m LEFT JOIN ledger l ON l.guild_id = m.guild_id AND l.user_id = m.user_id "
        "GROUP BY m.guild_id, m.user_id HAVING m.balance != COALESCE(SUM(l.delta), 0)"
    )
    return [(r["guild_id"], r["user_id"], r["balance"], int(r["total"])) for r in rows]


async def set_notify(
    db: Database,
    guild_id: int,
    user_id: int,
    enabled: bool,
    starting_credits: int,
    roles: Collection[int],
) -> None:
    """Remember whether the member wants a DM when a clip of theirs is ready."""
    async with db.transaction() as conn:
        await ensure_member(conn, guild_id, user_id, starting_credits, roles)
        await conn.execute(
            "UPDATE members SET notify_dm = ? WHERE guild_id = ? AND user_id = ?",
            (int(enabled), guild_id, user_id),
        )


async def wants_notify(db: Database, guild_id: int, user_id: int) -> bool:
    """Whether the member asked for a DM when a clip of theirs is ready."""
    row = await db.fetchone(
        "SELECT notify_dm FROM members WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
    )
    return row is not None and bool(row["notify_dm"])
