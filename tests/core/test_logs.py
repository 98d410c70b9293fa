"""Log lines as an operator's collector reads them: JSON objects or today's text, no secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import logs

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789"
API_KEY = "sd-live-key-7f3a9c"
DB_PASSWORD = "hunter2-db"
SECRETS = (TOKEN, API_KEY, DB_PASSWORD)


@pytest.fixture
def configured() -> Iterator[None]:
    """Restore the root logger and the hooks `configure` replaces."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = sys.excepthook
    yield
    if logs._installed is not None:
        root.removeHandler(logs._installed)
        logs._installed = None
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook = hooks
    logging.captureWarnings(False)


def emit_everything() -> None:
    """Log what a bad day produces: fields, a secret in args, a failing call, a warning."""
    task_log = logging.getLogger("core.rendering")
    task_log.info(
        "Delivered task %s",
        "t_1",
        extra={"task_id": "t_1", "guild_id": 11, "user_id": 22, "shard_id": 0},
    )
    # discord.py's own logger, as the gateway would write.
    logging.getLogger("discord.gateway").warning("Shard ID %s heartbeat blocked", 0)
    logging.getLogger("core.bot").info("Logging in with %s", TOKEN)
    try:
        raise ConnectionError(
            f"could not reach postgresql://bot:{DB_PASSWORD}@db.internal:5432/bot "
            f"with key {API_KEY}"
        )
    except ConnectionError:
        task_log.exception("Poll of task %s failed", "t_2", extra={"task_id": "t_2"})
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"deprecated call with {API_KEY}", DeprecationWarning, stacklevel=1)


def test_json_lines_are_objects_with_the_fields_and_no_secret(configured: None) -> None:
    stream = io.StringIO()
    logs.configure("INFO", "json", SECRETS, stream=stream)
    emit_everything()
    text = stream.getvalue()
    lines = text.splitlines()
    entries = [json.loads(line) for line in lines]  # every line parses, or this raises
    assert len(entries) == 5
    for entry in entries:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
        assert {"level", "logger", "message"} <= entry.keys()
    delivered, gateway, login, failure, warning = entries
    assert delivered == {
        "time": delivered["time"],
        "level": "INFO",
        "logger": "core.rendering",
        "message": "Delivered task t_1",
        "task_id": "t_1",
        "guild_id": 11,
        "user_id": 22,
        "shard_id": 0,
    }
    assert gateway["logger"] == "discord.gateway" and gateway["level"] == "WARNING"
    assert "task_id" not in gateway
    assert login["message"] == "Logging in with [redacted]"
    assert failure["level"] == "ERROR" and failure["task_id"] == "t_2"
    assert failure["exc_info"].startswith("Traceback (most recent call last):")
    hidden = "ConnectionError: could not reach postgresql://bot:[redacted]@db.internal"
    assert hidden in failure["exc_info"]
    assert warning["logger"] == "py.warnings" and "deprecated call" in warning["message"]
    for secret in SECRETS:
        assert secret not in text


def test_text_lines_keep_their_form_and_hide_secrets(configured: None) -> None:
    stream = io.StringIO()
    logs.configure("INFO", "text", SECRETS, stream=stream)
    emit_everything()
    text = stream.getvalue()
    first = text.splitlines()[0]
    assert re.fullmatch(
        r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[INFO    \] core.rendering: Delivered task t_1", first
    )
    assert "Traceback (most recent call last):" in text
    assert "postgresql://bot:[redacted]@db.internal" in text
    for secret in SECRETS:
        assert secret not in text


def test_unknown_secrets_of_a_known_shape_are_hidden() -> None:
    redact = logs.Redactor(())
    assert redact("GET https://x/api?x=1 Authorization: Bot abc.def.ghi") == (
        "GET https://x/api?x=1 Authorization: [redacted]"
    )
    assert redact(f"token {TOKEN} rejected") == "token [redacted] rejected"
    assert redact("POST /api/v10/interactions/123/aW50ZXJhY3Rpb246MTIzOnNlY3JldA/callback") == (
        "POST /api/v10/interactions/123/[redacted]/callback"
    )
    assert redact("redis://:s3cret@cache:6379/0") == "redis://:[redacted]@cache:6379/0"
    # Ordinary words after "Bot" are not a token.
    assert redact("Bot connected to 3 servers") == "Bot connected to 3 servers"


def test_an_uncaught_exception_is_one_json_line_without_the_secret(tmp_path: Path) -> None:
    script = (
        "from core import logs\n"
        f"logs.configure('INFO', 'json', [{API_KEY!r}])\n"
        f"raise RuntimeError('the provider refused {API_KEY}')\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "CRITICAL"
    assert "RuntimeError: the provider refused [redacted]" in entry["exc_info"]
    assert API_KEY not in result.stderr
