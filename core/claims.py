"""This process's hold on its work: its place among the processes, and its leases on tasks.

Work is claimed, never assumed: the starter holds a lease on each task it is submitting,
the poller on each task it polls or delivers. One loop renews them all (and this process's
heartbeat) every third of WORK_LEASE_SECONDS; a process that stops renewing, because it was
killed or lost the database, loses its tasks to the others when its leases run out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import secrets
import socket
import time
from collections.abc import Callable

from core.settings import Settings
from db import Database, coordination
from db import tasks as task_store
from db.coordination import Process

log = logging.getLogger(__name__)


class Claims:
    """Registers this process, renews its leases while it works, hands them back at the end."""

    def __init__(self, db: Database, settings: Settings, clock: Callable[[], float]) -> None:
        self.db = db
        # Leases are on the poller's clock, the one next_poll_at is written on.
        self.clock = clock
        self.lease_seconds = settings.work_lease_seconds
        host = _where_pids_are_seen()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        shard_ids = settings.shard_ids if settings.gateway else ()
        self.process = Process(self.owner, host, os.getpid(), settings.shard_count, shard_ids)
        # Whether the database serves this process alone (SQLite).
        self.alone = False
        self._held: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None
        # A signal and the bot's own exit may both stop it; the second waits for the first.
        self._stopping = asyncio.Lock()

    @property
    def started(self) -> bool:
        """Whether this process took its place (and has claims to hand back)."""
        return self._renewer is not None

    @property
    def held(self) -> frozenset[str]:
        """The tasks this process is working on right now."""
        return frozenset(self._held)

    def lease_until(self) -> float:
        """Return when a lease taken now runs out, unless renewed."""
        return self.clock() + self.lease_seconds

    def hold(self, task_id: str) -> None:
        """Keep renewing the lease on a task this process just claimed."""
        self._held.add(task_id)

    def drop(self, task_id: str) -> None:
        """Stop renewing the lease on a task (its step wrote the hand-back, or failed)."""
        self._held.discard(task_id)

    async def start(self) -> None:
        """Take this process's place; raise ProcessConflict where it may not run."""
        self.alone = self.db.keep_to_this_process()
        if self.alone:
            # No other process can be running: whatever an earlier run held (it was killed,
            # say) is free now, without waiting for its heartbeat and leases to run out.
            await coordination.forget_other_processes(self.db, self.owner)
            freed = await task_store.release_other_leases(self.db, owner=self.owner)
            if freed:
                log.info("Took back %d tasks the last run was working on", freed)
        else:
            await self._forget_the_dead_here()
        await coordination.register_process(
            self.db, self.process, now=time.time(), lease=self.lease_seconds
        )
        self._renewer = asyncio.create_task(self._renew_forever(), name="video-claims")

    async def _forget_the_dead_here(self) -> None:
        """Free at once what processes of this machine that no longer exist held.

        A bot killed and started again on the same machine need not wait WORK_LEASE_SECONDS
        for its own old shards and tasks; processes on other machines are judged by their
        heartbeats alone.
        """
        for process in await coordination.processes(self.db):
            if process.host != self.process.host or _pid_alive(process.pid):
                continue
            freed = await task_store.release_leases(self.db, owner=process.id)
            await coordination.forget_process(self.db, process.id)
            log.info("Process %s is gone; took back its %d tasks", process.describe(), freed)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.renew()
            except Exception:
                # The next round tries again; leases last three rounds.
                log.warning("Could not renew this process's claims", exc_info=True)

    async def renew(self) -> None:
        """Renew the heartbeat and the leases of the tasks in hand."""
        if not await coordination.heartbeat(self.db, self.owner, now=time.time()):
            log.warning("This process was taken for dead (its heartbeat lapsed); registering again")
            await coordination.register_process(
                self.db, self.process, now=time.time(), lease=self.lease_seconds
            )
        held = self.held
        if held:
            kept = await task_store.renew_leases(
                self.db, owner=self.owner, task_ids=held, lease_until=self.lease_until()
            )
            if kept < len(held):
                # Their next write will change nothing: another process has them now.
                log.warning("Lost the claim on %d tasks to another process", len(held) - kept)

    async def stop(self) -> None:
        """Hand back every claim at once and leave the processes; others take over now."""
        async with self._stopping:
            renewer, self._renewer = self._renewer, None
            if renewer is None:
                return  # never started, or stopped already
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            released = await task_store.release_leases(self.db, owner=self.owner)
            if released:
                log.info("Handed back %d tasks for another process or the next start", released)
            await coordination.unregister_process(self.db, self.owner)
            self._held.clear()


def _where_pids_are_seen() -> str:
    """Name the place whose pids this process can check: the host, its boot, its pid namespace.

    Containers may share a hostname and each run as pid 1; only a process that sees the same
    pids may judge another dead by its pid being gone.
    """
    try:
        boot = pathlib.Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:")
    except OSError:
        return socket.gethostname()  # no /proc: the hostname alone
    return f"{socket.gethostname()}#{boot}{namespace}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: asks whether the process exists, sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
