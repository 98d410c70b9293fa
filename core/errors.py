"""Errors the bot shows to the member who caused them."""

from __future__ import annotations

from discord import app_commands


class UserFacingError(app_commands.AppCommandError):
    """A refusal whose message is safe and useful to show the member, privately."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
