"""When work is due: the clock, the wake-up call, and what finished renders teach.

The starter and the poller share one timetable: the starter plans a new task's first poll
from it and wakes the poller, which sleeps on it until the next task is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

from core.schedule import (
    LONGEST_GAP_SECONDS,
    Expectation,
    PollSchedule,
    Preset,
    Render,
    expect,
    learned,
)
from db import Database
from db import tasks as task_store
from db.tasks import Task

# How many of each preset's latest renders the schedule learns from: recent enough to follow
# the provider's speed as it changes, enough to see the spread.
RENDERS_PER_PRESET = 20
# On a shared database other processes finish renders too: what they learn is read back this often.
SHARED_RELOAD_SECONDS = 60.0


class Timetable:
    """The clock, the wake-up call and the learned render times that polls are planned by."""

    def __init__(self, db: Database, poll_interval_seconds: float) -> None:
        self.db = db
        self.poll_interval_seconds = poll_interval_seconds
        # Tests and the benchmark change these on a running bot.
        self.clock: Callable[[], float] = time.time
        self._wake = asyncio.Event()
        # Each preset's latest renders, read from the database, then kept up to date; read
        # again every `reload_seconds` (None: this process is the database's only writer).
        self._renders: dict[Preset, deque[Render]] | None = None
        self._loaded_at = 0.0
        self.reload_seconds = SHARED_RELOAD_SECONDS if db.shared else None
        self._loading = asyncio.Lock()
        self.longest_gap = LONGEST_GAP_SECONDS

    def wake(self) -> None:
        """Look for due work now (a task was just submitted or finished a step)."""
        self._wake.set()

    def forget_wakes(self) -> None:
        """Drop the wake-ups seen so far: only a later one ends the next wait early."""
        self._wake.clear()

    async def wait(self, delay: float) -> None:
        """Wait `delay` seconds, or until something wakes the timetable."""
        # asyncio.timeout, unlike wait_for on 3.11, never swallows a cancellation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    def interval(self, attempts: int) -> float:
        """Return the gap before retrying after an error: growing from the poll interval."""
        base = self.poll_interval_seconds
        return float(min(base * 1.5**attempts, base * 6))

    @property
    def schedule(self) -> PollSchedule:
        """The rules for the gaps between polls, with this bot's shortest gap."""
        return PollSchedule(self.poll_interval_seconds, self.longest_gap)

    async def expectation(self, duration: int, sound: bool) -> Expectation | None:
        """Return what finished renders say about one of this preset."""
        return expect(await self._learned_renders(), (duration, sound))

    async def _learned_renders(self) -> dict[Preset, deque[Render]]:
        """Each preset's latest renders: read from the database, then kept up to date."""
        async with self._loading:
            # Real time, not `clock`: it is about when other processes write, not the schedule.
            stale = (
                self.reload_seconds is not None
                and time.monotonic() - self._loaded_at >= self.reload_seconds
            )
            if self._renders is None or stale:
                renders: dict[Preset, deque[Render]] = {}
                found = await task_store.recent_renders(self.db, per_preset=RENDERS_PER_PRESET)
                # Oldest first, so that each preset's deque ends with its newest render.
                for render in reversed(found):
                    preset = (render.duration, render.sound)
                    self._remember(renders, preset, render.running_seconds, render.ready_seconds)
                self._renders = renders
                self._loaded_at = time.monotonic()
            return self._renders

    def _remember(
        self,
        renders: dict[Preset, deque[Render]],
        preset: Preset,
        running: float | None,
        ready: float,
    ) -> None:
        render = learned(running, ready, self.schedule)
        if render is not None:
            renders.setdefault(preset, self._new_renders()).append(render)

    @staticmethod
    def _new_renders() -> deque[Render]:
        return deque(maxlen=RENDERS_PER_PRESET)

    async def what_it_teaches(self, task: Task, ready: float) -> Render | None:
        """Return what a render just found done teaches, or None when it teaches nothing.

        One that no answered poll saw running is trusted only when its very first poll found
        it done, and on time: after polls that got no answer, or a first poll held back (a
        restart, a queue), its end could lie anywhere before.
        """
        # Read what is learned before this render is recorded, or a first read would
        # find it in the database and it would be counted twice.
        await self._learned_renders()
        if task.running_seconds is None:
            planned = self.schedule.first(await self.expectation(task.duration, task.sound))
            if task.poll_attempts > 0 or ready - planned > self.schedule.widest_gap:
                return None
        return learned(task.running_seconds, ready, self.schedule)

    def learn(self, preset: Preset, render: Render) -> None:
        """Keep a render that `what_it_teaches` returned, now that the database has it too."""
        assert self._renders is not None  # what_it_teaches read them first
        self._renders.setdefault(preset, self._new_renders()).append(render)

    async def first_poll_delay(self, duration: int, sound: bool) -> float:
        """Return when to poll a new task first: when renders of its preset start ending."""
        return self.schedule.first(await self.expectation(duration, sound))
