"""The bot class: shared resources, extensions, command sync."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from core import texts
from core.clip_buttons import DYNAMIC_ITEMS
from core.errors import UserFacingError
from core.generation import Starter
from core.members import NO_MENTIONS
from core.replies import send_private
from core.settings import Settings
from core.timetable import Timetable
from db import Database
from provider.client import SeedanceClient

log = logging.getLogger(__name__)

EXTENSIONS = ("cogs.video", "cogs.admin", "cogs.rendering")

# Exactly what the bot needs: see the channel, post cards and clips, read its own messages back.
INVITE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
)
SYNC_HASH_KEY = "command_tree_hash"


class VideoTree(app_commands.CommandTree["VideoBot"]):
    """The command tree, with one error handler for the whole bot."""

    async def on_error(
        self, interaction: discord.Interaction[VideoBot], error: app_commands.AppCommandError
    ) -> None:
        """Show members the refusals meant for them; log everything else."""
        if isinstance(error, UserFacingError):
            message = error.message
        elif isinstance(error, app_commands.CheckFailure):
            message = str(error) or texts.NOT_HERE
        else:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.exception("Command /%s failed", command, exc_info=error)
            message = texts.OUR_FAULT
        await send_private(interaction, message)


class VideoBot(commands.Bot):
    """A slash-command bot that turns prompts into Seedance clips."""

    def __init__(
        self, settings: Settings, db: Database, provider: SeedanceClient, **options: Any
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents(guilds=True),
            tree_cls=VideoTree,
            allowed_mentions=NO_MENTIONS,
            help_command=None,
            **options,
        )
        self.settings = settings
        self.db = db
        self.provider = provider
        self.timetable = Timetable(db, settings.poll_interval_seconds)
        self.starter = Starter(db, provider, settings, self.timetable)

    async def setup_hook(self) -> None:
        """Register result buttons, load the extensions, log the invite link, sync commands."""
        # Buttons under clips posted before this start keep working.
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        for extension in EXTENSIONS:
            try:
                await self.load_extension(extension)
            except Exception:
                log.exception("Failed to load extension %s", extension)
                raise
        if self.application_id is not None:
            log.info("Invite link: %s", self.invite_url())
        await self.sync_commands()

    def invite_url(self) -> str:
        """Return the OAuth2 link that adds the bot with the permissions it needs."""
        assert self.application_id is not None
        return discord.utils.oauth_url(
            self.application_id,
            permissions=INVITE_PERMISSIONS,
            scopes=("bot", "applications.commands"),
        )

    def command_tree_hash(self) -> str:
        """Return a hash of the command tree as Discord would receive it."""
        payload = sorted(
            (command.to_dict(self.tree) for command in self.tree.get_commands()),
            key=lambda command: str(command["name"]),
        )
        # The application id is part of it: a new bot token means a new, empty application.
        document = {"application_id": self.application_id, "commands": payload}
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()

    async def sync_commands(self) -> None:
        """Sync to the dev server at once; globally only when the tree changed."""
        dev_guild = self.settings.dev_guild_id
        if dev_guild is not None:
            guild = discord.Object(dev_guild)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("Synced %d commands to the development server %d", len(synced), dev_guild)
            return
        current = self.command_tree_hash()
        if await self.db.get_state(SYNC_HASH_KEY) == current:
            log.info("Command tree unchanged since the last sync; not syncing")
            return
        synced = await self.tree.sync()
        await self.db.set_state(SYNC_HASH_KEY, current)
        log.info("Synced %d commands globally", len(synced))
