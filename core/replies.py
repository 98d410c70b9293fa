"""Private answers to an interaction, whatever state its response is in."""

from __future__ import annotations

import logging
from typing import Any

import discord

from core import texts
from core.members import NO_MENTIONS

log = logging.getLogger(__name__)


async def answer_failure(interaction: discord.Interaction[Any], error: BaseException) -> None:
    """Log an unexpected error in a button or form, and tell the member privately."""
    log.exception("Handling an interaction failed", exc_info=error)
    await send_private(interaction, texts.OUR_FAULT)


async def send_private(interaction: discord.Interaction[Any], message: str) -> None:
    """Answer privately, whether or not the interaction was acknowledged yet."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(message, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(
                message, ephemeral=True, allowed_mentions=NO_MENTIONS
            )
    except discord.HTTPException:
        log.warning("Could not tell the member: %s", message)
