"""The delivery: clips posted with their buttons, cards kept current, refunds announced.

Everything here talks to Discord over REST with the bot's own token (a gateway is not
needed), and records in the database where each clip went before calling it done.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import discord

from core import texts
from core.cards import IN_CHANNEL, message_url, progress_text, task_card
from core.claims import Claims
from core.clip_buttons import result_view
from core.embeds import quote
from core.generation import DEFAULT_UPLOAD_LIMIT
from core.members import NO_MENTIONS, requester_only
from core.schedule import Expectation
from core.timetable import Timetable
from db import Database, credits
from db import tasks as task_store
from db.tasks import Task
from provider.client import SeedanceClient
from provider.errors import ClipTooLarge, ProviderError

log = logging.getLogger(__name__)

DOWNLOAD_ATTEMPTS = 3
DELIVERY_ATTEMPTS = 6
TOO_LARGE_CODE = 40005
# A rendering card shows its elapsed time at most this often, and all cards together are
# edited at most once per gap, which keeps many renders far from Discord's rate limits.
PROGRESS_EVERY_SECONDS = 15.0
PROGRESS_GAP_SECONDS = 1.0


class Delivery:
    """Posts finished clips, keeps task cards current and tells members about refunds."""

    def __init__(
        self,
        client: discord.Client,
        db: Database,
        provider: SeedanceClient,
        timetable: Timetable,
        claims: Claims,
    ) -> None:
        self.client = client
        self.db = db
        self.provider = provider
        self.timetable = timetable
        self.claims = claims
        self.owner = claims.owner
        # Tests and the benchmark change these on a running bot.
        self.progress_every = PROGRESS_EVERY_SECONDS
        self.progress_gap = PROGRESS_GAP_SECONDS
        self._progress_shown: dict[str, float] = {}
        self._progress_waiting: dict[str, float] = {}
        self._next_progress_edit = 0.0

    async def deliver(self, task: Task) -> None:
        """Post the finished clip (or its link) and record where, before calling it done."""
        attempt = await task_store.begin_delivery_attempt(self.db, task.id, owner=self.owner)
        if attempt == 0:
            return  # no longer delivering, or no longer ours: another step finished it
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
                await self.provider.download(
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
            if not await task_store.holds(self.db, task.id, self.owner, self.timetable.clock()):
                # Paused or cut off past the lease while downloading: another process has the
                # task now and posts it; posting here too would post it twice.
                log.warning("Lost the claim on task %s before posting it; leaving it", task.id)
                return
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
            self.db,
            task.id,
            owner=self.owner,
            via=via,
            message_id=message_id,
            channel_id=channel_id,
        ):
            return
        log.info("Task %s delivered (%s)", task.id, via)
        await self._update_card(task.id)
        if via in IN_CHANNEL and await credits.wants_notify(self.db, task.guild_id, task.user_id):
            await self._notify(task, message_url(task.guild_id, channel_id, message_id))

    async def _notify(self, task: Task, jump: str) -> None:
        """DM the requester (who asked for it with /video notify) that their clip is up."""
        try:
            user = await self.client.fetch_user(task.user_id)
            await user.send(
                texts.clip_ready_dm(task_id=task.id, jump=jump),
                allowed_mentions=NO_MENTIONS,
            )
        except discord.HTTPException as error:
            log.info("Could not DM the requester of task %s: %s", task.id, error)

    async def _retry_later(self, task: Task, attempt: int) -> None:
        await task_store.reschedule(
            self.db,
            task.id,
            self.timetable.clock() + self.timetable.interval(attempt),
            owner=self.owner,
        )

    async def _find_earlier_post(self, task: Task) -> discord.Message | None:
        """Look in the channel for a clip post an interrupted attempt made but never recorded."""
        me = self.client.user
        if me is None:
            return None
        channel = self.client.get_partial_messageable(task.channel_id, guild_id=task.guild_id)
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
        channel = self.client.get_partial_messageable(task.channel_id, guild_id=task.guild_id)
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
            user = await self.client.fetch_user(task.user_id)
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

    async def show_progress(self, task: Task, elapsed: float, expected: Expectation | None) -> None:
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

    async def announce_refund(self, task: Task, reason: str, balance: int) -> None:
        """Show a refunded task's card as ended and tell its requester in the channel."""
        await self._update_card(task.id)
        text = texts.refunded(
            user_id=task.user_id,
            task_id=task.id,
            reason=quote(reason, 300),
            cost=task.cost,
            balance=balance,
        )
        channel = self.client.get_partial_messageable(task.channel_id, guild_id=task.guild_id)
        try:
            await channel.send(text, allowed_mentions=requester_only(task.user_id))
        except discord.HTTPException:
            log.info("Could not announce the refund of task %s in its channel", task.id)

    async def _update_card(self, task_id: str, *, progress: str | None = None) -> None:
        task = await task_store.get(self.db, task_id)
        if task is None or task.card_message_id is None:
            return
        if task.state.finished:
            self._progress_shown.pop(task.id, None)
            self._progress_waiting.pop(task.id, None)
        # The bot's own token, not the interaction's: renders outlive its 15 minutes.
        channel = self.client.get_partial_messageable(task.channel_id, guild_id=task.guild_id)
        try:
            await channel.get_partial_message(task.card_message_id).edit(
                embed=task_card(task, progress=progress),
                allowed_mentions=NO_MENTIONS,
            )
        except discord.HTTPException:
            log.info("Could not update the card of task %s", task.id)
