"""`/video`: what every member uses — generate, status, balance, history."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from core.bot import NO_MENTIONS, member_role_ids
from core.cards import prices_text, quote, refill_text, status_line, task_card
from core.errors import UserFacingError
from core.validation import check_image_attachment, check_image_url, clean_prompt
from db import budgets, credits
from db import now as db_now
from db import tasks as task_store
from db.credits import NotEnoughCredits
from db.tasks import NewTask, Task, TaskState
from provider import errors as provider_errors
from provider.models import GenerationRequest, price

if TYPE_CHECKING:
    from core.bot import VideoBot

log = logging.getLogger(__name__)

HISTORY_PAGE_SIZE = 10
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


def is_server_admin(interaction: discord.Interaction[VideoBot]) -> bool:
    """Whether the member may see and change everything in this server."""
    return interaction.permissions.manage_guild


def refusal_for(error: provider_errors.ProviderError) -> tuple[TaskState, str]:
    """Turn a failed submission into the refunding state and what to tell the member."""
    if isinstance(error, provider_errors.ProviderOutOfCredits):
        return TaskState.REJECTED, (
            "The video service is out of credits right now, so nothing was started. "
            "The bot's operator has been told; try again later."
        )
    if isinstance(error, provider_errors.ProviderAuthError):
        log.error("The provider refused SEEDANCE_API_KEY (HTTP 401): fix the key in .env")
        return TaskState.REJECTED, (
            "The bot is not set up correctly (its video service key was refused). "
            "A server admin should tell the bot's operator."
        )
    if isinstance(error, provider_errors.ProviderRejected):
        return TaskState.REJECTED, f"The video service refused this request: {error.message}"
    if _may_have_reached_the_provider(error):
        log.warning(
            "A submission's answer was lost (%s): the provider may have started, and charged "
            "for, a task we will never see",
            error,
        )
        return TaskState.UNCERTAIN, (
            "The video service did not answer in time. Your credits are back; try again."
        )
    return TaskState.REJECTED, (
        "The video service is unavailable at the moment. Your credits are back; try again shortly."
    )


def _may_have_reached_the_provider(error: provider_errors.ProviderError) -> bool:
    """Whether the provider may have created the task although we got no usable answer."""
    if isinstance(error, provider_errors.ProviderTimeout | provider_errors.ProviderBadResponse):
        return True
    return isinstance(error, provider_errors.ProviderUnavailable) and error.request_sent


@app_commands.guild_only()
class Video(commands.GroupCog, group_name="video", group_description="Make AI video clips"):
    """Commands every member can use."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        super().__init__()

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
        request = GenerationRequest(
            prompt=text,
            aspect_ratio=aspect_ratio,
            duration=duration,
            sound=sound,
            image_urls=tuple(image_urls),
        )
        cost = price(duration, sound)
        try:
            task, balance_left = await task_store.reserve(
                self.bot.db,
                NewTask(
                    guild_id=interaction.guild_id,
                    channel_id=interaction.channel_id,
                    user_id=interaction.user.id,
                    prompt=text,
                    aspect_ratio=aspect_ratio,
                    duration=duration,
                    sound=sound,
                    image_urls=tuple(image_urls),
                    cost=cost,
                    upload_limit=interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT,
                ),
                starting_credits=self.bot.settings.default_credits,
                roles=member_role_ids(interaction.user),
                max_credits_per_day=self.bot.settings.max_credits_per_day,
            )
        except NotEnoughCredits as refusal:
            allowance = await budgets.member_allowance(
                self.bot.db,
                interaction.guild_id,
                member_role_ids(interaction.user),
                self.bot.settings.default_credits,
            )
            raise UserFacingError(
                f"This clip costs **{cost}** credits and you have **{refusal.balance}**. "
                "Pick a shorter or silent preset, or ask a server admin for more credits. "
                + refill_text(allowance, db_now())
            ) from None
        except budgets.BudgetRefusal as refusal:
            raise UserFacingError(self._budget_refusal(refusal)) from None

        # From here on the member has paid: whatever goes wrong before the provider has the
        # task must give the credits back now, not at the next restart.
        self.bot.renderer.submitting.add(task.id)
        state = TaskState.REJECTED  # until the provider is called, it has heard of nothing
        try:
            await self._show_card(interaction, task, balance_left)
            state = TaskState.UNCERTAIN
            await self._submit(interaction, task, request, balance_left)
        except Exception:
            balance = await task_store.finish_with_refund(
                self.bot.db,
                task.id,
                state,
                "Something went wrong while starting this clip.",
                allowed_from=(TaskState.SUBMITTING,),
            )
            if balance is None:
                raise  # the task had already left `submitting`; it goes on without us
            log.exception("Starting task %s failed; its credits were refunded", task.id)
            raise UserFacingError(
                f"Something went wrong while starting your clip. Your {task.cost} credits "
                f"are back (balance: {balance}); try again."
            ) from None
        finally:
            self.bot.renderer.submitting.discard(task.id)

    def _budget_refusal(self, refusal: budgets.BudgetRefusal) -> str:
        if isinstance(refusal, budgets.TooManyActive):
            return (
                f"You already have {refusal.limit} {'clip' if refusal.limit == 1 else 'clips'} "
                "being made, the most this server allows at once. Wait for one to be posted, "
                "then try again."
            )
        if isinstance(refusal, budgets.ServerCapReached):
            return (
                f"This server has used its budget of {refusal.cap} credits for this "
                f"{refusal.period}. Generation opens again on "
                f"{budgets.describe_day(refusal.resets_at)} (00:00 UTC), or a server admin "
                "can raise the cap (`/video-admin cap`). Nothing was charged."
            )
        assert isinstance(refusal, budgets.OperatorCeilingReached)
        day = refusal.resets_at.date()
        if self.bot.ceiling_warned_on != day:
            self.bot.ceiling_warned_on = day
            log.warning(
                "MAX_CREDITS_PER_DAY (%d) reached: every server is refused until 00:00 UTC",
                refusal.ceiling,
            )
        return (
            "The bot has reached its spending limit for today across all servers. "
            "Try again after 00:00 UTC. Nothing was charged."
        )

    async def _show_card(
        self, interaction: discord.Interaction[VideoBot], task: Task, balance_left: int
    ) -> None:
        try:
            callback = await interaction.response.send_message(
                embed=task_card(task, balance_left=balance_left), allowed_mentions=NO_MENTIONS
            )
        except discord.HTTPException:
            # Too late to answer (or Discord refused): the task goes on and the clip
            # still reaches the channel; /video status shows it.
            log.warning("Could not show the card of task %s", task.id, exc_info=True)
            return
        if callback.message_id is not None:
            await task_store.set_card(self.bot.db, task.id, callback.message_id)

    async def _submit(
        self,
        interaction: discord.Interaction[VideoBot],
        task: Task,
        request: GenerationRequest,
        balance_left: int,
    ) -> None:
        bot = self.bot
        try:
            provider_task_id = await bot.provider.generate(request)
        except provider_errors.ProviderError as error:
            state, message = refusal_for(error)
            log.info("Submission of task %s failed: %s", task.id, error)
            balance = await task_store.finish_with_refund(
                bot.db, task.id, state, message, allowed_from=(TaskState.SUBMITTING,)
            )
            await self._edit_card(interaction, task.id, balance)
            await interaction.followup.send(message, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return
        first_poll = bot.renderer.clock() + bot.settings.poll_interval_seconds
        if not await task_store.mark_rendering(
            bot.db, task.id, provider_task_id, next_poll_at=first_poll
        ):
            # Only the stranded-task sweep can get here first, after it refunded the task.
            log.warning(
                "Provider task %s for task %s arrived after the task was refunded; "
                "it is an orphan the provider may charge for",
                provider_task_id,
                task.id,
            )
            return
        log.info("Task %s submitted as provider task %s", task.id, provider_task_id)
        await self._edit_card(interaction, task.id, balance_left)
        bot.renderer.wake()

    async def _edit_card(
        self, interaction: discord.Interaction[VideoBot], task_id: str, balance: int | None
    ) -> None:
        task = await task_store.get(self.bot.db, task_id)
        if task is None:
            return
        try:
            await interaction.edit_original_response(
                embed=task_card(task, balance_left=balance), allowed_mentions=NO_MENTIONS
            )
        except discord.HTTPException:
            log.info("Could not update the card of task %s", task_id)

    @app_commands.command()
    @app_commands.describe(task_id="The task id shown on the task card")
    async def status(self, interaction: discord.Interaction[VideoBot], task_id: str) -> None:
        """Show a task's state, settings, cost and clip."""
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        task = await self._visible_task(interaction, task_id.strip())
        await interaction.followup.send(
            embed=task_card(task), ephemeral=True, allowed_mentions=NO_MENTIONS
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
            raise UserFacingError(
                f"You have no task `{quote(task_id, 64)}` in this server. "
                "Pick one from the list as you type, or see `/video history`."
            )
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
                name=f"{task.id} · {task.state.value} · {task.prompt}"[:100], value=task.id
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
        left = await credits.balance(
            self.bot.db, interaction.guild_id, interaction.user.id, default, roles
        )
        allowance = await budgets.member_allowance(
            self.bot.db, interaction.guild_id, roles, default
        )
        embed = discord.Embed(
            title="Your credits",
            description=f"You have **{left}** credits in this server.",
            colour=discord.Colour.blurple(),
        )
        embed.add_field(name="Prices", value=prices_text(), inline=False)
        embed.add_field(name="Refill", value=refill_text(allowance, db_now()), inline=False)
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command()
    async def history(self, interaction: discord.Interaction[VideoBot]) -> None:
        """List your recent tasks, newest first."""
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        view = HistoryView(self.bot, interaction.guild_id, interaction.user.id)
        embed = await view.render()
        await interaction.followup.send(
            embed=embed, view=view, ephemeral=True, allowed_mentions=NO_MENTIONS
        )


class HistoryView(discord.ui.View):
    """Pages through a member's tasks, ten at a time."""

    def __init__(self, bot: VideoBot, guild_id: int, user_id: int) -> None:
        super().__init__(timeout=300)
        self.bot = bot
        self.guild_id = guild_id
        self.user_id = user_id
        self.page = 0
        self.pages = 1

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
        embed = discord.Embed(title="Your recent tasks", colour=discord.Colour.blurple())
        embed.description = (
            "\n".join(status_line(task) for task in found)
            if found
            else "No tasks yet. Start one with `/video generate`."
        )
        embed.set_footer(text=f"Page {self.page + 1} of {self.pages} · {total} tasks")
        self.previous.disabled = self.page == 0
        self.next.disabled = self.page >= self.pages - 1
        return embed

    async def interaction_check(self, interaction: discord.Interaction[VideoBot]) -> bool:  # type: ignore[override]
        """Let only the member whose history it is turn the pages."""
        return interaction.user.id == self.user_id

    @discord.ui.button(label="Newer", emoji="◀️", style=discord.ButtonStyle.secondary)
    async def previous(
        self, interaction: discord.Interaction[VideoBot], button: discord.ui.Button[HistoryView]
    ) -> None:
        """Show the page before."""
        self.page = max(0, self.page - 1)
        await interaction.response.edit_message(
            embed=await self.render(), view=self, allowed_mentions=NO_MENTIONS
        )

    @discord.ui.button(label="Older", emoji="▶️", style=discord.ButtonStyle.secondary)
    async def next(
        self, interaction: discord.Interaction[VideoBot], button: discord.ui.Button[HistoryView]
    ) -> None:
        """Show the page after."""
        self.page += 1
        await interaction.response.edit_message(
            embed=await self.render(), view=self, allowed_mentions=NO_MENTIONS
        )


async def setup(bot: VideoBot) -> None:
    """Add the /video commands."""
    await bot.add_cog(Video(bot))
