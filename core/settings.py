"""Settings read from the environment (and `.env`), validated once at start."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from db import DatabaseURLError, dialect_of, redacted

DEFAULT_API_BASE = "https://seedance1-5pro.com/api"
DEFAULT_DATABASE_URL = "sqlite:///data/seedance-bot.db"
SANDBOX_KEY = "sandbox"
N = TypeVar("N", int, float)


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it and never shows its value."""


@dataclass(frozen=True)
class Settings:
    """Everything the operator configures, in the product's words."""

    discord_token: str
    seedance_api_key: str
    seedance_api_base: str = DEFAULT_API_BASE
    database_url: str = DEFAULT_DATABASE_URL
    default_credits: int = 260
    poll_interval_seconds: float = 10.0
    dev_guild_id: int | None = None
    log_level: str = "INFO"
    max_credits_per_day: int | None = None
    provider_max_rps: float = 5.0
    render_timeout_seconds: float = 3600.0
    sandbox_render_seconds: float = 8.0

    def __repr__(self) -> str:
        # The dataclass repr would print both secrets into any log or traceback.
        return (
            f"Settings(api_base={self.seedance_api_base!r}, sandbox={self.sandbox}, "
            f"database={redacted(self.database_url)!r}, dev_guild_id={self.dev_guild_id})"
        )

    @property
    def sandbox(self) -> bool:
        """Whether the bot drives its built-in provider simulator instead of the paid API."""
        return self.seedance_api_key == SANDBOX_KEY

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default: the process environment)."""
        env = os.environ if environ is None else environ
        return cls(
            discord_token=_required(env, "DISCORD_TOKEN"),
            seedance_api_key=_required(env, "SEEDANCE_API_KEY"),
            seedance_api_base=_url(env, "SEEDANCE_API_BASE", DEFAULT_API_BASE),
            database_url=_database_url(env),
            default_credits=_int(env, "DEFAULT_CREDITS", cls.default_credits, minimum=0),
            poll_interval_seconds=_float(
                env, "POLL_INTERVAL_SECONDS", cls.poll_interval_seconds, minimum=0.01
            ),
            dev_guild_id=_optional_int(env, "DEV_GUILD_ID", minimum=1),
            log_level=_log_level(env),
            max_credits_per_day=_optional_int(env, "MAX_CREDITS_PER_DAY", minimum=0),
            provider_max_rps=_float(env, "PROVIDER_MAX_RPS", cls.provider_max_rps, minimum=0.1),
            render_timeout_seconds=_float(
                env, "RENDER_TIMEOUT_SECONDS", cls.render_timeout_seconds, minimum=1.0
            ),
            sandbox_render_seconds=_float(
                env, "SANDBOX_RENDER_SECONDS", cls.sandbox_render_seconds, minimum=0.0
            ),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is not set: add it to .env (see .env.example)")
    return value


def _database_url(env: Mapping[str, str]) -> str:
    url = env.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
    try:
        dialect_of(url)
    except DatabaseURLError as error:
        raise SettingsError(str(error)) from None  # its text never repeats the URL
    return url


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http(s) URL (see .env.example)")
    return value.rstrip("/")


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    value = _optional_int(env, name, minimum=minimum)
    return default if value is None else value


def _optional_int(env: Mapping[str, str], name: str, *, minimum: int) -> int | None:
    return _number(env, name, int, "a whole number", minimum)


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    value = _number(env, name, float, "a number", minimum)
    return default if value is None else value


def _number(
    env: Mapping[str, str], name: str, kind: Callable[[str], N], what: str, minimum: N
) -> N | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {what} (see .env.example)") from None
    if not value >= minimum:  # also rejects nan
        raise SettingsError(f"{name} must be at least {minimum:g} (see .env.example)")
    return value


def _log_level(env: Mapping[str, str]) -> str:
    level = (env.get("LOG_LEVEL", "").strip() or "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise SettingsError("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level
