"""The bot as `python bot.py` builds it, against the provider simulator and the fake Discord."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import discord

from bot import open_bot
from core.bot import VideoBot
from core.settings import Settings
from db import Database, credits
from db import tasks as task_store
from db.tasks import NewTask, Task
from provider.models import price
from provider.simulator import ProviderSimulator
from tests import payloads
from tests.fakediscord import FakeDiscord, Recorded

TOKEN = "fake-discord-token.abc.def"
API_KEY = "sd-test-key-0123456789"
MANAGE_GUILD = 1 << 5
MEMBER_PERMISSIONS = int(discord.Permissions(view_channel=True, send_messages=True).value)
ADMIN_PERMISSIONS = MEMBER_PERMISSIONS | MANAGE_GUILD

# Short intervals keep polling tests quick without changing what they exercise.
CLIENT_OPTIONS: dict[str, Any] = {
    "request_timeout": 1.0,
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "max_rps": 0,
}


# The owner the tests' own steps claim tasks as, and a lease that never runs out by itself.
OWNER = "tests"
FOREVER = 1e12


async def claim(db: Database, task_id: str, owner: str = OWNER) -> None:
    """Take the lease on a task, as the poller's claim does before each of its steps."""
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE tasks SET lease_owner = ?, lease_expires_at = ? WHERE id = ?",
            (owner, FOREVER, task_id),
        )


def new_task(
    guild_id: int,
    user_id: int,
    *,
    channel_id: int = 40,
    prompt: str = "Drone shot over neon night market",
    duration: int = 5,
    sound: bool = False,
    cost: int | None = None,
) -> NewTask:
    """What /video generate records for a text prompt (at the preset's price by default)."""
    return NewTask(
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=user_id,
        prompt=prompt,
        aspect_ratio="16:9",
        duration=duration,
        sound=sound,
        image_urls=(),
        cost=price(duration, sound) if cost is None else cost,
        upload_limit=10 * 1024 * 1024,
    )


def assert_only_requester_can_be_pinged(fake: FakeDiscord, requester: int) -> None:
    """Every message body the bot sent lets no mention through but the requester's."""
    checked = 0
    for record in fake.requests:
        body = record.json
        if isinstance(body, dict) and isinstance(body.get("data"), dict):
            body = body["data"]  # an interaction callback carries its message under "data"
        if not isinstance(body, dict) or not {"content", "embeds"} & body.keys():
            continue
        checked += 1
        mentions = body.get("allowed_mentions")
        assert mentions is not None and mentions.get("parse") == [], record.path
        assert not mentions.get("roles"), record.path
        assert [int(u) for u in mentions.get("users", [])] in ([], [requester]), record.path
    assert checked >= 3  # at least the card, an edit of it and the clip


def bot_settings(tmp_path: Path, simulator: ProviderSimulator, **overrides: Any) -> Settings:
    """Settings for a bot under test: the simulator as provider, a database in tmp_path."""
    base = Settings(
        discord_token=TOKEN,
        seedance_api_key=API_KEY,
        seedance_api_base=simulator.base_url,
        database_url=f"sqlite:///{tmp_path / 'bot.db'}",
        poll_interval_seconds=0.05,
        render_timeout_seconds=30.0,
    )
    return replace(base, **overrides)


@dataclass
class Harness:
    """One running bot and the two fakes it talks to."""

    bot: VideoBot
    fake: FakeDiscord
    simulator: ProviderSimulator
    settings: Settings

    async def run(
        self,
        subcommand: str,
        *,
        group: str = "video",
        options: dict[str, Any] | None = None,
        user_id: int | None = None,
        admin: bool = False,
        **context: Any,
    ) -> dict[str, Any]:
        """Dispatch a slash command as Discord would and wait until the command has finished."""
        payload = payloads.slash_command(
            self.fake,
            name=group,
            subcommand=subcommand,
            options=options or {},
            user_id=user_id or self.fake.user_id,
            permissions=ADMIN_PERMISSIONS if admin else MEMBER_PERMISSIONS,
            **context,
        )
        await self.dispatch(payload)
        return payload

    async def dispatch(self, payload: dict[str, Any]) -> None:
        """Hand the interaction to the bot and wait for its handler (and error handler) to end."""
        self.join_guilds()
        before = set(asyncio.all_tasks())
        payloads.dispatch(self.bot, payload)
        started = [
            task
            for task in asyncio.all_tasks() - before
            if task.get_name().startswith(
                (
                    "CommandTree-invoker",
                    "discord-ui-view-dispatch",
                    "discord-ui-dynamic-item",
                    "discord-ui-modal-dispatch",
                )
            )
        ]
        await asyncio.gather(*started)

    def join_guilds(self) -> None:
        """Put the fake's guilds in the bot's cache, as READY would: the bot is in those only.

        This harness logs in without a gateway; the bot serves interactions only from
        servers it is in, and a guild id the fake does not know stands for a foreign server.
        """
        state = self.bot._connection
        for guild_id in self.fake.guilds:
            if state._get_guild(guild_id) is None:
                state._add_guild_from_data(self.fake.guild_payload(guild_id))  # type: ignore[arg-type]

    def callback(self, payload: dict[str, Any]) -> Recorded:
        """Return the interaction's acknowledgement."""
        [record] = self.fake.calls("POST", rf"^/interactions/{payload['id']}/[^/]+/callback$")
        return record

    def replies(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """Return every message the interaction produced (original response and follow-ups)."""
        return self.fake.interaction_messages(payload["token"])

    async def reserve(self, user_id: int | None = None, **options: Any) -> Task:
        """Charge a member and record a task in the test channel, as /video generate would."""
        fake = self.fake
        request = new_task(
            fake.guild_id, user_id or fake.user_id, channel_id=fake.channel_id, **options
        )
        task, _ = await task_store.reserve(
            self.bot.db,
            request,
            owner=OWNER,
            lease_until=FOREVER,
            starting_credits=self.settings.default_credits,
        )
        return task

    async def balance(self, user_id: int | None = None) -> int:
        """Return a member's balance as the database holds it."""
        return await credits.balance(
            self.bot.db,
            self.fake.guild_id,
            user_id or self.fake.user_id,
            self.settings.default_credits,
        )

    async def tasks(self, user_id: int | None = None) -> list[Task]:
        """Return a member's tasks, newest first."""
        return await task_store.for_member(
            self.bot.db, self.fake.guild_id, user_id or self.fake.user_id, limit=100
        )

    async def wait_for_task(self, task_id: str, *states: str, within: float = 5.0) -> Task:
        """Wait until the task reaches one of `states` (polling the database briefly)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            task = await task_store.get(self.bot.db, task_id)
            if task is not None and task.state.value in states:
                return task
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"task {task_id} stayed {task and task.state}")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_bot(
    fake: FakeDiscord, simulator: ProviderSimulator, settings: Settings
) -> AsyncIterator[Harness]:
    """Start the bot exactly as bot.py does (login runs setup_hook), and close it after."""
    async with open_bot(settings, client_options=CLIENT_OPTIONS) as bot:
        await bot.login(settings.discord_token)
        try:
            yield Harness(bot, fake, simulator, settings)
        finally:
            await bot.close()


def errors_logged(records: list[logging.LogRecord]) -> list[str]:
    """Return the ERROR (and worse) log lines, which no healthy test run should produce."""
    return [r.getMessage() for r in records if r.levelno >= logging.ERROR]
