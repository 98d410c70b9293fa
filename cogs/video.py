"""`/video`: what every member uses — generate, status, balance, history."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from core import guards, texts
from core.cards import balance_card, history_card, refill_text, task_card
from core.clip_buttons import DYNAMIC_ITEMS, is_clip_button, result_view
from core.embeds import quote
from core.errors import UserFacingError
from core.members import NO_MENTIONS, is_server_admin, member_role_ids
from core.replies import answer_failure, send_private
from core.validation import (
    IMAGE_TYPES,
    check_image_attachment,
    check_image_url,
    clean_prompt,
    media_type,
)
from db import credits
from db import now as db_now
from db import tasks as task_store
from db.states import TaskState
from db.tasks import Task
from provider.models import DURATIONS, MAX_PROMPT_LENGTH, GenerationRequest

if TYPE_CHECKING:
    from core.bot import VideoBot

log = logging.getLogger(__name__)

HISTORY_PAGE_SIZE = 10
# A live menu answers a click at once; one still unanswered after this long has no handler.
EXPIRED_MENU_GRACE_SECONDS = 2.0


# Guild install only: a user-installed copy would answer in servers the bot is not in.
@app_commands.allowed_installs(guilds=True, users=False)
@app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
class Video(commands.GroupCog, group_name="video", group_description="Make AI video clips"):
    """Commands every member can use."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        super().__init__()
        # Context menus cannot live in a group; this one is added to the tree directly.
        self.animate_menu = app_commands.ContextMenu(
            name="Animate image",
            callback=self.animate_image,
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=False, private_channel=False
            ),
            allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
        )

    async def cog_load(self) -> None:
        """Add the message context menu and the buttons under clips."""
        self.bot.tree.add_command(self.animate_menu)
        # Buttons under clips posted before this start keep working.
        self.bot.add_dynamic_items(*DYNAMIC_ITEMS)

    async def cog_unload(self) -> None:
        """Remove the message context menu and the clip buttons."""
        self.bot.tree.remove_command(self.animate_menu.name, type=self.animate_menu.type)
        self.bot.remove_dynamic_items(*DYNAMIC_ITEMS)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[VideoBot]) -> None:
        """Answer clicks on buttons whose menu is gone (it timed out, or the bot restarted).

        Result buttons (`video:…`) always find their handler; a pager or a confirmation
        lives in memory only, and a click on one nobody handles would otherwise show the
        member "This interaction failed".
        """
        if interaction.type is not discord.InteractionType.component:
            return
        custom_id = str(interaction.data.get("custom_id", "")) if interaction.data else ""
        if custom_id.startswith("video:"):
            if not is_clip_button(custom_id):
                # An id from a retired button, or a crafted one: no DynamicItem will answer.
                await send_private(interaction, texts.BUTTON_UNKNOWN)
            return
        await asyncio.sleep(EXPIRED_MENU_GRACE_SECONDS)
        if not interaction.response.is_done():
            with contextlib.suppress(discord.HTTPException, discord.InteractionResponded):
                await interaction.response.send_message(
                    texts.MENU_EXPIRED, ephemeral=True, allowed_mentions=NO_MENTIONS
                )

    async def animate_image(
        self, interaction: discord.Interaction[VideoBot], message: discord.Message
    ) -> None:
        """Ask for a prompt, then animate the first image attached to the message."""
        image = next(
            (a for a in message.attachments if media_type(a) in IMAGE_TYPES),
            None,
        )
        if image is None:
            raise UserFacingError(texts.NO_IMAGE_IN_MESSAGE)
        url = check_image_attachment(image)
        await interaction.response.send_modal(AnimateModal(self.bot, url))

    @app_commands.command()
    @app_commands.describe(setting="on: a DM when each of your clips is posted; off: none")
    async def notify(
        self, interaction: discord.Interaction[VideoBot], setting: Literal["on", "off"]
    ) -> None:
        """Get a direct message when your clips are ready."""
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        await credits.set_notify(
            self.bot.db,
            interaction.guild_id,
            interaction.user.id,
            setting == "on",
            self.bot.settings.default_credits,
            member_role_ids(interaction.user),
        )
        text = texts.NOTIFY_ON if setting == "on" else texts.NOTIFY_OFF
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command()
    @app_commands.describe(
        prompt="What the clip shows (up to 1000 characters)",
        aspect_ratio="The clip's shape (ignored when you give an image)",
        duration="How long the clip is",
        sound="Add synchronized sound: dialogue, effects, music (costs more)",
        image="A picture to animate (PNG, JPEG, WebP or GIF)",
        image_url="A web address of a picture to animate",
    )
    @app_commands.choices(
        duration=[
            app_commands.Choice(name="5 seconds", value=5),
            app_commands.Choice(name="10 seconds", value=10),
        ]
    )
    async def generate(
        self,
        interaction: discord.Interaction[VideoBot],
        prompt: app_commands.Range[str, 1, 1000],
        aspect_ratio: Literal["16:9", "9:16", "1:1"] = "16:9",
        duration: int = 5,
        sound: bool = False,
        image: discord.Attachment | None = None,
        image_url: str | None = None,
    ) -> None:
        """Make a video clip from a prompt (and optionally an image)."""
        assert interaction.guild_id is not None and interaction.channel_id is not None
        # Every check that can refuse runs before the first answer, so refusals stay
        # private and nothing is charged; the one database transaction takes milliseconds.
        text = clean_prompt(prompt)
        image_urls: list[str] = []
        if image is not None:
            image_urls.append(check_image_attachment(image))
        if image_url is not None:
            image_urls.append(check_image_url(image_url))
        await self.bot.starter.start(
            interaction,
            GenerationRequest(
                prompt=text,
                aspect_ratio=aspect_ratio,
                duration=duration,
                sound=sound,
                image_urls=tuple(image_urls),
            ),
        )

    @app_commands.command()
    @app_commands.describe(task_id="The task id shown on the task card")
    async def status(self, interaction: discord.Interaction[VideoBot], task_id: str) -> None:
        """Show a task's state, settings, cost and clip."""
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        task = await self._visible_task(interaction, task_id.strip())
        await interaction.followup.send(
            embed=task_card(task),
            view=result_view(task) if task.state is TaskState.DONE else discord.utils.MISSING,
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    async def _visible_task(self, interaction: discord.Interaction[VideoBot], task_id: str) -> Task:
        task = None
        if 0 < len(task_id) <= 64:
            task = await task_store.get(self.bot.db, task_id)
        if (
            task is None
            or task.guild_id != interaction.guild_id
            or (task.user_id != interaction.user.id and not is_server_admin(interaction))
        ):
            # The same answer for unknown and foreign ids: it does not reveal whose it is.
            raise UserFacingError(texts.no_such_task(task_id=quote(task_id, 64)))
        return task

    @status.autocomplete("task_id")
    async def status_task_id(
        self, interaction: discord.Interaction[VideoBot], current: str
    ) -> list[app_commands.Choice[str]]:
        """Offer the caller's recent tasks (an admin's: the server's)."""
        if interaction.guild_id is None:
            return []
        owner = None if is_server_admin(interaction) else interaction.user.id
        found = await task_store.search(
            self.bot.db, interaction.guild_id, owner, current.strip()[:100], limit=25
        )
        return [
            app_commands.Choice(
                name=texts.task_choice(task_id=task.id, state=task.state.value, prompt=task.prompt),
                value=task.id,
            )
            for task in found
        ]

    @app_commands.command()
    async def balance(self, interaction: discord.Interaction[VideoBot]) -> None:
        """Show your credits and what each clip costs."""
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        roles = member_role_ids(interaction.user)
        default = self.bot.settings.default_credits
        left, allowance = await credits.standing(
            self.bot.db, interaction.guild_id, interaction.user.id, default, roles
        )
        embed = balance_card(credits=left, refill=refill_text(allowance, db_now()))
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command()
    async def history(self, interaction: discord.Interaction[VideoBot]) -> None:
        """List your recent tasks, newest first."""
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        view = HistoryView(self.bot, interaction.guild_id, interaction.user.id)
        embed = await view.render()
        view.message = await interaction.followup.send(
            embed=embed, view=view, ephemeral=True, allowed_mentions=NO_MENTIONS, wait=True
        )


class AnimateModal(discord.ui.Modal, title=texts.ANIMATE_TITLE):
    """What to make of the picture: the prompt, the length and whether to add sound."""

    prompt: discord.ui.TextInput[AnimateModal] = discord.ui.TextInput(
        label=texts.ANIMATE_PROMPT,
        style=discord.TextStyle.paragraph,
        max_length=MAX_PROMPT_LENGTH,
        placeholder=texts.ANIMATE_PROMPT_EXAMPLE,
    )
    duration: discord.ui.TextInput[AnimateModal] = discord.ui.TextInput(
        label=texts.ANIMATE_LENGTH, default="5", max_length=2
    )
    sound: discord.ui.TextInput[AnimateModal] = discord.ui.TextInput(
        label=texts.ANIMATE_SOUND, default=texts.ANIMATE_SOUND_DEFAULT, max_length=3
    )

    def __init__(self, bot: VideoBot, image_url: str) -> None:
        super().__init__(timeout=600)
        self.bot = bot
        self.image_url = image_url

    async def on_submit(self, interaction: discord.Interaction[VideoBot]) -> None:  # type: ignore[override]
        """Check the answers and start the clip, or say what to fix."""
        try:
            refusal = guards.refusal(interaction)
            if refusal is not None:
                raise UserFacingError(refusal)
            length = self.duration.value.strip().lower().rstrip("s")
            duration = next((d for d in DURATIONS if str(d) == length), None)
            sound = texts.ANIMATE_SOUND_ANSWERS.get(self.sound.value.strip().lower())
            if duration is None:
                raise UserFacingError(texts.ANIMATE_LENGTH_INVALID)
            if sound is None:
                raise UserFacingError(texts.ANIMATE_SOUND_INVALID)
            request = GenerationRequest(
                prompt=clean_prompt(self.prompt.value),
                aspect_ratio="16:9",  # the provider follows the image's shape
                duration=duration,
                sound=sound,
                image_urls=(self.image_url,),
            )
            await self.bot.starter.start(interaction, request)
        except UserFacingError as refusal:
            await send_private(interaction, refusal.message)

    async def on_error(  # type: ignore[override]
        self, interaction: discord.Interaction[VideoBot], error: Exception
    ) -> None:
        """Answer the form even when starting the clip failed unexpectedly."""
        await answer_failure(interaction, error)


class HistoryView(discord.ui.View):
    """Pages through a member's tasks, ten at a time."""

    def __init__(self, bot: VideoBot, guild_id: int, user_id: int) -> None:
        super().__init__(timeout=300)
        self.bot = bot
        self.guild_id = guild_id
        self.user_id = user_id
        self.page = 0
        self.pages = 1
        self.message: discord.WebhookMessage | None = None
        # Two clicks at once each turn one page and show it: none is skipped.
        self.turning = asyncio.Lock()

    async def on_timeout(self) -> None:
        """Take the buttons away, so nobody clicks one that can no longer answer."""
        if self.message is not None:
            with contextlib.suppress(discord.HTTPException):
                await self.message.edit(view=None)

    async def on_error(  # type: ignore[override]
        self,
        interaction: discord.Interaction[VideoBot],
        error: Exception,
        item: discord.ui.Item[HistoryView],
    ) -> None:
        """Answer the click even when turning the page failed."""
        await answer_failure(interaction, error)

    async def render(self) -> discord.Embed:
        """Return the embed for the current page and set the buttons."""
        db = self.bot.db
        total = await task_store.count_for_member(db, self.guild_id, self.user_id)
        self.pages = max(1, -(-total // HISTORY_PAGE_SIZE))
        self.page = min(self.page, self.pages - 1)
        found = await task_store.for_member(
            db,
            self.guild_id,
            self.user_id,
            limit=HISTORY_PAGE_SIZE,
            offset=self.page * HISTORY_PAGE_SIZE,
        )
        embed = history_card(found, page=self.page + 1, pages=self.pages, total=total)
        self.previous.disabled = self.page == 0
        self.next.disabled = self.page >= self.pages - 1
        return embed

    async def interaction_check(self, interaction: discord.Interaction[VideoBot]) -> bool:  # type: ignore[override]
        """Let only the member whose history it is turn the pages."""
        return interaction.user.id == self.user_id

    @discord.ui.button(label=texts.HISTORY_NEWER, emoji="◀️", style=discord.ButtonStyle.secondary)
    async def previous(
        self, interaction: discord.Interaction[VideoBot], button: discord.ui.Button[HistoryView]
    ) -> None:
        """Show the page before."""
        async with self.turning:
            self.page = max(0, self.page - 1)
            await interaction.response.edit_message(
                embed=await self.render(), view=self, allowed_mentions=NO_MENTIONS
            )

    @discord.ui.button(label=texts.HISTORY_OLDER, emoji="▶️", style=discord.ButtonStyle.secondary)
    async def next(
        self, interaction: discord.Interaction[VideoBot], button: discord.ui.Button[HistoryView]
    ) -> None:
        """Show the page after."""
        async with self.turning:
            self.page += 1
            await interaction.response.edit_message(
                embed=await self.render(), view=self, allowed_mentions=NO_MENTIONS
            )


async def setup(bot: VideoBot) -> None:
    """Add the /video commands."""
    await bot.add_cog(Video(bot))
