"""What every process on one database shares: who is running, IDENTIFY slots, provider turns.

Each is a few rows and one short transaction, serialized so that processes starting at
the same moment take turns instead of racing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from db import Connection, Database, ProcessConflict, utcnow


@dataclass(frozen=True)
class Process:
    """A bot process on this database, as it registered itself."""

    id: str
    host: str
    """Where `pid` means this process: the hostname, then its boot and pid namespace."""
    pid: int
    shard_count: int | None
    shard_ids: tuple[int, ...] | None
    """None: every shard of shard_count; (): no gateway (SHARD_IDS=none)."""

    def describe(self) -> str:
        """Say which process this is, for a refusal an operator reads."""
        if self.shard_ids is None:
            shards = "every shard"
        else:
            shards = "shards " + ",".join(map(str, self.shard_ids))
        count = "Discord's count" if self.shard_count is None else f"SHARD_COUNT={self.shard_count}"
        host = self.host.partition("#")[0]  # the machine's name, without its pid namespace
        return f"pid {self.pid} on {host} ({shards} of {count})"


def conflict(mine: Process, other: Process) -> str | None:
    """Say why `mine` may not run beside `other`, or None when their shards do not overlap."""
    if mine.shard_ids == () or other.shard_ids == ():
        return None  # a process without a gateway overlaps nobody
    if mine.shard_ids is None or other.shard_ids is None:
        return f"both would connect every shard: a live process, {other.describe()}"
    if mine.shard_count != other.shard_count:
        return f"SHARD_COUNT differs from a live process's, {other.describe()}"
    shared = sorted(set(mine.shard_ids) & set(other.shard_ids))
    if shared:
        listed = ",".join(map(str, shared))
        return f"shards {listed} are already connected by a live process, {other.describe()}"
    return None


async def register_process(db: Database, mine: Process, *, now: float, lease: float) -> None:
    """Record this process beside the live ones; raise ProcessConflict when shards overlap.

    A process whose heartbeat is older than `lease` is dead (killed, or its machine lost)
    and no longer counts.
    """
    async with db.transaction() as conn:
        await conn.serialize("processes")
        await conn.execute("DELETE FROM processes WHERE heartbeat_at < ?", (now - lease,))
        for row in await conn.fetchall("SELECT * FROM processes WHERE id <> ?", (mine.id,)):
            ids = json.loads(row["shard_ids"])
            other = Process(
                row["id"],
                row["host"],
                row["pid"],
                row["shard_count"],
                None if ids is None else tuple(ids),
            )
            reason = conflict(mine, other)
            if reason is not None:
                raise ProcessConflict(reason)
        await conn.execute(
            "INSERT INTO processes (id, host, pid, shard_count, shard_ids, started_at, "
            "heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "heartbeat_at = excluded.heartbeat_at",
            (
                mine.id,
                mine.host,
                mine.pid,
                mine.shard_count,
                json.dumps(None if mine.shard_ids is None else list(mine.shard_ids)),
                utcnow(),
                now,
            ),
        )


async def processes(db: Database) -> list[Process]:
    """Return every process recorded on the database, live or not yet given up for dead."""
    found = []
    for row in await db.fetchall("SELECT * FROM processes ORDER BY started_at"):
        ids = json.loads(row["shard_ids"])
        found.append(
            Process(
                row["id"],
                row["host"],
                row["pid"],
                row["shard_count"],
                None if ids is None else tuple(ids),
            )
        )
    return found


async def forget_process(db: Database, process_id: str) -> None:
    """Drop one process's record: it is known to be dead."""
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM processes WHERE id = ?", (process_id,))


async def heartbeat(db: Database, process_id: str, *, now: float) -> bool:
    """Say this process is alive; False when others had already given it up for dead."""
    async with db.transaction() as conn:
        changed = await conn.execute(
            "UPDATE processes SET heartbeat_at = ? WHERE id = ?", (now, process_id)
        )
    return changed == 1


async def unregister_process(db: Database, process_id: str) -> None:
    """Remove this process from the live ones, as it stops."""
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM processes WHERE id = ?", (process_id,))


async def forget_other_processes(db: Database, process_id: str) -> None:
    """Drop every other process's record: for a process that knows it is the only one."""
    async with db.transaction() as conn:
        await conn.execute("DELETE FROM processes WHERE id <> ?", (process_id,))


async def take_identify_slot(db: Database, *, now: float, gap: float) -> float:
    """Return when this process may IDENTIFY, and hold the slot `gap` seconds for it.

    Discord accepts one IDENTIFY per 5 s for a bot (per concurrency bucket), across all of
    its processes; taking the slots from one row makes processes starting together queue.
    """
    return await _take_slot(db, "identify_next_at", now=now, gap=gap)


class ProviderPace:
    """PROVIDER_MAX_RPS for every process on this database together (provider.SharedPace).

    The turns come from one row, like the IDENTIFY slots: each request moves the row's
    "next turn" mark on by its gap. A 429 moves the mark past its Retry-After, so every
    process holds off; turns handed out before it still go, as they would within one process.
    """

    KEY = "provider_next_at"

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def take(self, gap: float) -> float:
        """Take the next provider turn; return the wall-clock time it starts."""
        return await _take_slot(self._db, self.KEY, now=self._clock(), gap=gap)

    async def hold_off(self, until: float) -> None:
        """Let no process take a provider turn before `until`."""
        async with self._db.transaction() as conn:
            await conn.serialize(self.KEY)
            row = await conn.fetchone("SELECT value FROM bot_state WHERE key = ?", (self.KEY,))
            if row is None or float(row["value"]) < until:
                await _write_slot(conn, self.KEY, until)


async def _take_slot(db: Database, key: str, *, now: float, gap: float) -> float:
    async with db.transaction() as conn:
        await conn.serialize(key)
        row = await conn.fetchone("SELECT value FROM bot_state WHERE key = ?", (key,))
        slot = max(now, float(row["value"])) if row is not None else now
        await _write_slot(conn, key, slot + gap)
    return slot


async def _write_slot(conn: Connection, key: str, value: float) -> None:
    await conn.execute(
        "INSERT INTO bot_state (key, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
        "updated_at = excluded.updated_at",
        (key, repr(value), utcnow()),
    )
