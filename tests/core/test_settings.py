"""Settings: defaults, validation messages that name the variable, secrets kept out of reprs."""

from __future__ import annotations

from dataclasses import replace
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


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHARD_IDS": "0,1"}, "SHARD_IDS needs SHARD_COUNT"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "2"}, "SHARD_IDS must be between 0 and 1"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "-1"}, "SHARD_IDS must be between 0 and 1"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "zero"}, "separated by commas"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "1,1"}, "names a shard twice"),
        ({"SHARD_COUNT": "0"}, "SHARD_COUNT must be at least 1"),
    ],
)
def test_shard_settings_that_cannot_work_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**REQUIRED, **env})


def test_shards_of_this_process() -> None:
    default = Settings.from_env(REQUIRED)
    assert (default.shard_count, default.shard_ids, default.gateway) == (None, None, True)
    some = Settings.from_env({**REQUIRED, "SHARD_COUNT": "4", "SHARD_IDS": " 3,1 "})
    assert (some.shard_count, some.shard_ids, some.gateway) == (4, (1, 3), True)
    # `none` joins no gateway: the process only polls and delivers.
    worker = Settings.from_env({**REQUIRED, "SHARD_IDS": "none"})
    assert (worker.shard_ids, worker.gateway) == ((), False)


def test_operating_settings_default_to_off_and_text() -> None:
    settings = Settings.from_env(REQUIRED)
    assert settings.log_format == "text" and settings.metrics_port is None
    assert settings.metrics_host == "127.0.0.1" and settings.shutdown_grace_seconds == 20


def test_operating_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            **REQUIRED,
            "LOG_FORMAT": "JSON",
            "METRICS_PORT": "9464",
            "METRICS_HOST": "0.0.0.0",  # noqa: S104
            "SHUTDOWN_GRACE_SECONDS": "5",
        }
    )
    assert settings.log_format == "json" and settings.metrics_port == 9464
    assert settings.metrics_host == "0.0.0.0"  # noqa: S104
    assert settings.shutdown_grace_seconds == 5


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LOG_FORMAT", "yaml", "LOG_FORMAT must be text or json"),
        ("METRICS_PORT", "http", "METRICS_PORT must be a whole number"),
        ("METRICS_PORT", "0", "METRICS_PORT must be at least 1"),
        ("METRICS_PORT", "70000", "METRICS_PORT must be a port number"),
        ("METRICS_HOST", "http://0.0.0.0", "METRICS_HOST must be an address"),
        ("SHUTDOWN_GRACE_SECONDS", "-1", "SHUTDOWN_GRACE_SECONDS must be at least 0"),
        ("SHUTDOWN_GRACE_SECONDS", "soon", "SHUTDOWN_GRACE_SECONDS must be a number"),
    ],
)
def test_malformed_operating_settings_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**REQUIRED, name: value})


def test_secrets_are_the_token_the_key_and_no_sandbox_word() -> None:
    assert Settings.from_env(REQUIRED).secrets == ("discord-secret-token", "sd-secret-key")
    sandbox = Settings.from_env({**REQUIRED, "SEEDANCE_API_KEY": "sandbox"})
    assert sandbox.secrets == ("discord-secret-token",)


def test_the_database_password_counts_as_a_secret() -> None:
    settings = replace(
        Settings.from_env(REQUIRED), database_url="postgresql://bot:pa%40ss@db.internal/bot"
    )
    assert {"pa@ss", "pa%40ss"} <= set(settings.secrets)
