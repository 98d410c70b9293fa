"""Gateway connections shared by every process on this database: the IDENTIFY slots."""

from __future__ import annotations

from db import Database, utcnow


async def take_identify_slot(db: Database, *, now: float, gap: float) -> float:
    """Return when this process may IDENTIFY, and hold the slot `gap` seconds for it.

    Discord accepts one IDENTIFY per 5 s for a bot (per concurrency bucket), across all of
    its processes; taking the slots from one row makes processes starting together queue.
    """
    async with db.transaction() as conn:
        await conn.serialize("identify")
        row = await conn.fetchone("SELECT value FROM bot_state WHERE key = 'identify_next_at'")
        slot = max(now, float(row["value"])) if row is not None else now
        await conn.execute(
            "INSERT INTO bot_state (key, value, updated_at) VALUES ('identify_next_at', ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (repr(slot + gap), utcnow()),
        )
    return slot
