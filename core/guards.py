"""Where the bot serves an interaction: in the servers it has joined, and nowhere else."""

from __future__ import annotations

import logging
from typing import Any

import discord

from core import texts

log = logging.getLogger(__name__)


def refusal(interaction: discord.Interaction[Any]) -> str | None:
    """Return why the bot does not serve `interaction` where it came from, or None if it does.

    Credits, admins and budgets belong to the servers the bot is in. An interaction from
    anywhere else (a user-installed copy of the app in a foreign server, a crafted or stale
    payload) must not welcome a member, charge one or let that server's admins grant.
    """
    if interaction.guild_id is None:
        return texts.USE_IN_SERVER
    # The guild cache holds exactly the servers the gateway says the bot is in (READY lists
    # them all, so none is missing while the rest stream in).
    if interaction.client.get_guild(interaction.guild_id) is None:
        log.info(
            "Refused an interaction from server %d, which the bot is not in (user %d)",
            interaction.guild_id,
            interaction.user.id,
        )
        return texts.NOT_IN_THIS_SERVER
    return None
