"""Runs the renderer (poller and delivery) for as long as the extension is loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from discord.ext import commands

if TYPE_CHECKING:
    from core.bot import VideoBot


class Rendering(commands.Cog):
    """Owns the background loop that follows every task to its end."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        """Start polling at once: delivery needs only the REST API, not the gateway."""
        self.bot.renderer.start()

    async def cog_unload(self) -> None:
        """Stop polling and let the steps in flight finish."""
        await self.bot.renderer.stop()


async def setup(bot: VideoBot) -> None:
    """Add the renderer."""
    await bot.add_cog(Rendering(bot))
