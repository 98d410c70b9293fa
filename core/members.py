"""Who someone is to the bot: whom a message may ping, which roles and rights they hold."""

from __future__ import annotations

from typing import Any

import discord

NO_MENTIONS = discord.AllowedMentions.none()


def requester_only(user_id: int) -> discord.AllowedMentions:
    """Allow pinging the task's requester and nobody else."""
    return discord.AllowedMentions(
        everyone=False, roles=False, users=[discord.Object(user_id)], replied_user=False
    )


def member_role_ids(user: discord.User | discord.Member) -> list[int]:
    """Return the ids of the roles a member holds (none outside a server).

    `Member.roles` resolves through the role cache, which an interaction may arrive
    without; the ids themselves always come with the member.
    """
    return list(getattr(user, "_roles", ()))


def is_server_admin(interaction: discord.Interaction[Any]) -> bool:
    """Whether the member may see and change everything in this server (Manage Server)."""
    return interaction.permissions.manage_guild
