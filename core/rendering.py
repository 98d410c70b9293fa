"""The poller and the delivery: one loop that follows every task to its end.

One owned asyncio task reads the due tasks from an indexed query, polls them with bounded
concurrency, and sleeps until the next one is due or a new task wakes it. Everything it
needs lives in the database, so a restart resumes where the last run stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import discord

from core.cards import quote, task_card
from db import tasks as task_store
from db import utcnow
from db.tasks import Task, TaskState
from provider.errors import ClipTooLarge, ProviderError

if TYPE_CHECKING:
    from core.bot import VideoBot

log = logging.getLogger(__name__)

DOWNLOAD_ATTEMPTS = 3
POST_ATTEMPTS = 5
DM_UPLOAD_LIMIT = 10 * 1024 * 1024
MAX_IDLE_SECONDS = 60.0


def requester_only(user_id: int) -> discord.AllowedMentions:
    """Allow pinging the task's requester and nobody else."""
    return discord.AllowedMentions(
        everyone=False, roles=False, users=[discord.Object(user_id)], replied_user=False
    )


class Renderer:
    """Polls rendering tasks, delivers finished clips and refunds the ones that cannot succeed."""

    def __init__(
        self,
        bot: VideoBot,
        *,
        clock: Callable[[], float] = time.time,
        concurrency: int = 8,
        batch: int = 50,
    ) -> None:
        self.bot = bot
        self.clock = clock
        self.batch = batch
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._started_at = utcnow()

    @property
    def running(self) -> bool:
        """Whether the loop is alive."""
        return self._runner is not None and not self._runner.done()

    def start(self) -> None:
        """Start the loop; it first settles what an earlier run left half done."""
        if self.running:
            return
        self._started_at = utcnow()
        self._runner = asyncio.create_task(self._run(), name="video-renderer")

    async def stop(self) -> None:
        """Stop the loop and let the polls and deliveries in flight finish their step."""
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        pending = list(self._in_flight.values())
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=10)
            for job in still_running:
                job.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def wake(self) -> None:
        """Look for due work now (a task was just submitted or finished a step)."""
        self._wake.set()

    def interval(self, attempts: int) -> float:
        """Return the gap before the next poll: growing from POLL_INTERVAL_SECONDS, capped."""
        base = self.bot.settings.poll_interval_seconds
        return float(min(base * 1.5**attempts, base * 6))

    async def _run(self) -> None:
        try:
            await self.recover_stranded()
        except Exception:
            log.exception("Could not settle the submissions left by the last run")
        while True:
            self._wake.clear()
            try:
                delay = await self.tick()
            except Exception:
                # A broken tick must not end polling for every task: log it and go on.
                delay = self.bot.settings.poll_interval_seconds
                log.exception("The poller's tick failed; trying again in %.2f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def tick(self) -> float:
        """Start work on every due task; return how long to sleep before the next one is due."""
        db = self.bot.db
        now = self.clock()
        for task in await task_store.due(db, now, limit=self.batch, exclude=self._in_flight):
            job = asyncio.create_task(self._handle(task), name=f"video-task-{task.id}")
            self._in_flight[task.id] = job
        next_due = await task_store.next_due_at(db, exclude=self._in_flight)
        if next_due is None:
            return MAX_IDLE_SECONDS
        return max(0.0, min(next_due - self.clock(), MAX_IDLE_SECONDS))

    async def _handle(self, task: Task) -> None:
        try:
            async with self._slots:
                current = await task_store.get(self.bot.db, task.id)
                if current is None:
                    return
                if current.state is TaskState.RENDERING:
                    await self.poll(current)
                elif current.state is TaskState.DELIVERING:
                    await self.deliver(current)
        except Exception:
            log.exception("Handling task %s failed; it will be tried again", task.id)
            later = self.clock() + self.interval(task.poll_attempts + 1)
            try:
                await task_store.reschedule(self.bot.db, task.id, later)
            except Exception:
                log.exception("Could not reschedule task %s", task.id)
        finally:
            self._in_flight.pop(task.id, None)
            self.wake()

    async def recover_stranded(self) -> None:
        """Refund submissions whose provider answer was lost when the last run stopped."""
        for task in await task_store.stranded_submissions(self.bot.db):
            if task.created_at >= self._started_at:
                continue  # submitted by this run; its command is still waiting for the answer
            log.warning(
                "Task %s was charged but the provider never confirmed it before the bot "
                "stopped; refunding it (the provider may still have started and charged it)",
                task.id,
            )
            await self._refund(
                task,
                TaskState.UNCERTAIN,
                "The bot restarted before the video service confirmed this task.",
                allowed_from=(TaskState.SUBMITTING,),
            )

    async def poll(self, task: Task) -> None:
        """Ask the provider about one rendering task and act on the answer."""
        assert task.provider_task_id is not None
        settings = self.bot.settings
        if task.submitted_at is not None:
            rendering_for = self.clock() - datetime.fromisoformat(task.submitted_at).timestamp()
            if rendering_for > settings.render_timeout_seconds:
                minutes = settings.render_timeout_seconds / 60
                await self._refund(
                    task,
                    TaskState.TIMED_OUT,
                    f"The video service was still rendering after {minutes:g} minutes.",
                    allowed_from=(TaskState.RENDERING,),
                )
                return
        try:
            status = await self.bot.provider.status(task.provider_task_id)
        except ProviderError as error:
            log.warning("Polling task %s failed (%s); trying again later", task.id, error)
            await task_store.reschedule(
                self.bot.db, task.id, self.clock() + self.interval(task.poll_attempts + 1)
            )
            return
        if status.is_failed:
            reason = status.error_message or "The video service could not make this clip."
            await self._refund(task, TaskState.FAILED, reason, allowed_from=(TaskState.RENDERING,))
        elif status.is_success and not status.response_urls:
            await self._refund(
                task,
                TaskState.FAILED,
                "The video service reported success but sent no clip.",
                allowed_from=(TaskState.RENDERING,),
            )
        elif status.is_success:
            if await task_store.mark_delivering(
                self.bot.db, task.id, status.response_urls, next_poll_at=self.clock()
            ):
                delivering = await task_store.get(self.bot.db, task.id)
                assert delivering is not None
                await self.deliver(delivering)
        else:
            await task_store.reschedule(
                self.bot.db, task.id, self.clock() + self.interval(task.poll_attempts + 1)
            )

    async def deliver(self, task: Task) -> None:
        """Post the finished clip (or its link) and record where, before calling it done."""
        with tempfile.TemporaryDirectory(prefix="seedance-") as folder:
            clip: Path | None = Path(folder) / f"seedance-{task.id}.mp4"
            assert clip is not None
            note = ""
            try:
                await self.bot.provider.download(
                    task.result_urls[0], clip, max_bytes=task.upload_limit
                )
            except ClipTooLarge:
                clip, note = None, "It is too large to upload here, so here is the link:"
            except ProviderError as error:
                if task.delivery_attempts + 1 < DOWNLOAD_ATTEMPTS:
                    log.warning("Downloading the clip of task %s failed: %s", task.id, error)
                    await self._retry_delivery(task)
                    return
                log.warning("Giving up downloading the clip of task %s: %s", task.id, error)
                clip, note = None, "It could not be fetched for upload; here is the link:"
            try:
                message_id, channel_id, via = await self._post(task, clip, note)
            except discord.HTTPException as error:
                if task.delivery_attempts + 1 < POST_ATTEMPTS:
                    log.warning("Posting the clip of task %s failed: %s", task.id, error)
                    await self._retry_delivery(task)
                    return
                log.error("Giving up posting the clip of task %s: %s", task.id, error)
                message_id, channel_id, via = None, None, "none"
        await task_store.mark_delivered(
            self.bot.db, task.id, via=via, message_id=message_id, channel_id=channel_id
        )
        log.info("Task %s delivered (%s)", task.id, via)
        await self._update_card(task.id)

    async def _retry_delivery(self, task: Task) -> None:
        await task_store.reschedule(
            self.bot.db, task.id, self.clock() + self.interval(task.delivery_attempts + 1)
        )

    def _clip_text(self, task: Task, note: str) -> str:
        text = f"<@{task.user_id}> your clip is ready · task `{task.id}`"
        if note:
            text += f"\n{note}\n" + "\n".join(task.result_urls)
        elif len(task.result_urls) > 1:
            text += "\nMore takes: " + " ".join(task.result_urls[1:])
        return text

    async def _post(
        self, task: Task, clip: Path | None, note: str
    ) -> tuple[int | None, int | None, str]:
        """Post to the task's channel; fall back to the requester's DMs when refused there."""
        text = self._clip_text(task, note)
        mentions = requester_only(task.user_id)
        # The same nonce on every attempt lets Discord drop a repeat of a post that went
        # through just before a crash or a lost response.
        nonce = f"sdv-{task.id}"
        channel = self.bot.get_partial_messageable(task.channel_id, guild_id=task.guild_id)
        try:
            file = discord.File(clip, filename=clip.name) if clip else None
            message = await channel.send(
                text, file=file or discord.utils.MISSING, allowed_mentions=mentions, nonce=nonce
            )
            return message.id, task.channel_id, "attachment" if clip else "link"
        except (discord.Forbidden, discord.NotFound) as error:
            log.info("Cannot post task %s in its channel (%s); trying a DM", task.id, error)
        try:
            user = await self.bot.fetch_user(task.user_id)
            dm = await user.create_dm()
            if clip is not None and clip.stat().st_size > DM_UPLOAD_LIMIT:  # noqa: ASYNC240 - one local stat
                clip, note = None, "It is too large to upload here, so here is the link:"
                text = self._clip_text(task, note)
            file = discord.File(clip, filename=clip.name) if clip else None
            message = await dm.send(
                text + "\n(The bot could not post in the channel where you asked.)",
                file=file or discord.utils.MISSING,
                allowed_mentions=mentions,
                nonce=nonce,
            )
            return message.id, dm.id, "dm"
        except (discord.Forbidden, discord.NotFound) as error:
            log.info("Cannot DM the requester of task %s either (%s)", task.id, error)
            return None, None, "none"

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
        text = (
            f"<@{task.user_id}> your clip `{task.id}` could not be made: {quote(reason, 300)}\n"
            f"Your {task.cost} credits are back (balance: {balance})."
        )
        channel = self.bot.get_partial_messageable(task.channel_id, guild_id=task.guild_id)
        try:
            await channel.send(text, allowed_mentions=requester_only(task.user_id))
        except discord.HTTPException:
            log.info("Could not announce the refund of task %s in its channel", task.id)

    async def _update_card(self, task_id: str) -> None:
        task = await task_store.get(self.bot.db, task_id)
        if task is None or task.card_message_id is None:
            return
        channel = self.bot.get_partial_messageable(task.channel_id, guild_id=task.guild_id)
        try:
            await channel.get_partial_message(task.card_message_id).edit(
                embed=task_card(task), allowed_mentions=discord.AllowedMentions.none()
            )
        except discord.HTTPException:
            log.info("Could not update the card of task %s", task.id)
