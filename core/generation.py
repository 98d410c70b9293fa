"""Starting a clip: the one path every way in (command, button, context menu) goes through.

The input is already checked. In one transaction the budget rules are applied, the credits
taken and the task recorded; then the public card is shown and the provider called. From
the charge on, anything that goes wrong before the provider has the task refunds at once.
"""

from __future__ import annotations

import logging
from datetime import date

import discord

from core import texts
from core.cards import refill_text, task_card
from core.claims import Claims
from core.errors import UserFacingError
from core.members import NO_MENTIONS, member_role_ids
from core.settings import Settings
from core.timetable import Timetable
from db import Database, budgets
from db import now as db_now
from db import tasks as task_store
from db.credits import NotEnoughCredits
from db.states import TaskState
from db.tasks import NewTask, Task
from provider import errors as provider_errors
from provider.client import GATEWAY_ERRORS, SeedanceClient
from provider.models import GenerationRequest

log = logging.getLogger(__name__)

# Discord's upload limit where nothing raises it: servers without boosts, and DMs.
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


class Starter:
    """Starts clips: charges, shows the card and submits, refunding whatever breaks first."""

    def __init__(
        self,
        db: Database,
        provider: SeedanceClient,
        settings: Settings,
        timetable: Timetable,
        claims: Claims,
    ) -> None:
        self.db = db
        self.provider = provider
        self.settings = settings
        self.timetable = timetable
        self.claims = claims
        # The UTC day the operator was last warned that MAX_CREDITS_PER_DAY was reached.
        self.ceiling_warned_on: date | None = None

    async def start(
        self, interaction: discord.Interaction[discord.Client], request: GenerationRequest
    ) -> None:
        """Charge for `request`, show its card and submit it.

        Raises UserFacingError, before anything is charged, when a budget rule says no.
        """
        assert interaction.guild_id is not None and interaction.channel_id is not None
        cost = request.credits
        roles = member_role_ids(interaction.user)
        try:
            task, balance_left = await task_store.reserve(
                self.db,
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
                owner=self.claims.owner,
                lease_until=self.claims.lease_until(),
                starting_credits=self.settings.default_credits,
                roles=roles,
                max_credits_per_day=self.settings.max_credits_per_day,
            )
        except NotEnoughCredits as refusal:
            allowance = await budgets.member_allowance(
                self.db, interaction.guild_id, roles, self.settings.default_credits
            )
            raise UserFacingError(
                texts.not_enough_credits(
                    cost=cost, balance=refusal.balance, refill=refill_text(allowance, db_now())
                )
            ) from None
        except budgets.BudgetRefusal as refusal:
            raise UserFacingError(self.budget_refusal(refusal)) from None

        # From here on the member has paid: whatever goes wrong before the provider has the
        # task must give the credits back now, not at the next restart. The lease taken with
        # the charge is renewed while the provider is asked, so no sweep takes it for cut off.
        self.claims.hold(task.id)
        state = TaskState.REJECTED  # until the provider is called, it has heard of nothing
        try:
            await self._show_card(interaction, task, balance_left)
            state = TaskState.UNCERTAIN
            await self._submit(interaction, task, request, balance_left)
        except Exception:
            balance = await task_store.finish_with_refund(
                self.db,
                task.id,
                state,
                texts.START_BROKE,
                owner=self.claims.owner,
                allowed_from=(TaskState.SUBMITTING,),
            )
            if balance is None:
                raise  # the task had already left `submitting`; it goes on without us
            log.exception("Starting task %s failed; its credits were refunded", task.id)
            raise UserFacingError(texts.start_failed(cost=task.cost, balance=balance)) from None
        finally:
            self.claims.drop(task.id)

    def budget_refusal(self, refusal: budgets.BudgetRefusal) -> str:
        """Say why a budget rule refused a generation and what the member can do."""
        if isinstance(refusal, budgets.TooManyActive):
            return texts.too_many_active(limit=refusal.limit)
        if isinstance(refusal, budgets.ServerCapReached):
            return texts.server_cap_reached(
                cap=refusal.cap,
                period=refusal.period,
                reopens=texts.calendar_day(refusal.resets_at),
            )
        assert isinstance(refusal, budgets.OperatorCeilingReached)
        day = refusal.resets_at.date()
        if self.ceiling_warned_on != day:
            self.ceiling_warned_on = day
            log.warning(
                "MAX_CREDITS_PER_DAY (%d) reached: every server is refused until 00:00 UTC",
                refusal.ceiling,
            )
        return texts.OPERATOR_CEILING_REACHED

    async def _show_card(
        self, interaction: discord.Interaction[discord.Client], task: Task, balance_left: int
    ) -> None:
        card = task_card(task, balance_left=balance_left)
        try:
            if interaction.response.is_done():
                # A button already answered (it took its confirmation's buttons away): the card
                # is a public follow-up of its own.
                message = await interaction.followup.send(
                    embed=card, wait=True, allowed_mentions=NO_MENTIONS
                )
                card_id: int | None = message.id
            else:
                callback = await interaction.response.send_message(
                    embed=card, allowed_mentions=NO_MENTIONS
                )
                card_id = callback.message_id
        except discord.HTTPException:
            # Too late to answer (or Discord refused): the task goes on and the clip
            # still reaches the channel; /video status shows it.
            log.warning("Could not show the card of task %s", task.id, exc_info=True)
            return
        if card_id is not None:
            await task_store.set_card(self.db, task.id, card_id)

    async def _submit(
        self,
        interaction: discord.Interaction[discord.Client],
        task: Task,
        request: GenerationRequest,
        balance_left: int,
    ) -> None:
        # Worked out before the provider hears of the task: once it has answered, nothing may
        # fail before the id it gave is recorded, or a task it bills for would be lost.
        first_poll_delay = await self.timetable.first_poll_delay(task.duration, task.sound)
        try:
            provider_task_id = await self.provider.generate(request)
        except provider_errors.ProviderError as error:
            state, message = refusal_for(error)
            log.info("Submission of task %s failed: %s", task.id, error)
            balance = await task_store.finish_with_refund(
                self.db,
                task.id,
                state,
                message,
                owner=self.claims.owner,
                allowed_from=(TaskState.SUBMITTING,),
            )
            await self._edit_card(interaction, task.id, balance)
            try:
                await interaction.followup.send(
                    message, ephemeral=True, allowed_mentions=NO_MENTIONS
                )
            except discord.HTTPException:
                # The refund stands; the card already says so and /video status shows why.
                log.info("Could not tell the member why task %s did not start", task.id)
            return
        first_poll = self.timetable.clock() + first_poll_delay
        if not await task_store.mark_rendering(
            self.db, task.id, provider_task_id, owner=self.claims.owner, next_poll_at=first_poll
        ):
            # Only a sweep for cut-off submissions can get here first, after this process
            # lost its lease (stalled past WORK_LEASE_SECONDS) and the task was refunded.
            log.warning(
                "Provider task %s for task %s arrived after the task was refunded; "
                "it is an orphan the provider may charge for",
                provider_task_id,
                task.id,
            )
            return
        log.info("Task %s submitted as provider task %s", task.id, provider_task_id)
        await self._edit_card(interaction, task.id, balance_left)
        self.timetable.wake()

    async def _edit_card(
        self,
        interaction: discord.Interaction[discord.Client],
        task_id: str,
        balance: int | None,
    ) -> None:
        task = await task_store.get(self.db, task_id)
        if task is None:
            return
        embed = task_card(task, balance_left=balance)
        try:
            if interaction.response.type is discord.InteractionResponseType.channel_message:
                await interaction.edit_original_response(embed=embed, allowed_mentions=NO_MENTIONS)
            elif task.card_message_id is not None:
                await interaction.followup.edit_message(
                    task.card_message_id, embed=embed, allowed_mentions=NO_MENTIONS
                )
        except discord.HTTPException:
            log.info("Could not update the card of task %s", task_id)


def refusal_for(error: provider_errors.ProviderError) -> tuple[TaskState, str]:
    """Turn a failed submission into the refunding state and what to tell the member."""
    if isinstance(error, provider_errors.ProviderOutOfCredits):
        return TaskState.REJECTED, texts.PROVIDER_OUT_OF_CREDITS
    if isinstance(error, provider_errors.ProviderAuthError):
        log.error("The provider refused SEEDANCE_API_KEY (HTTP 401): fix the key in .env")
        return TaskState.REJECTED, texts.PROVIDER_KEY_REFUSED
    if isinstance(error, provider_errors.ProviderRejected):
        return TaskState.REJECTED, texts.provider_refused(message=error.message)
    if _may_have_reached_the_provider(error):
        log.warning(
            "A submission's answer was lost (%s): the provider may have started, and charged "
            "for, a task we will never see",
            error,
        )
        return TaskState.UNCERTAIN, texts.PROVIDER_NO_ANSWER
    return TaskState.REJECTED, texts.PROVIDER_UNAVAILABLE


def _may_have_reached_the_provider(error: provider_errors.ProviderError) -> bool:
    """Whether the provider may have created the task although we got no usable answer."""
    if isinstance(error, provider_errors.ProviderTimeout | provider_errors.ProviderBadResponse):
        return True
    if isinstance(error, provider_errors.ProviderServerError):
        return error.status in GATEWAY_ERRORS  # a proxy may have passed it on
    return isinstance(error, provider_errors.ProviderUnavailable) and error.request_sent
