"""The poller: one loop that follows every task to its end.

One owned asyncio task reads the due tasks from an indexed query, works on at most
`concurrency` of them at once, and sleeps until the next one is due or something wakes it.
Everything it needs lives in the database, so a restart resumes where the last run stopped.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from core import texts
from core.claims import Claims
from core.delivery import Delivery
from core.settings import Settings
from core.timetable import Timetable
from db import Database
from db import tasks as task_store
from db.states import TaskState
from db.tasks import Task
from provider.client import SeedanceClient
from provider.errors import ProviderError

log = logging.getLogger(__name__)

MAX_IDLE_SECONDS = 30.0
# On a shared database another process's new or abandoned work wakes nothing here: look
# for it this often, so a task is taken over within a second of its lease running out.
SHARED_IDLE_SECONDS = 1.0
# How often to look for charged tasks whose submitter's lease ran out (it was cut off).
SWEEP_EVERY_SECONDS = 30.0
STOP_GRACE_SECONDS = 10.0
# Polls and deliveries in flight at once: bounds the provider calls, downloads and uploads.
CONCURRENCY = 8


class Poller:
    """Polls rendering tasks, has finished clips delivered, refunds those that cannot succeed."""

    def __init__(
        self,
        db: Database,
        provider: SeedanceClient,
        settings: Settings,
        timetable: Timetable,
        claims: Claims,
        delivery: Delivery,
    ) -> None:
        self.db = db
        self.provider = provider
        self.settings = settings
        self.timetable = timetable
        self.claims = claims
        self.owner = claims.owner
        self.delivery = delivery
        # Tests and the benchmark change this on a running bot.
        self.concurrency = CONCURRENCY
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._last_sweep = float("-inf")
        self._sweep: asyncio.Task[None] | None = None
        self.sweep_every = SWEEP_EVERY_SECONDS
        self.idle_seconds = MAX_IDLE_SECONDS
        if db.shared:
            self.idle_seconds = SHARED_IDLE_SECONDS
            # A process that died mid-submission leaves a charge; refund it a lease later.
            self.sweep_every = min(SWEEP_EVERY_SECONDS, settings.work_lease_seconds)

    @property
    def in_flight(self) -> int:
        """How many tasks are being polled or delivered right now."""
        return len(self._in_flight)

    @property
    def running(self) -> bool:
        """Whether the loop is alive."""
        return self._runner is not None and not self._runner.done()

    def start(self) -> None:
        """Start the loop; its first tick settles what an earlier run left half done."""
        if self.running:
            return
        self._stopping = False
        self._last_sweep = float("-inf")
        self._runner = asyncio.create_task(self._run(), name="video-poller")

    async def stop(self) -> None:
        """Stop the loop and give the polls and deliveries in flight a moment to finish."""
        self._stopping = True
        self.timetable.wake()
        if self._runner is not None:
            done, _ = await asyncio.wait([self._runner], timeout=STOP_GRACE_SECONDS)
            if not done:
                self._runner.cancel()
                await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        pending = list(self._in_flight.values())
        if self._sweep is not None and not self._sweep.done():
            pending.append(self._sweep)
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=STOP_GRACE_SECONDS)
            for job in still_running:
                job.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _elapsed(self, task: Task) -> float:
        """Seconds since the provider accepted the task (or since it was charged)."""
        started = task.submitted_at or task.created_at
        return self.timetable.clock() - datetime.fromisoformat(started).timestamp()

    async def _run(self) -> None:
        try:
            # Tasks that came due while the bot was down are staggered at the provider's
            # pace (with room left for new submissions), oldest first.
            spread = await task_store.spread_overdue(
                self.db,
                self.timetable.clock(),
                per_second=0.8 * self.settings.provider_max_rps,
            )
            if spread:
                log.info("Resuming %d rendering tasks that came due while stopped", spread)
        except Exception:
            log.exception("Could not stagger the overdue tasks; polling them as they come")
        while not self._stopping:
            self.timetable.forget_wakes()
            try:
                delay = await self.tick()
            except Exception:
                # A broken tick must not end polling for every task: log it and go on.
                delay = self.settings.poll_interval_seconds
                log.exception("The poller's tick failed; trying again in %.2f s", delay)
            # stop() wakes the timetable too, so a stop during the tick ends this wait at once.
            await self.timetable.wait(delay)

    async def tick(self) -> float:
        """Start work on due tasks while there is room; return how long to sleep."""
        db = self.db
        moment = self.timetable.clock()
        sweeping = self._sweep is not None and not self._sweep.done()
        if moment >= self._last_sweep + self.sweep_every and not sweeping:
            # Each refund tells the member on Discord; after a crash there can be many, and
            # polling and delivery must not wait for those messages.
            self._last_sweep = moment
            self._sweep = asyncio.create_task(self._sweep_stranded(), name="video-sweep")
        room = self.concurrency - len(self._in_flight)
        if room <= 0:
            return MAX_IDLE_SECONDS  # a finishing job wakes the loop
        claimed = await task_store.claim_due(
            db, owner=self.owner, now=moment, lease_until=self.claims.lease_until(), limit=room
        )
        for task in claimed:
            if task.id in self._in_flight:
                continue  # its lease lapsed while in hand, and was just taken again
            self.claims.hold(task.id)
            job = asyncio.create_task(self._handle(task), name=f"video-task-{task.id}")
            self._in_flight[task.id] = job
        if len(self._in_flight) >= self.concurrency:
            return MAX_IDLE_SECONDS
        next_due = await task_store.next_due_at(db, owner=self.owner)
        until_sweep = self._last_sweep + self.sweep_every - self.timetable.clock()
        if next_due is None:
            return max(0.0, min(until_sweep, self.idle_seconds))
        return max(0.0, min(next_due - self.timetable.clock(), until_sweep, self.idle_seconds))

    async def _handle(self, task: Task) -> None:
        # `task` is the row just claimed; no other job, here or in another process, touches
        # it while this one holds the lease.
        try:
            if task.state is TaskState.RENDERING:
                await self.poll(task)
            elif task.state is TaskState.DELIVERING:
                await self.delivery.deliver(task)
        except Exception:
            log.exception("Handling task %s failed; it will be tried again", task.id)
            attempts = max(task.poll_attempts, task.delivery_attempts) + 1
            try:
                # A poll that keeps failing must not hold the member's credits for good.
                if task.state is TaskState.RENDERING and self._rendering_too_long(task):
                    await self._time_out(task)
                else:
                    await task_store.reschedule(
                        self.db,
                        task.id,
                        self.timetable.clock() + self.timetable.interval(attempts),
                        owner=self.owner,
                    )
            except Exception:
                # Its lease runs out and the task is claimed again (here or elsewhere).
                log.exception("Could not reschedule task %s", task.id)
        finally:
            self.claims.drop(task.id)
            self._in_flight.pop(task.id, None)
            self.timetable.wake()

    async def _sweep_stranded(self) -> None:
        try:
            await self.refund_stranded()
        except Exception:
            log.exception("The sweep for cut-off submissions failed; it runs again later")

    async def refund_stranded(self) -> None:
        """Refund charged tasks whose submission was cut off (by a restart or a crash)."""
        stranded = await task_store.claim_stranded(
            self.db,
            owner=self.owner,
            now=self.timetable.clock(),
            lease_until=self.claims.lease_until(),
        )
        for task in stranded:
            self.claims.hold(task.id)
        for task in stranded:
            log.warning(
                "Task %s was charged but the provider never confirmed it; refunding it "
                "(the provider may still have started, and charged for, a task we will not see)",
                task.id,
            )
            try:
                await self._refund(
                    task,
                    TaskState.UNCERTAIN,
                    texts.NEVER_CONFIRMED,
                    allowed_from=(TaskState.SUBMITTING,),
                )
            finally:
                self.claims.drop(task.id)

    async def poll(self, task: Task) -> None:
        """Ask the provider about one rendering task and act on the answer."""
        assert task.provider_task_id is not None
        try:
            status = await self.provider.status(task.provider_task_id)
        except ProviderError as error:
            log.warning("Polling task %s failed (%s); trying again later", task.id, error)
            status = None
        if status is not None and status.is_failed:
            reason = status.error_message or texts.RENDER_FAILED
            await self._refund(task, TaskState.FAILED, reason, allowed_from=(TaskState.RENDERING,))
        elif status is not None and status.is_success and not status.response_urls:
            await self._refund(
                task,
                TaskState.FAILED,
                texts.SUCCESS_WITHOUT_CLIP,
                allowed_from=(TaskState.RENDERING,),
            )
        elif status is not None and status.is_success:
            # A clip that finished is delivered even past the time limit: it was paid for.
            ready = self._elapsed(task)
            render = await self.timetable.what_it_teaches(task, ready)
            if await task_store.mark_delivering(
                self.db,
                task.id,
                status.response_urls,
                owner=self.owner,
                ready_seconds=None if render is None else ready,
                next_poll_at=self.timetable.clock(),
            ):
                if render is not None:
                    self.timetable.learn((task.duration, task.sound), render)
                delivering = await task_store.get(self.db, task.id)
                assert delivering is not None
                await self.delivery.deliver(delivering)
        elif self._rendering_too_long(task):
            await self._time_out(task)
        elif status is None:
            # No answer: nothing learned about the render, and the next try waits longer.
            elapsed = self._elapsed(task)
            expected = await self.timetable.expectation(task.duration, task.sound)
            # Silent since the last answer, or since the first poll was due.
            last_heard = task.running_seconds
            if last_heard is None:
                last_heard = self.timetable.schedule.first(expected)
            gap = self.timetable.schedule.after_error(
                elapsed, max(0.0, elapsed - last_heard), expected
            )
            await task_store.reschedule(
                self.db, task.id, self.timetable.clock() + gap, owner=self.owner
            )
        else:
            elapsed = self._elapsed(task)
            expected = await self.timetable.expectation(task.duration, task.sound)
            await task_store.still_running(
                self.db,
                task.id,
                owner=self.owner,
                running_seconds=elapsed,
                next_poll_at=self.timetable.clock()
                + self.timetable.schedule.next(elapsed, expected),
            )
            await self.delivery.show_progress(task, elapsed, expected)

    async def _time_out(self, task: Task) -> None:
        minutes = self.settings.render_timeout_seconds / 60
        await self._refund(
            task,
            TaskState.TIMED_OUT,
            texts.still_rendering(minutes=minutes),
            allowed_from=(TaskState.RENDERING,),
        )

    def _rendering_too_long(self, task: Task) -> bool:
        return self._elapsed(task) > self.settings.render_timeout_seconds

    async def _refund(
        self, task: Task, to: TaskState, reason: str, *, allowed_from: tuple[TaskState, ...]
    ) -> None:
        balance = await task_store.finish_with_refund(
            self.db, task.id, to, reason, owner=self.owner, allowed_from=allowed_from
        )
        if balance is None:
            return  # finished elsewhere, or already refunded
        log.info("Task %s ended %s; %d credits refunded", task.id, to.value, task.cost)
        await self.delivery.announce_refund(task, reason, balance)
