"""The poller and the delivery: one loop that follows every task to its end.

One owned asyncio task reads the due tasks from an indexed query, works on at most
`concurrency` of them at once, and sleeps until the next one is due or something wakes it.
Everything it needs lives in the database, so a restart resumes where the last run stopped.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import discord

from core import texts
from core.cards import IN_CHANNEL, message_url, progress_text, quote, task_card
from core.generation import DEFAULT_UPLOAD_LIMIT
from core.members import NO_MENTIONS, requester_only
from core.results import result_view
from core.schedule import Expectation
from db import credits, iso, now, utcnow
from db import tasks as task_store
from db.states import TaskState
from db.tasks import Task
from provider.errors import ClipTooLarge, ProviderError

if TYPE_CHECKING:
    from core.bot import VideoBot

log = logging.getLogger(__name__)

DOWNLOAD_ATTEMPTS = 3
DELIVERY_ATTEMPTS = 6
MAX_IDLE_SECONDS = 30.0
# A charged task whose submission has not finished after this long, and that no command of
# this run is still submitting, was cut off: it is refunded at the next sweep.
STRANDED_AFTER_SECONDS = 30.0
SWEEP_EVERY_SECONDS = 30.0
STOP_GRACE_SECONDS = 10.0
TOO_LARGE_CODE = 40005
# A rendering card shows its elapsed time at most this often, and all cards together are
# edited at most once per gap, which keeps many renders far from Discord's rate limits.
PROGRESS_EVERY_SECONDS = 15.0
PROGRESS_GAP_SECONDS = 1.0
# Polls and deliveries in flight at once: bounds the provider calls, downloads and uploads.
CONCURRENCY = 8


class Renderer:
    """Polls rendering tasks, delivers finished clips and refunds the ones that cannot succeed."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        self.timetable = bot.timetable
        # Tests and the benchmark change this on a running bot.
        self.concurrency = CONCURRENCY
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._started_at = utcnow()
        self._last_sweep = float("-inf")
        self._sweep: asyncio.Task[None] | None = None
        self.stranded_after = STRANDED_AFTER_SECONDS
        self.sweep_every = SWEEP_EVERY_SECONDS
        self.progress_every = PROGRESS_EVERY_SECONDS
        self.progress_gap = PROGRESS_GAP_SECONDS
        self._progress_shown: dict[str, float] = {}
        self._progress_waiting: dict[str, float] = {}
        self._next_progress_edit = 0.0

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
        self._started_at = utcnow()
        self._last_sweep = float("-inf")
        self._runner = asyncio.create_task(self._run(), name="video-renderer")

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
                self.bot.db,
                self.timetable.clock(),
                per_second=0.8 * self.bot.settings.provider_max_rps,
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
                delay = self.bot.settings.poll_interval_seconds
                log.exception("The poller's tick failed; trying again in %.2f s", delay)
            # stop() wakes the timetable too, so a stop during the tick ends this wait at once.
            await self.timetable.wait(delay)

    async def tick(self) -> float:
        """Start work on due tasks while there is room; return how long to sleep."""
        db = self.bot.db
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
        for task in await task_store.due(db, moment, limit=room, exclude=self._in_flight):
            job = asyncio.create_task(self._handle(task), name=f"video-task-{task.id}")
            self._in_flight[task.id] = job
        if len(self._in_flight) >= self.concurrency:
            return MAX_IDLE_SECONDS
        next_due = await task_store.next_due_at(db, exclude=self._in_flight)
        until_sweep = self._last_sweep + self.sweep_every - self.timetable.clock()
        if next_due is None:
            return max(0.0, min(until_sweep, MAX_IDLE_SECONDS))
        return max(0.0, min(next_due - self.timetable.clock(), until_sweep, MAX_IDLE_SECONDS))

    async def _handle(self, task: Task) -> None:
        # `task` is the row `due()` just read; no other job touches it while it is in flight.
        try:
            if task.state is TaskState.RENDERING:
                await self.poll(task)
            elif task.state is TaskState.DELIVERING:
                await self.deliver(task)
        except Exception:
            log.exception("Handling task %s failed; it will be tried again", task.id)
            attempts = max(task.poll_attempts, task.delivery_attempts) + 1
            try:
                # A poll that keeps failing must not hold the member's credits for good.
                if task.state is TaskState.RENDERING and self._rendering_too_long(task):
                    await self._time_out(task)
                else:
                    await task_store.reschedule(
                        self.bot.db,
                        task.id,
                        self.timetable.clock() + self.timetable.interval(attempts),
                    )
            except Exception:
                log.exception("Could not reschedule task %s", task.id)
        finally:
            self._in_flight.pop(task.id, None)
            self.timetable.wake()

    async def _sweep_stranded(self) -> None:
        try:
            await self.refund_stranded()
        except Exception:
            log.exception("The sweep for cut-off submissions failed; it runs again later")

    async def refund_stranded(self) -> None:
        """Refund charged tasks whose submission was cut off (by a restart or a crash)."""
        cutoff = now() - timedelta(seconds=self.stranded_after)
        created_before = max(self._started_at, iso(cutoff))
        stranded = await task_store.stranded_submissions(
            self.bot.db, created_before=created_before, exclude=self.timetable.submitting
        )
        for task in stranded:
            log.warning(
                "Task %s was charged but the provider never confirmed it; refunding it "
                "(the provider may still have started, and charged for, a task we will not see)",
                task.id,
            )
            await self._refund(
                task,
                TaskState.UNCERTAIN,
                texts.NEVER_CONFIRMED,
                allowed_from=(TaskState.SUBMITTING,),
            )

    async def poll(self, task: Task) -> None:
        """Ask the provider about one rendering task and act on the answer."""
        assert task.provider_task_id is not None
        try:
            status = await self.bot.provider.status(task.provider_task_id)
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
                self.bot.db,
                task.id,
                status.response_urls,
                ready_seconds=None if render is None else ready,
                next_poll_at=self.timetable.clock(),
            ):
                if render is not None:
                    self.timetable.learn((task.duration, task.sound), render)
                delivering = await task_store.get(self.bot.db, task.id)
                assert delivering is not None
                await self.deliver(delivering)
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
            await task_store.reschedule(self.bot.db, task.id, self.timetable.clock() + gap)
        else:
            elapsed = self._elapsed(task)
            expected = await self.timetable.expectation(task.duration, task.sound)
            await task_store.still_running(
                self.bot.db,
                task.id,
                running_seconds=elapsed,
                next_poll_at=self.timetable.clock()
                + self.timetable.schedule.next(elapsed, expected),
            )
            await self._show_progress(task, elapsed, expected)

    async def _show_progress(
        self, task: Task, elapsed: float, expected: Expectation | None
    ) -> None:
        """Edit a rendering task's card with elapsed time, calmly.

        At most once per `progress_every` per card, and at most one progress edit per
        `progress_gap` across all cards, so many renders never approach Discord's limits.
        """
        if task.card_message_id is None:
            return
        moment = time.monotonic()
        last = self._progress_shown.get(task.id)
        if last is None:
            # The card was just shown (or the bot restarted): wait a full period first.
            self._progress_shown[task.id] = moment
            return
        if moment - last < self.progress_every or not self._progress_turn(task.id, moment):
            return
        self._progress_shown[task.id] = moment
        self._next_progress_edit = moment + self.progress_gap
        typical = None if expected is None else expected.typical
        await self._update_card(task.id, progress=progress_text(elapsed, typical))

    def _progress_turn(self, task_id: str, moment: float) -> bool:
        """Whether this card may take the shared progress slot now, longest waiter first.

        Cards polled in the same order every tick would otherwise leave the later ones
        always finding the slot just taken.
        """
        # A waiter that stopped asking (it finished, or polls rarely) gives up its place.
        stale = moment - 2 * self.progress_every
        for waiting_id, since in list(self._progress_waiting.items()):
            if since < stale:
                del self._progress_waiting[waiting_id]
        first = min(self._progress_waiting, key=self._progress_waiting.__getitem__, default=None)
        if moment < self._next_progress_edit or first not in (None, task_id):
            self._progress_waiting.setdefault(task_id, moment)
            return False
        self._progress_waiting.pop(task_id, None)
        return True

    async def _time_out(self, task: Task) -> None:
        minutes = self.bot.settings.render_timeout_seconds / 60
        await self._refund(
            task,
            TaskState.TIMED_OUT,
            texts.still_rendering(minutes=minutes),
            allowed_from=(TaskState.RENDERING,),
        )

    def _rendering_too_long(self, task: Task) -> bool:
        return self._elapsed(task) > self.bot.settings.render_timeout_seconds

    async def deliver(self, task: Task) -> None:
        """Post the finished clip (or its link) and record where, before calling it done."""
        attempt = await task_store.begin_delivery_attempt(self.bot.db, task.id)
        if attempt == 0:
            return  # no longer delivering: another step finished it
        if attempt > 1:
            earlier = await self._find_earlier_post(task)
            if earlier is not None:
                log.info("Task %s was posted before the last run could record it", task.id)
                via = "attachment" if earlier.attachments else "link"
                await self._finish_delivery(task, via, earlier.id, task.channel_id)
                return
        if attempt > DELIVERY_ATTEMPTS:
            log.error("Giving up posting the clip of task %s; /video status shows it", task.id)
            await self._finish_delivery(task, "none", None, None)
            return
        with tempfile.TemporaryDirectory(prefix="seedance-") as folder:
            download = Path(folder) / f"seedance-{task.id}.mp4"
            clip: Path | None = download
            note = ""
            try:
                await self.bot.provider.download(
                    task.result_urls[0], download, max_bytes=task.upload_limit
                )
            except ClipTooLarge:
                clip, note = None, texts.TOO_LARGE_TO_UPLOAD
            except ProviderError as error:
                if attempt < DOWNLOAD_ATTEMPTS:
                    log.warning("Downloading the clip of task %s failed: %s", task.id, error)
                    await self._retry_later(task, attempt)
                    return
                log.warning("Giving up downloading the clip of task %s: %s", task.id, error)
                clip, note = None, texts.NOT_FETCHED
            try:
                message_id, channel_id, via = await self._post(task, clip, note)
            except discord.HTTPException as error:
                log.warning("Posting the clip of task %s failed: %s", task.id, error)
                await self._retry_later(task, attempt)
                return
        await self._finish_delivery(task, via, message_id, channel_id)

    async def _finish_delivery(
        self, task: Task, via: str, message_id: int | None, channel_id: int | None
    ) -> None:
        if not await task_store.mark_delivered(
            self.bot.db, task.id, via=via, message_id=message_id, channel_id=channel_id
        ):
            return
        log.info("Task %s delivered (%s)", task.id, via)
        await self._update_card(task.id)
        if via in IN_CHANNEL and await credits.wants_notify(
            self.bot.db, task.guild_id, task.user_id
        ):
            await self._notify(task, message_url(task.guild_id, channel_id, message_id))

    async def _notify(self, task: Task, jump: str) -> None:
        """DM the requester (who asked for it with /video notify) that their clip is up."""
        try:
            user = await self.bot.fetch_user(task.user_id)
            await user.send(
                texts.clip_ready_dm(task_id=task.id, jump=jump),
                allowed_mentions=NO_MENTIONS,
            )
        except discord.HTTPException as error:
            log.info("Could not DM the requester of task %s: %s", task.id, error)

    async def _retry_later(self, task: Task, attempt: int) -> None:
        await task_store.reschedule(
            self.bot.db, task.id, self.timetable.clock() + self.timetable.interval(attempt)
        )

    async def _find_earlier_post(self, task: Task) -> discord.Message | None:
        """Look in the channel for a clip post an interrupted attempt made but never recorded."""
        me = self.bot.user
        if me is None:
            return None
        channel = self.bot.get_partial_messageable(task.channel_id, guild_id=task.guild_id)
        marker = texts.clip_marker(task_id=task.id)
        try:
            async for message in channel.history(limit=50):
                if message.author.id == me.id and marker in message.content:
                    return message
        except discord.HTTPException as error:
            log.info("Could not read back the channel of task %s: %s", task.id, error)
        return None

    async def _post(
        self, task: Task, clip: Path | None, note: str
    ) -> tuple[int | None, int | None, str]:
        """Post to the task's channel; fall back to the requester's DMs when refused there."""
        mentions = requester_only(task.user_id)
        # The same nonce on every attempt lets Discord drop a repeat of a post that went
        # through just before a crash or a lost response (for a few minutes; past that,
        # _find_earlier_post catches it).
        nonce = f"sdv-{task.id}"
        channel = self.bot.get_partial_messageable(task.channel_id, guild_id=task.guild_id)
        try:
            message = await self._send(channel, task, clip, note, mentions, nonce)
            return message.id, task.channel_id, "attachment" if clip else "link"
        except discord.HTTPException as error:
            if error.status == 413 or error.code == TOO_LARGE_CODE:
                # The server's upload limit shrank since the command (a boost ended).
                note = texts.TOO_LARGE_TO_UPLOAD
                message = await self._send(channel, task, None, note, mentions, nonce + "l")
                return message.id, task.channel_id, "link"
            if not isinstance(error, discord.Forbidden | discord.NotFound):
                raise
            if clip is not None and isinstance(error, discord.Forbidden):
                # Maybe only Attach Files is missing: the link still belongs in the channel.
                try:
                    message = await self._send(
                        channel, task, None, texts.NO_UPLOAD_HERE, mentions, nonce + "l"
                    )
                    return message.id, task.channel_id, "link"
                except (discord.Forbidden, discord.NotFound):
                    pass
            log.info("Cannot post task %s in its channel (%s); trying a DM", task.id, error)
        try:
            user = await self.bot.fetch_user(task.user_id)
            dm = await user.create_dm()
            if clip is not None and clip.stat().st_size > DEFAULT_UPLOAD_LIMIT:  # noqa: ASYNC240 - one local stat
                clip, note = None, texts.TOO_LARGE_TO_UPLOAD
            message = await self._send(
                dm,
                task,
                clip,
                note,
                mentions,
                nonce,
                footer=texts.COULD_NOT_POST_IN_CHANNEL,
            )
            return message.id, dm.id, "dm"
        except (discord.Forbidden, discord.NotFound) as error:
            log.info("Cannot DM the requester of task %s either (%s)", task.id, error)
            return None, None, "none"

    async def _send(
        self,
        channel: discord.abc.Messageable,
        task: Task,
        clip: Path | None,
        note: str,
        mentions: discord.AllowedMentions,
        nonce: str,
        *,
        footer: str = "",
    ) -> discord.Message:
        text = texts.clip_ready(
            user_id=task.user_id, task_id=task.id, note=note, urls=task.result_urls
        ) + (f"\n{footer}" if footer else "")
        file = discord.File(clip, filename=clip.name) if clip else discord.utils.MISSING
        view = result_view(task, in_dm=isinstance(channel, discord.DMChannel))
        return await channel.send(
            text, file=file, view=view, allowed_mentions=mentions, nonce=nonce
        )

    async def _refund(
        self, task: Task, to: TaskState, reason: str, *, allowed_from: tuple[TaskState, ...]
    ) -> None:
        balance = await task_store.finish_with_refund(
            self.bot.db, task.id, to, reason, allowed_from=allowed_from
        )
        if balance is None:
            return  # finished elsewhere, or already refunded
        log.info("Task %s ended %s; %d credits refunded", task.id, to.value, task.cost)
        await self._update_card(task.id)
        text = texts.refunded(
            user_id=task.user_id,
            task_id=task.id,
            reason=quote(reason, 300),
            cost=task.cost,
            balance=balance,
        )
        channel = self.bot.get_partial_messageable(task.channel_id, guild_id=task.guild_id)
        try:
            await channel.send(text, allowed_mentions=requester_only(task.user_id))
        except discord.HTTPException:
            log.info("Could not announce the refund of task %s in its channel", task.id)

    async def _update_card(self, task_id: str, *, progress: str | None = None) -> None:
        task = await task_store.get(self.bot.db, task_id)
        if task is None or task.card_message_id is None:
            return
        if task.state.finished:
            self._progress_shown.pop(task.id, None)
            self._progress_waiting.pop(task.id, None)
        # The bot's own token, not the interaction's: renders outlive its 15 minutes.
        channel = self.bot.get_partial_messageable(task.channel_id, guild_id=task.guild_id)
        try:
            await channel.get_partial_message(task.card_message_id).edit(
                embed=task_card(task, progress=progress),
                allowed_mentions=NO_MENTIONS,
            )
        except discord.HTTPException:
            log.info("Could not update the card of task %s", task.id)
