"""Settings read from the environment (and `.env`), validated once at start."""

from __future__ import annotations

import ipaddress
import logging
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from db import DatabaseURLError, redacted
from db.backends import dialect_of

DEFAULT_API_BASE = "https://seedance1-5pro.com/api"
DEFAULT_DATABASE_URL = "sqlite:///data/seedance-bot.db"
SANDBOX_KEY = "sandbox"
LOG_FORMATS = ("text", "json")
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
    # None: Discord's recommended count. shard_ids None: every shard of it; (): no gateway.
    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None
    # A process that stops renewing its claim on a task loses it after this long.
    work_lease_seconds: float = 30.0
    log_format: str = "text"
    # None: no /metrics or /healthz server.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    shutdown_grace_seconds: float = 20.0

    @property
    def secrets(self) -> tuple[str, ...]:
        """Return the values no log line, message or metric may ever show."""
        found = [self.discord_token]
        if not self.sandbox:
            found.append(self.seedance_api_key)
        password = _url_password(self.database_url)
        if password:
            # As written in the URL and as the database driver sends it.
            found.extend({password, urllib.parse.unquote(password)})
        return tuple(found)

    @property
    def database_path(self) -> Path | None:
        """Return the SQLite file DATABASE_URL names, or None for PostgreSQL."""
        if dialect_of(self.database_url) != "sqlite":
            return None
        return Path(self.database_url[len("sqlite:///") :])

    @property
    def gateway(self) -> bool:
        """Whether this process connects to Discord's gateway (`SHARD_IDS=none` does not)."""
        return self.shard_ids != ()

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
            shard_count=_optional_int(env, "SHARD_COUNT", minimum=1),
            shard_ids=_shard_ids(env),
            work_lease_seconds=_float(
                env, "WORK_LEASE_SECONDS", cls.work_lease_seconds, minimum=1.0
            ),
            log_format=log_format(env),
            metrics_port=_port(env),
            metrics_host=_host(env),
            shutdown_grace_seconds=_float(
                env, "SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds, minimum=0.0
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


def _shard_ids(env: Mapping[str, str]) -> tuple[int, ...] | None:
    raw = env.get("SHARD_IDS", "").strip()
    if not raw:
        return None
    if raw.lower() == "none":
        return ()
    count = _optional_int(env, "SHARD_COUNT", minimum=1)
    if count is None:
        raise SettingsError("SHARD_IDS needs SHARD_COUNT, the total across all processes")
    try:
        ids = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError(
            "SHARD_IDS must be shard numbers separated by commas (0,1) or none"
        ) from None
    if any(not 0 <= shard < count for shard in ids):
        raise SettingsError(f"SHARD_IDS must be between 0 and {count - 1} (SHARD_COUNT is {count})")
    if len(set(ids)) != len(ids):
        raise SettingsError("SHARD_IDS names a shard twice")
    return tuple(sorted(ids))


def _log_level(env: Mapping[str, str]) -> str:
    level = (env.get("LOG_LEVEL", "").strip() or "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise SettingsError("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


def log_format(env: Mapping[str, str]) -> str:
    """Return LOG_FORMAT (`text` or `json`); readable before the other settings are."""
    value = (env.get("LOG_FORMAT", "").strip() or "text").lower()
    if value not in LOG_FORMATS:
        raise SettingsError("LOG_FORMAT must be text or json")
    return value


def _port(env: Mapping[str, str]) -> int | None:
    port = _optional_int(env, "METRICS_PORT", minimum=1)
    if port is not None and port > 65535:
        raise SettingsError("METRICS_PORT must be a port number, 1 to 65535")
    return port


def _host(env: Mapping[str, str]) -> str:
    host = env.get("METRICS_HOST", "").strip() or Settings.metrics_host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # A name such as localhost is fine too; only spaces and URLs are certainly wrong.
        if not host.replace("-", "").replace(".", "").isalnum():
            raise SettingsError(
                "METRICS_HOST must be an address such as 127.0.0.1 or 0.0.0.0"
            ) from None
    return host


def _url_password(url: str) -> str | None:
    try:
        return urllib.parse.urlsplit(url).password
    except ValueError:
        return None
