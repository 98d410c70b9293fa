"""Buttons under a finished clip: reroll, longer or with-sound variants, delete.

They are `DynamicItem`s whose custom ids carry the task id, registered in `setup_hook`, so a
click works the same on a clip posted before a restart. Reroll and variants spend the
requester's credits, so they ask for confirmation with the cost first; only the requester
may spend on them, and only the requester or an admin may delete the post.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import TYPE_CHECKING, Any, Literal, Self

import discord

from core import guards, texts
from core.errors import UserFacingError
from core.members import NO_MENTIONS, is_server_admin
from core.replies import answer_failure, send_private
from db import tasks as task_store
from db.tasks import Task
from provider.models import DURATIONS, GenerationRequest

if TYPE_CHECKING:
    from core.bot import VideoBot

log = logging.getLogger(__name__)

TASK_ID = r"(?P<task_id>[0-9a-f]{6,20})"
CONFIRM_SECONDS = 120

Change = Literal["reroll", "long", "sound"]


def variant_of(task: Task, change: Change) -> GenerationRequest:
    """Return the request for a new take of `task`, changed as asked."""
    return GenerationRequest(
        prompt=task.prompt,
        aspect_ratio=task.aspect_ratio,
        duration=max(DURATIONS) if change == "long" else task.duration,
        sound=True if change == "sound" else task.sound,
        image_urls=task.image_urls,
    )


def result_view(task: Task, *, in_dm: bool = False) -> discord.ui.View:
    """Return the buttons that go under the task's clip.

    A clip sent by DM gets only Delete: new takes are charged to the server, so they start
    from the server's channel.
    """
    view = discord.ui.View(timeout=None)
    if in_dm:
        view.add_item(DeleteButton(task.id))
        return view
    view.add_item(RerollButton(task.id, variant_of(task, "reroll").credits))
    if task.duration < max(DURATIONS):
        view.add_item(VariantButton(task.id, "long", variant_of(task, "long").credits))
    if not task.sound:
        view.add_item(VariantButton(task.id, "sound", variant_of(task, "sound").credits))
    view.add_item(DeleteButton(task.id))
    return view


async def _task_for(interaction: discord.Interaction[VideoBot], task_id: str) -> Task | None:
    task = await task_store.get(interaction.client.db, task_id)
    if interaction.guild_id is None:
        # A DM holds only its recipient's own clips.
        foreign = task is not None and task.user_id != interaction.user.id
    else:
        foreign = task is not None and task.guild_id != interaction.guild_id
    if task is None or foreign:
        await send_private(interaction, texts.CLIP_UNKNOWN)
        return None
    return task


async def offer(interaction: discord.Interaction[VideoBot], task_id: str, change: Change) -> None:
    """Ask the requester to confirm a new, charged take of their clip."""
    task = await _task_for(interaction, task_id)
    if task is None:
        return
    if interaction.user.id != task.user_id:
        await send_private(interaction, texts.takes_only_by_requester(user_id=task.user_id))
        return
    request = variant_of(task, change)
    cost = request.credits
    await interaction.response.send_message(
        texts.offer_take(take=texts.TAKES[change], task_id=task.id, cost=cost),
        view=ConfirmTake(task, change, interaction),
        ephemeral=True,
        allowed_mentions=NO_MENTIONS,
    )


class ConfirmTake(discord.ui.View):
    """The requester's yes or no to a charged new take."""

    def __init__(self, task: Task, change: Change, origin: discord.Interaction[VideoBot]) -> None:
        super().__init__(timeout=CONFIRM_SECONDS)
        self.task = task
        self.change = change
        self.origin = origin
        self.answered = False

    async def on_timeout(self) -> None:
        """Take the buttons away once the offer lapses; nothing was charged."""
        if not self.answered:
            with contextlib.suppress(discord.HTTPException):
                await self.origin.edit_original_response(
                    content=texts.TAKE_EXPIRED, view=None, allowed_mentions=NO_MENTIONS
                )

    async def on_error(  # type: ignore[override]
        self,
        interaction: discord.Interaction[VideoBot],
        error: Exception,
        item: discord.ui.Item[ConfirmTake],
    ) -> None:
        """Answer the click even when starting the take failed unexpectedly."""
        await answer_failure(interaction, error)

    async def interaction_check(self, interaction: discord.Interaction[VideoBot]) -> bool:  # type: ignore[override]
        """Only the requester answers (the message is private to them anyway), in a server."""
        return interaction.user.id == self.task.user_id and guards.refusal(interaction) is None

    @discord.ui.button(label=texts.CONFIRM, style=discord.ButtonStyle.primary, emoji="✅")
    async def confirm(
        self, interaction: discord.Interaction[VideoBot], button: discord.ui.Button[ConfirmTake]
    ) -> None:
        """Charge and start the new take; its card is posted in the channel."""
        if not await self._answer(interaction, texts.TAKE_STARTING):
            return
        try:
            await interaction.client.starter.start(interaction, variant_of(self.task, self.change))
        except UserFacingError as refusal:
            await interaction.edit_original_response(
                content=refusal.message, allowed_mentions=NO_MENTIONS
            )

    @discord.ui.button(label=texts.CANCEL, style=discord.ButtonStyle.secondary)
    async def cancel(
        self, interaction: discord.Interaction[VideoBot], button: discord.ui.Button[ConfirmTake]
    ) -> None:
        """Drop the offer; nothing is charged."""
        await self._answer(interaction, texts.TAKE_CANCELLED)

    async def _answer(self, interaction: discord.Interaction[VideoBot], text: str) -> bool:
        """Take the offer's one answer, replacing its buttons with `text`; False if taken.

        Two clicks can arrive together: only the first may start (and charge for) a take.
        The view stays registered until it times out, so a late second click is told so at
        once instead of finding no handler.
        """
        if self.answered:
            await send_private(interaction, texts.TAKE_ALREADY_ANSWERED)
            return False
        self.answered = True
        await interaction.response.edit_message(
            content=text, view=None, allowed_mentions=NO_MENTIONS
        )
        return True


class TaskButton:
    """What the buttons under a clip share: rebuilt from their custom id, errors answered."""

    # What a click from a DM is told; None: the button works there (a DM clip has Delete).
    in_dm_refusal: str | None = texts.TAKES_ONLY_IN_SERVER

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        """Rebuild the button from a click (after a restart too): the id says everything."""
        return cls(**match.groupdict())

    async def callback(self, interaction: discord.Interaction[Any]) -> Any:
        """Act on the click, and answer it privately even if acting fails."""
        try:
            if interaction.guild_id is None:
                refusal = self.in_dm_refusal
            else:
                refusal = guards.refusal(interaction)
            if refusal is not None:
                await send_private(interaction, refusal)
                return
            await self.act(interaction)
        except Exception as error:
            await answer_failure(interaction, error)

    async def act(self, interaction: discord.Interaction[VideoBot]) -> None:
        """Do what the button is for."""
        raise NotImplementedError


class RerollButton(
    TaskButton,
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=rf"video:reroll:{TASK_ID}",
):
    """🔄 A new take with the same settings."""

    def __init__(self, task_id: str, cost: int | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                label=texts.REROLL if cost is None else texts.priced(label=texts.REROLL, cost=cost),
                emoji="🔄",
                style=discord.ButtonStyle.secondary,
                custom_id=f"video:reroll:{task_id}",
            )
        )
        self.task_id = task_id

    async def act(self, interaction: discord.Interaction[VideoBot]) -> None:
        """Offer the reroll with its cost."""
        await offer(interaction, self.task_id, "reroll")


class VariantButton(
    TaskButton,
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=rf"video:vary:(?P<change>long|sound):{TASK_ID}",
):
    """A 10 s or with-sound version of the clip."""

    def __init__(self, task_id: str, change: Literal["long", "sound"], cost: int | None = None):
        label = texts.LONGER if change == "long" else texts.WITH_SOUND
        super().__init__(
            discord.ui.Button(
                label=label if cost is None else texts.priced(label=label, cost=cost),
                emoji="⏱️" if change == "long" else "🔊",
                style=discord.ButtonStyle.secondary,
                custom_id=f"video:vary:{change}:{task_id}",
            )
        )
        self.task_id = task_id
        self.change: Literal["long", "sound"] = change

    async def act(self, interaction: discord.Interaction[VideoBot]) -> None:
        """Offer the variant with its cost."""
        await offer(interaction, self.task_id, self.change)


class DeleteButton(
    TaskButton,
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=rf"video:delete:{TASK_ID}",
):
    """🗑️ Remove the post (the requester or an admin)."""

    in_dm_refusal = None

    def __init__(self, task_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=texts.DELETE,
                emoji="🗑️",
                style=discord.ButtonStyle.danger,
                custom_id=f"video:delete:{task_id}",
            )
        )
        self.task_id = task_id

    async def act(self, interaction: discord.Interaction[VideoBot]) -> None:
        """Delete the message carrying the clip, if the clicker may."""
        task = await _task_for(interaction, self.task_id)
        if task is None:
            return
        # In a DM nobody is a server admin: only the requester, whose DM it is.
        admin = interaction.guild_id is not None and is_server_admin(interaction)
        if interaction.user.id != task.user_id and not admin:
            await send_private(interaction, texts.delete_only_by_requester(user_id=task.user_id))
            return
        clicked = interaction.message
        message: discord.Message | discord.PartialMessage | None = clicked
        if clicked is None or clicked.flags.ephemeral or clicked.id != task.delivery_message_id:
            # Clicked under /video status (a private copy): delete the post it stands for.
            message = _recorded_post(interaction.client, task)
        if message is None:
            await send_private(interaction, texts.NO_POST_TO_DELETE)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            await message.delete()
        except discord.NotFound:
            await send_private(interaction, texts.ALREADY_DELETED)
            return
        except discord.HTTPException as error:
            log.info("Could not delete the post of task %s: %s", task.id, error)
            await send_private(interaction, texts.DELETE_REFUSED)
            return
        log.info("User %d deleted the post of task %s", interaction.user.id, task.id)
        await send_private(interaction, texts.deleted(task_id=task.id))


def _recorded_post(bot: VideoBot, task: Task) -> discord.PartialMessage | None:
    """Return the message the clip was posted as, from what the database recorded."""
    if task.delivery_message_id is None or task.delivery_channel_id is None:
        return None
    channel = bot.get_partial_messageable(task.delivery_channel_id)
    return channel.get_partial_message(task.delivery_message_id)


DYNAMIC_ITEMS = (RerollButton, VariantButton, DeleteButton)


def is_clip_button(custom_id: str) -> bool:
    """Whether `custom_id` is one of the buttons above (a crafted or retired one is not)."""
    return any(item.__discord_ui_compiled_template__.fullmatch(custom_id) for item in DYNAMIC_ITEMS)
