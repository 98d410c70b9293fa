"""`python bot.py --check` against the fake Discord and the simulator, passing and failing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from core import selfcheck
from db import migrations
from db.backends import open_database
from provider.simulator import ProviderSimulator
from tests.fakediscord import FakeDiscord
from tests.harness import API_KEY, TOKEN, bot_settings

ROOT = Path(__file__).resolve().parents[2]


def lines(checks: list[selfcheck.Check]) -> dict[str, str]:
    return {check.name: check.line() for check in checks}


@contextlib.contextmanager
def listening() -> Iterator[int]:
    """Hold a loopback port, as another service would."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_everything_passes_and_names_the_bot_and_its_invite(
    tmp_path: Path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    settings = replace(bot_settings(tmp_path, simulator), metrics_port=free_port())
    checks = await selfcheck.run_checks(settings)
    assert [c.name for c in checks] == [
        "settings",
        "database",
        "Discord token",
        "provider key",
        "metrics port",
    ]
    assert all(c.ok for c in checks), [c.line() for c in checks]
    found = lines(checks)
    assert found["Discord token"].startswith(
        f"✓ Discord token: accepted: the bot is {fake.bot_name}"
    )
    assert f"client_id={fake.application_id}" in found["Discord token"]
    assert "does not exist yet" in found["database"]
    assert not (tmp_path / "bot.db").exists()  # the check created nothing
    assert "HTTP 404" in found["provider key"]
    text = "\n".join(found.values())
    assert TOKEN not in text and API_KEY not in text


async def test_a_token_discord_refuses_is_a_401_line(
    tmp_path: Path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    fake.token = "the-real-token"
    checks = lines(await selfcheck.run_checks(bot_settings(tmp_path, simulator)))
    assert checks["Discord token"].startswith(
        "✗ Discord token: Discord refused DISCORD_TOKEN (401)"
    )
    assert "Reset Token" in checks["Discord token"]


async def test_a_key_the_provider_refuses_is_named(
    tmp_path: Path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    settings = bot_settings(tmp_path, simulator, seedance_api_key="sd-wrong-key")
    checks = lines(await selfcheck.run_checks(settings))
    assert checks["provider key"].startswith(
        "✗ provider key: the provider refused SEEDANCE_API_KEY"
    )
    assert "sd-wrong-key" not in "\n".join(checks.values())


async def test_an_unreachable_provider_and_a_taken_port_fail(
    tmp_path: Path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    with listening() as taken:
        settings = bot_settings(
            tmp_path,
            simulator,
            seedance_api_base=f"http://127.0.0.1:{free_port()}/api",
            metrics_port=taken,
        )
        checks = lines(await selfcheck.run_checks(settings))
    assert checks["provider key"].startswith("✗ provider key: could not reach http://127.0.0.1:")
    assert checks["metrics port"].startswith(f"✗ metrics port: cannot listen on 127.0.0.1:{taken}")
    assert "choose another METRICS_PORT" in checks["metrics port"]


def test_database_applied_pending_and_newer(tmp_path: Path) -> None:
    async def create(target: int | None) -> None:
        db = await open_database(f"sqlite:///{tmp_path / 'bot.db'}", target_version=target)
        await db.close()

    latest = migrations()[-1][0]
    asyncio.run(create(1))
    pending = selfcheck.check_database(tmp_path / "bot.db")
    assert pending.ok and "schema version 1; pending" in pending.detail
    assert migrations()[1][1] in pending.detail
    asyncio.run(create(None))
    current = selfcheck.check_database(tmp_path / "bot.db")
    assert current.ok and f"schema version {latest}, up to date" in current.detail
    with contextlib.closing(sqlite3.connect(tmp_path / "bot.db")) as conn:
        conn.execute(f"PRAGMA user_version = {latest + 1}")
    newer = selfcheck.check_database(tmp_path / "bot.db")
    assert not newer.ok and "newer than this code" in newer.detail


def test_an_unreadable_database_fails(tmp_path: Path) -> None:
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    garbage = selfcheck.check_database(tmp_path / "garbage.db")
    assert not garbage.ok and "cannot read" in garbage.line() and "DATABASE_URL" in garbage.line()
    (tmp_path / "a-file").write_text("")
    nowhere = selfcheck.check_database(tmp_path / "a-file" / "bot.db")
    assert not nowhere.ok and "is not a writable folder" in nowhere.line()


def run_check(
    cwd: Path, env: dict[str, str], script: Path = ROOT / "tests" / "e2e" / "launch.py"
) -> subprocess.CompletedProcess[str]:
    """Run `--check` in a child: through launch.py (pointed at the fakes) or bot.py itself."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD", "SEEDANCE"))}
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(script), "--check"],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("good_token", [True, False])
async def test_bot_py_check_exits_0_or_1(
    tmp_path: Path, fake: FakeDiscord, simulator: ProviderSimulator, good_token: bool
) -> None:
    fake.token = TOKEN if good_token else "another-token"
    env = {
        "DISCORD_TOKEN": TOKEN,
        "SEEDANCE_API_KEY": API_KEY,
        "SEEDANCE_API_BASE": simulator.base_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "FAKE_DISCORD_API": fake.api_base,
        "FAKE_DISCORD_BASE": fake.base_url,
        "FAKE_DISCORD_GATEWAY": fake.gateway_url,
    }
    # The fakes serve on this loop: run the child without blocking it.
    result = await asyncio.to_thread(run_check, tmp_path, env)
    printed = result.stdout.splitlines()
    assert len(printed) == 4, result.stdout + result.stderr
    assert result.returncode == (0 if good_token else 1)
    assert [line[0] for line in printed] == ["✓", "✓", "✓" if good_token else "✗", "✓"]
    assert TOKEN not in result.stdout + result.stderr
    assert API_KEY not in result.stdout + result.stderr
    assert fake.gateway_connections == []  # nothing was started


def test_without_a_token_the_check_says_so_and_exits_1(tmp_path: Path) -> None:
    result = run_check(tmp_path, {}, ROOT / "bot.py")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "✗ settings: DISCORD_TOKEN is not set: add it to .env (see .env.example)"
    ]
    assert not (tmp_path / "data").exists()
