"""Settings: defaults, validation messages that name the variable, secrets kept out of reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings, SettingsError
from db.sqlite import sqlite_path

REQUIRED = {"DISCORD_TOKEN": "discord-secret-token", "SEEDANCE_API_KEY": "sd-secret-key"}


def test_defaults_follow_the_product_contract() -> None:
    settings = Settings.from_env(REQUIRED)
    assert settings.seedance_api_base == "https://seedance1-5pro.com/api"
    assert settings.database_url == "sqlite:///data/seedance-bot.db"
    assert settings.default_credits == 260
    assert settings.poll_interval_seconds == 10
    assert settings.dev_guild_id is None and settings.max_credits_per_day is None
    assert settings.provider_max_rps == 5 and settings.log_level == "INFO"
    assert not settings.sandbox


@pytest.mark.parametrize("missing", ["DISCORD_TOKEN", "SEEDANCE_API_KEY"])
@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_required_variable_is_named(missing: str, value: str | None) -> None:
    env = dict(REQUIRED)
    if value is None:
        del env[missing]
    else:
        env[missing] = value
    with pytest.raises(SettingsError, match=f"^{missing} is not set.*\\.env\\.example"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEFAULT_CREDITS", "lots", "DEFAULT_CREDITS must be a whole number"),
        ("DEFAULT_CREDITS", "-5", "DEFAULT_CREDITS must be at least 0"),
        ("POLL_INTERVAL_SECONDS", "0", "POLL_INTERVAL_SECONDS must be at least"),
        ("POLL_INTERVAL_SECONDS", "nan", "POLL_INTERVAL_SECONDS must be at least"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL must look like sqlite:///"),
        ("SEEDANCE_API_BASE", "ftp://x", "SEEDANCE_API_BASE must be an http"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL must be one of"),
        ("DEV_GUILD_ID", "abc", "DEV_GUILD_ID must be a whole number"),
    ],
)
def test_malformed_values_are_refused_with_the_variable_named(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**REQUIRED, name: value})


def test_database_urls_relative_and_absolute() -> None:
    rel = Settings.from_env({**REQUIRED, "DATABASE_URL": "sqlite:///state/bot.db"})
    absolute = Settings.from_env({**REQUIRED, "DATABASE_URL": "sqlite:////var/lib/bot.db"})
    assert sqlite_path(rel.database_url) == Path("state/bot.db")
    assert sqlite_path(absolute.database_url) == Path("/var/lib/bot.db")


def test_sandbox_key_selects_the_simulator() -> None:
    assert Settings.from_env({**REQUIRED, "SEEDANCE_API_KEY": "sandbox"}).sandbox


def test_secrets_never_show_in_the_repr() -> None:
    text = repr(Settings.from_env(REQUIRED)) + str(Settings.from_env(REQUIRED))
    assert "discord-secret-token" not in text and "sd-secret-key" not in text
