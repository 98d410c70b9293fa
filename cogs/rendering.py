"""Runs the poller and the delivery for as long as the extension is loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING

from discord.ext import commands

from core.delivery import Delivery
from core.polling import Poller

if TYPE_CHECKING:
    from core.bot import VideoBot


class Rendering(commands.Cog):
    """Owns the background loop that follows every task to its end."""

    poller: Poller
    delivery: Delivery

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        """Start polling at once: delivery needs only the REST API, not the gateway."""
        bot = self.bot
        self.delivery = Delivery(bot, bot.db, bot.provider, bot.timetable, bot.claims)
        self.poller = Poller(
            bot.db, bot.provider, bot.settings, bot.timetable, bot.claims, self.delivery
        )
        self.poller.start()

    async def cog_unload(self) -> None:
        """Stop polling and let the steps in flight finish."""
        await self.poller.stop()


async def setup(bot: VideoBot) -> None:
    """Add the poller and the delivery."""
    await bot.add_cog(Rendering(bot))
