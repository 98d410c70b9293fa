"""`/video-admin`: what server admins use to control spending."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from core.bot import NO_MENTIONS
from core.cards import quote
from core.errors import UserFacingError
from db import credits
from db.credits import NotEnoughCredits

if TYPE_CHECKING:
    from core.bot import VideoBot

log = logging.getLogger(__name__)

MAX_GRANT = 1_000_000


def require_admin(interaction: discord.Interaction[VideoBot]) -> bool:
    """Re-check Manage Server: a server can loosen the command's default permission."""
    if interaction.permissions.manage_guild:
        return True
    raise app_commands.CheckFailure(
        "Only members with the Manage Server permission can use `/video-admin`."
    )


@app_commands.guild_only()
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
        amount: app_commands.Range[int, -MAX_GRANT, MAX_GRANT],
        reason: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        """Add credits to a member's balance, or take some away."""
        assert interaction.guild_id is not None
        if amount == 0:
            raise UserFacingError("An amount of 0 changes nothing: give a positive or negative one")
        if member.bot:
            raise UserFacingError("Bots cannot make videos, so they hold no credits.")
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
            )
        except NotEnoughCredits as refusal:
            raise UserFacingError(
                f"{member.mention} has **{refusal.balance}** credits; you can take at most "
                f"{refusal.balance}. Nothing was changed."
            ) from None
        log.info(
            "Admin %d changed the credits of %d in server %d by %d",
            interaction.user.id,
            member.id,
            interaction.guild_id,
            amount,
        )
        verb = "Gave" if amount > 0 else "Took"
        preposition = "to" if amount > 0 else "from"
        text = (
            f"{verb} **{abs(amount)}** credits {preposition} {member.mention}. "
            f"New balance: **{balance}**."
        )
        if note:
            text += f"\nReason: {quote(note, 200)}"
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: VideoBot) -> None:
    """Add the /video-admin commands."""
    await bot.add_cog(VideoAdmin(bot))
