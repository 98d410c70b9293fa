"""The bot class: shared resources, extensions, command sync."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from core import guards, monitoring, texts
from core.claims import Claims
from core.errors import UserFacingError
from core.generation import Starter
from core.members import NO_MENTIONS
from core.replies import send_private
from core.settings import Settings
from core.timetable import Timetable
from db import Database, coordination
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
# Discord accepts one IDENTIFY per this many seconds for the whole bot (max_concurrency 1).
IDENTIFY_GAP_SECONDS = 5.0


def invite_url(application_id: int) -> str:
    """Return the OAuth2 link that adds the bot with the permissions it needs."""
    return discord.utils.oauth_url(
        application_id, permissions=INVITE_PERMISSIONS, scopes=("bot", "applications.commands")
    )


class VideoTree(app_commands.CommandTree["VideoBot"]):
    """The command tree, with one error handler for the whole bot."""

    async def interaction_check(self, interaction: discord.Interaction[VideoBot], /) -> bool:
        """Serve commands only in servers the bot is in; refuse the rest privately."""
        refusal = guards.refusal(interaction)
        if refusal is None:
            return True
        if interaction.type is discord.InteractionType.autocomplete:
            with contextlib.suppress(discord.HTTPException):
                await interaction.response.autocomplete([])
        else:
            await send_private(interaction, refusal)
        return False

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


class VideoBot(commands.AutoShardedBot):
    """A slash-command bot that turns prompts into Seedance clips."""

    def __init__(
        self, settings: Settings, db: Database, provider: SeedanceClient, **options: Any
    ) -> None:
        if settings.shard_count is not None:
            options.setdefault("shard_count", settings.shard_count)
        if settings.shard_ids:
            options.setdefault("shard_ids", list(settings.shard_ids))
        # Discord REST errors and acknowledgement times, seen in discord.py's own session.
        options.setdefault("http_trace", monitoring.discord_trace())
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
        self.claims = Claims(db, settings, clock=lambda: self.timetable.clock())
        self.starter = Starter(db, provider, settings, self.timetable, self.claims)
        self.identify_gap = IDENTIFY_GAP_SECONDS
        self.monitoring: monitoring.MonitoringServer | None = None

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Wait for this shard's IDENTIFY slot, queued with every other process's shards."""
        slot = await coordination.take_identify_slot(
            self.db, now=time.time(), gap=self.identify_gap
        )
        delay = slot - time.time()
        if delay > 0:
            log.info("Shard %s connects in %.1f s (Discord's IDENTIFY limit)", shard_id, delay)
            await asyncio.sleep(delay)

    @property
    def syncs_commands(self) -> bool:
        """Whether this process syncs the command tree: the one with shard 0, so only one does."""
        shard_ids = self.settings.shard_ids
        return shard_ids is None or 0 in shard_ids

    async def on_interaction(self, interaction: discord.Interaction[VideoBot]) -> None:
        """Note the interaction's arrival; its acknowledgement is timed from here."""
        monitoring.interaction_received(interaction.id)

    async def setup_hook(self) -> None:
        """Take this process's place, serve metrics, load the cogs, sync commands."""
        # First: a process that may not run here (ProcessConflict) must not touch any task.
        await self.claims.start()
        if self.settings.metrics_port is not None:
            # First, so that /healthz answers (503) while the rest of the start runs.
            self.monitoring = monitoring.MonitoringServer(self)
            await self.monitoring.start()
        for extension in EXTENSIONS:
            try:
                await self.load_extension(extension)
            except Exception:
                log.exception("Failed to load extension %s", extension)
                raise
        if self.application_id is not None:
            log.info("Invite link: %s", self.invite_url())
        if self.syncs_commands:
            await self.sync_commands()

    async def close(self) -> None:
        """Close the Discord connection, hand back this process's claims, stop metrics."""
        # Unloading the extensions stops the poller first: nothing is claimed after this.
        await super().close()
        await self.claims.stop()
        if self.monitoring is not None:
            await self.monitoring.stop()
            self.monitoring = None

    def invite_url(self) -> str:
        """Return the OAuth2 link that adds the bot with the permissions it needs."""
        assert self.application_id is not None
        return invite_url(self.application_id)

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
