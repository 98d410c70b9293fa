"""`/video-admin`: what server admins use to control spending."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from core import ledger_export, texts
from core.cards import member_card, refill_text, usage_card
from core.embeds import quote
from core.errors import UserFacingError
from core.generation import DEFAULT_UPLOAD_LIMIT
from core.members import NO_MENTIONS, is_server_admin, member_role_ids
from core.validation import Amount, CalendarSpan, DayOrMonth
from db import budgets, credits, reports
from db import now as db_now
from db import tasks as task_store
from db.credits import NotEnoughCredits

if TYPE_CHECKING:
    from core.bot import VideoBot

log = logging.getLogger(__name__)

MAX_GRANT = 1_000_000
MAX_BUDGET = 100_000_000
MAX_CONCURRENT = 20


def require_admin(interaction: discord.Interaction[VideoBot]) -> bool:
    """Re-check Manage Server: a server can loosen the command's default permission."""
    if is_server_admin(interaction):
        return True
    raise app_commands.CheckFailure(texts.ADMINS_ONLY)


# Guild install only: a user-installed copy would answer in servers the bot is not in.
@app_commands.allowed_installs(guilds=True, users=False)
@app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
@app_commands.default_permissions(manage_guild=True)
class VideoAdmin(
    commands.GroupCog, group_name="video-admin", group_description="Control video credits"
):
    """Commands for server admins."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[VideoBot]) -> bool:  # type: ignore[override]
        """Refuse everyone without Manage Server, whatever the server's overrides say."""
        return require_admin(interaction)

    @app_commands.command()
    @app_commands.describe(
        member="Who gets (or loses) the credits",
        amount="Credits to add; negative to take away",
        reason="Why, for the ledger",
    )
    async def grant(
        self,
        interaction: discord.Interaction[VideoBot],
        member: discord.User,
        amount: app_commands.Transform[int, Amount(-MAX_GRANT, MAX_GRANT, texts.AMOUNT_GRANT)],
        reason: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        """Add credits to a member's balance, or take some away."""
        assert interaction.guild_id is not None
        if amount == 0:
            raise UserFacingError(texts.GRANT_ZERO)
        if member.bot:
            raise UserFacingError(texts.BOTS_HOLD_NO_CREDITS)
        await interaction.response.defer(ephemeral=True, thinking=True)
        note = reason.strip() if reason else None
        try:
            balance = await credits.grant(
                self.bot.db,
                interaction.guild_id,
                member.id,
                amount,
                actor_id=interaction.user.id,
                starting_credits=self.bot.settings.default_credits,
                note=note or None,
                roles=member_role_ids(member),
            )
        except NotEnoughCredits as refusal:
            raise UserFacingError(
                texts.cannot_take(member=member.mention, balance=refusal.balance)
            ) from None
        log.info(
            "Admin %d changed the credits of %d in server %d by %d",
            interaction.user.id,
            member.id,
            interaction.guild_id,
            amount,
        )
        text = texts.granted(amount=amount, member=member.mention, balance=balance)
        if note:
            text += texts.grant_reason(reason=quote(note, 200))
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command()
    @app_commands.describe(
        amount="Credits every member gets",
        period="How often the balance is raised back to it (none: once, on first use)",
    )
    async def allowance(
        self,
        interaction: discord.Interaction[VideoBot],
        amount: app_commands.Transform[int, Amount(0, MAX_BUDGET, texts.AMOUNT_ALLOWANCE)],
        period: Literal["day", "week", "month", "none"],
    ) -> None:
        """Set the credits every member gets per day, week or month."""
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        await budgets.set_allowance(
            self.bot.db, interaction.guild_id, amount, period, actor_id=interaction.user.id
        )
        rule = budgets.Allowance(amount, period)
        if period == "none":
            text = texts.allowance_once(amount=amount)
        else:
            text = texts.allowance_set(
                amount=amount, period=period, refill=refill_text(rule, db_now())
            )
        await self._reply(interaction, text)

    @app_commands.command(name="role-allowance")
    @app_commands.describe(
        role="Members holding this role get the allowance below instead",
        amount="Their allowance per the server's period; 0 removes it",
    )
    async def role_allowance(
        self,
        interaction: discord.Interaction[VideoBot],
        role: discord.Role,
        amount: app_commands.Transform[int, Amount(0, MAX_BUDGET, texts.AMOUNT_ROLE_ALLOWANCE)],
    ) -> None:
        """Give members with a role a different allowance (the highest that applies wins)."""
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        old = await budgets.set_role_allowance(
            self.bot.db, interaction.guild_id, role.id, amount, actor_id=interaction.user.id
        )
        if amount == 0:
            text = (
                texts.role_allowance_removed(role=role.mention)
                if old is not None
                else texts.role_allowance_absent(role=role.mention)
            )
        else:
            rules = await budgets.budget(self.bot.db, interaction.guild_id)
            text = texts.role_allowance_set(
                role=role.mention, amount=amount, period=rules.allowance_period
            )
        await self._reply(interaction, text)

    @app_commands.command()
    @app_commands.describe(
        amount="The most credits the whole server may spend per period (0: none at all)",
        period="The calendar period (UTC) the cap counts over; none removes the cap",
    )
    async def cap(
        self,
        interaction: discord.Interaction[VideoBot],
        amount: app_commands.Transform[int, Amount(0, MAX_BUDGET, texts.AMOUNT_CAP)],
        period: Literal["day", "week", "month", "none"],
    ) -> None:
        """Limit what the whole server may spend per day, week or month."""
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        if period == "none":
            await budgets.set_cap(
                self.bot.db, interaction.guild_id, None, "month", actor_id=interaction.user.id
            )
            await self._reply(interaction, texts.CAP_REMOVED)
            return
        # 0 is a real cap: an admin who types it means "spend nothing", not "no limit".
        await budgets.set_cap(
            self.bot.db, interaction.guild_id, amount, period, actor_id=interaction.user.id
        )
        spent = await self._spent_this(interaction.guild_id, period)
        await self._reply(
            interaction,
            texts.cap_set(amount=amount, period=period, spent=spent, left=max(0, amount - spent)),
        )

    @app_commands.command()
    @app_commands.describe(
        max_concurrent="How many clips one member may have in the making at once"
    )
    async def limits(
        self,
        interaction: discord.Interaction[VideoBot],
        max_concurrent: app_commands.Transform[
            int, Amount(1, MAX_CONCURRENT, texts.AMOUNT_MAX_CONCURRENT)
        ],
    ) -> None:
        """Set how many clips one member may have rendering at once."""
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        await budgets.set_max_concurrent(
            self.bot.db, interaction.guild_id, max_concurrent, actor_id=interaction.user.id
        )
        await self._reply(interaction, texts.limits_set(count=max_concurrent))

    @app_commands.command()
    @app_commands.describe(period="The calendar period (UTC) to report on; default: this month")
    async def usage(
        self,
        interaction: discord.Interaction[VideoBot],
        period: Literal["day", "week", "month"] = "month",
    ) -> None:
        """Show the server's spending, tasks and top members for this period."""
        assert interaction.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        db = self.bot.db
        start = budgets.period_start(period, db_now())
        report = await reports.usage(db, interaction.guild_id, start)
        rules = await budgets.budget(db, interaction.guild_id)
        allowance = (
            texts.allowance_rule(amount=rules.allowance, period=rules.allowance_period)
            if rules.allowance is not None
            else texts.default_allowance(amount=self.bot.settings.default_credits)
        )
        embed = usage_card(
            period=period,
            since=start,
            report=report,
            cap=await self._cap_text(interaction.guild_id, rules),
            allowance=allowance,
            max_concurrent=rules.max_concurrent,
            changes=await budgets.recent_changes(db, interaction.guild_id, limit=5),
        )
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command()
    @app_commands.describe(
        member="Only this member's rows (default: everyone's)",
        since="First day (YYYY-MM-DD) or month (YYYY-MM) to include, UTC (default: the start)",
        until="Last day (YYYY-MM-DD) or month (YYYY-MM) to include, UTC (default: now)",
    )
    async def ledger(
        self,
        interaction: discord.Interaction[VideoBot],
        member: discord.User | None = None,
        since: app_commands.Transform[CalendarSpan, DayOrMonth("since")] | None = None,
        until: app_commands.Transform[CalendarSpan, DayOrMonth("until")] | None = None,
    ) -> None:
        """Download the credit ledger as a CSV file, for audits."""
        assert interaction.guild_id is not None
        if since is not None and until is not None and since.start >= until.end:
            raise UserFacingError(texts.ledger_range_empty(since=since.text, until=until.text))
        await interaction.response.defer(ephemeral=True, thinking=True)
        scope = reports.LedgerScope(
            interaction.guild_id,
            None if member is None else member.id,
            since=None if since is None else since.start,
            until=None if until is None else until.end,
        )
        name = f"ledger-{interaction.guild_id}" + (f"-{member.id}" if member else "")
        limit = interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT
        with tempfile.TemporaryDirectory(prefix="ledger-") as folder:
            delivery = await ledger_export.export(
                self.bot.db, scope, Path(folder), name=name, limit=limit
            )
            summary = texts.ledger_rows(
                rows=delivery.rows,
                member=member.mention if member else None,
                since=None if since is None else since.text,
                until=None if until is None else until.text,
            )
            parts = len(delivery.messages)
            if delivery.form == "gzip":
                summary += " " + texts.LEDGER_COMPRESSED
            elif delivery.form == "months":
                months = [file.month for file in delivery.files if file.month is not None]
                summary += " " + texts.ledger_by_month(
                    files=len(delivery.files),
                    first=texts.calendar_month(months[0]),
                    last=texts.calendar_month(months[-1]),
                    messages=parts,
                )
            for part, files in enumerate(delivery.messages, start=1):
                await interaction.followup.send(
                    summary if part == 1 else texts.ledger_part(part=part, parts=parts),
                    files=[discord.File(file.path, filename=file.filename) for file in files],
                    ephemeral=True,
                    allowed_mentions=NO_MENTIONS,
                )

    @app_commands.command()
    @app_commands.describe(member="Whose credits and recent tasks to show")
    async def balance(
        self, interaction: discord.Interaction[VideoBot], member: discord.User
    ) -> None:
        """Show any member's credits and recent tasks."""
        assert interaction.guild_id is not None
        if member.bot:
            raise UserFacingError(texts.BOTS_HOLD_NO_CREDITS)
        await interaction.response.defer(ephemeral=True, thinking=True)
        db, default = self.bot.db, self.bot.settings.default_credits
        roles = member_role_ids(member)
        left, allowance = await credits.standing(
            db, interaction.guild_id, member.id, default, roles
        )
        recent = await task_store.for_member(db, interaction.guild_id, member.id, limit=5)
        embed = member_card(
            name=member.display_name,
            mention=member.mention,
            credits=left,
            refill=refill_text(allowance, db_now()),
            recent=recent,
        )
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _reply(self, interaction: discord.Interaction[VideoBot], text: str) -> None:
        log.info("Admin %d in server %s: %s", interaction.user.id, interaction.guild_id, text[:200])
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _spent_this(self, guild_id: int, period: budgets.CapPeriod) -> int:
        async with self.bot.db.transaction() as conn:
            return await budgets.spent_in(conn, guild_id, period, db_now())

    async def _cap_text(self, guild_id: int, rules: budgets.GuildBudget) -> str:
        if rules.cap is None:
            return texts.NONE
        spent = await self._spent_this(guild_id, rules.cap_period)
        return texts.cap_rule(
            cap=rules.cap, period=rules.cap_period, left=max(0, rules.cap - spent)
        )


async def setup(bot: VideoBot) -> None:
    """Add the /video-admin commands."""
    await bot.add_cog(VideoAdmin(bot))
