"""Run `bot.py` exactly as an operator does, with discord.py pointed at the fake Discord.

The fake's addresses come from the environment; nothing else differs from `python bot.py`.
Only the end-to-end tests start this, as a child process they can kill.
"""

from __future__ import annotations

import os
import sys

import discord
import discord.asset
import discord.gateway
import discord.http
import discord.webhook.async_
import yarl


def point_at_fake_discord() -> None:
    """Send every REST, webhook, CDN and gateway request to the fake's loopback addresses."""
    api = os.environ["FAKE_DISCORD_API"]
    discord.http.Route.BASE = api
    discord.webhook.async_.Route.BASE = api  # type: ignore[attr-defined]
    discord.asset.Asset.BASE = os.environ["FAKE_DISCORD_BASE"]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["FAKE_DISCORD_GATEWAY"])


def shorten_identify_gap() -> None:
    """Discord's 5 s between two IDENTIFYs, as short as the test asks (still enforced)."""
    gap = os.environ.get("FAKE_DISCORD_IDENTIFY_GAP")
    if gap:
        import core.bot

        core.bot.IDENTIFY_GAP_SECONDS = float(gap)


if __name__ == "__main__":
    point_at_fake_discord()
    shorten_identify_gap()
    import bot

    sys.exit(bot.main())
