"""`python bot.py` as an operator runs it: a missing setting is one clear line, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bot(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "SEEDANCE_API_KEY")}
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(ROOT / "bot.py")],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "DISCORD_TOKEN"),
        ({"DISCORD_TOKEN": "   "}, "DISCORD_TOKEN"),
        ({"DISCORD_TOKEN": "abc.def.ghi"}, "SEEDANCE_API_KEY"),
    ],
)
def test_a_missing_secret_stops_the_bot_with_one_line(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    result = run_bot(tmp_path, **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0] and ".env.example" in lines[0]
    assert "Traceback" not in result.stderr
    assert "abc.def.ghi" not in result.stderr + result.stdout
    assert not (tmp_path / "data").exists()  # nothing was created before the check


def test_the_env_file_is_read_and_the_real_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DISCORD_TOKEN=from-file\nDEFAULT_CREDITS=oops\n")
    result = run_bot(tmp_path, SEEDANCE_API_KEY="k")
    # The token came from .env (so the next check ran) and its bad DEFAULT_CREDITS is reported.
    assert result.returncode == 2
    assert "DEFAULT_CREDITS must be a whole number" in result.stderr
    result = run_bot(tmp_path, SEEDANCE_API_KEY="k", DEFAULT_CREDITS="5", DISCORD_TOKEN="")
    assert result.returncode == 2 and "DISCORD_TOKEN is not set" in result.stderr
