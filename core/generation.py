"""Starting a clip: the one path every way in (command, button, context menu) goes through.

The input is already checked. In one transaction the budget rules are applied, the credits
taken and the task recorded; then the public card is shown and the provider called. From
the charge on, anything that goes wrong before the provider has the task refunds at once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from core.cards import refill_text, task_card
from core.errors import UserFacingError
from core.members import NO_MENTIONS, member_role_ids
from db import budgets
from db import now as db_now
from db import tasks as task_store
from db.credits import NotEnoughCredits
from db.tasks import NewTask, Task, TaskState
from provider import errors as provider_errors
from provider.models import GenerationRequest, price

if TYPE_CHECKING:
    from core.bot import VideoBot

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


async def start(
    bot: VideoBot, interaction: discord.Interaction[VideoBot], request: GenerationRequest
) -> Task | None:
    """Charge for `request`, show its card and submit it; return the task (None if refused late).

    Raises UserFacingError, before anything is charged, when a budget rule says no.
    """
    assert interaction.guild_id is not None and interaction.channel_id is not None
    cost = price(request.duration, request.sound)
    try:
        task, balance_left = await task_store.reserve(
            bot.db,
            NewTask(
                guild_id=interaction.guild_id,
                channel_id=interaction.channel_id,
                user_id=interaction.user.id,
                prompt=request.prompt,
                aspect_ratio=request.aspect_ratio,
                duration=request.duration,
                sound=request.sound,
                image_urls=request.image_urls,
                cost=cost,
                upload_limit=interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT,
            ),
            starting_credits=bot.settings.default_credits,
            roles=member_role_ids(interaction.user),
            max_credits_per_day=bot.settings.max_credits_per_day,
        )
    except NotEnoughCredits as refusal:
        allowance = await budgets.member_allowance(
            bot.db,
            interaction.guild_id,
            member_role_ids(interaction.user),
            bot.settings.default_credits,
        )
        raise UserFacingError(
            f"This clip costs **{cost}** credits and you have **{refusal.balance}**. "
            "Pick a shorter or silent preset, or ask a server admin for more credits. "
            + refill_text(allowance, db_now())
        ) from None
    except budgets.BudgetRefusal as refusal:
        raise UserFacingError(budget_refusal(bot, refusal)) from None

    # From here on the member has paid: whatever goes wrong before the provider has the
    # task must give the credits back now, not at the next restart.
    bot.renderer.submitting.add(task.id)
    state = TaskState.REJECTED  # until the provider is called, it has heard of nothing
    try:
        await _show_card(bot, interaction, task, balance_left)
        state = TaskState.UNCERTAIN
        await _submit(bot, interaction, task, request, balance_left)
    except Exception:
        balance = await task_store.finish_with_refund(
            bot.db,
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
        bot.renderer.submitting.discard(task.id)
    return task


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


def budget_refusal(bot: VideoBot, refusal: budgets.BudgetRefusal) -> str:
    """Say why a budget rule refused a generation and what the member can do."""
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
    if bot.ceiling_warned_on != day:
        bot.ceiling_warned_on = day
        log.warning(
            "MAX_CREDITS_PER_DAY (%d) reached: every server is refused until 00:00 UTC",
            refusal.ceiling,
        )
    return (
        "The bot has reached its spending limit for today across all servers. "
        "Try again after 00:00 UTC. Nothing was charged."
    )


async def _show_card(
    bot: VideoBot, interaction: discord.Interaction[VideoBot], task: Task, balance_left: int
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
        await task_store.set_card(bot.db, task.id, callback.message_id)


async def _submit(
    bot: VideoBot,
    interaction: discord.Interaction[VideoBot],
    task: Task,
    request: GenerationRequest,
    balance_left: int,
) -> None:
    try:
        provider_task_id = await bot.provider.generate(request)
    except provider_errors.ProviderError as error:
        state, message = refusal_for(error)
        log.info("Submission of task %s failed: %s", task.id, error)
        balance = await task_store.finish_with_refund(
            bot.db, task.id, state, message, allowed_from=(TaskState.SUBMITTING,)
        )
        await _edit_card(bot, interaction, task.id, balance)
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
    await _edit_card(bot, interaction, task.id, balance_left)
    bot.renderer.wake()


async def _edit_card(
    bot: VideoBot, interaction: discord.Interaction[VideoBot], task_id: str, balance: int | None
) -> None:
    task = await task_store.get(bot.db, task_id)
    if task is None:
        return
    try:
        await interaction.edit_original_response(
            embed=task_card(task, balance_left=balance), allowed_mentions=NO_MENTIONS
        )
    except discord.HTTPException:
        log.info("Could not update the card of task %s", task_id)
