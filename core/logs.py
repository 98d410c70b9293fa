"""The process's logging: one handler on the root logger, text or JSON lines, secrets redacted.

discord.py's loggers and aiohttp's propagate to the root logger, so they get the same format
and the same redaction. JSON is written with the standard library: the fields are few and
fixed by the product, and the redaction has to run before any formatter anyway, so a
formatter package would add a dependency and a field-renaming layer for no gain.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import types
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import IO, Any

__all__ = ["FIELDS", "JsonFormatter", "RedactingFilter", "Redactor", "configure", "settings_failed"]

# Structured fields a log call passes with `extra=`; JSON lines carry them when given.
FIELDS = ("task_id", "guild_id", "user_id", "shard_id")
TEXT_FORMAT = "[{asctime}] [{levelname:<8}] {name}: {message}"
TEXT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
REDACTED = "[redacted]"

# Secrets whose value we may not know (an old token pasted into a URL, another app's key):
# the password in a URL's userinfo, an Authorization value, a Discord bot token's shape, and
# the interaction or webhook token inside a Discord URL path.
_PATTERNS = (
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/@:]*:)[^\s/@]+@"), rf"\g<1>{REDACTED}@"),
    (re.compile(r"(?i)(authorization\W{1,4})[^\s'\"]+(\s+[^\s'\"]+)?"), rf"\g<1>{REDACTED}"),
    (re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]{8,}"), f"Bearer {REDACTED}"),
    (re.compile(r"\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,}"), REDACTED),
    (re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9._-]{20,}"), rf"\g<1>{REDACTED}"),
)


class Redactor:
    """Replace known secret values and secret-shaped text with a marker."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is hidden whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """Return `text` with every secret replaced."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class RedactingFilter(logging.Filter):
    """Rewrite each record's message, exception text and stack so that no secret is left."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact
        self._exceptions = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; every handler after this one sees the clean text."""
        try:
            message = record.getMessage()
        except Exception:
            # A malformed call: the formatter reports it (logging.raiseExceptions), unredacted
            # only in the sense that nothing was interpolated into it.
            message = str(record.msg)
        record.msg, record.args = self._redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exceptions.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as JSON: time, level, logger, message, fields, exception."""
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


_installed: logging.Handler | None = None


def configure(
    level: str, log_format: str, secrets: Iterable[str] = (), *, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every logger's records to `stream` (stderr) as text or JSON, secrets redacted."""
    global _installed  # one handler for the process; configuring again replaces it
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, TEXT_DATE_FORMAT, style="{"))
    handler.addFilter(RedactingFilter(Redactor(secrets)))
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    root.setLevel(level)
    _installed = handler
    # Warnings and uncaught exceptions become records too: never a bare line on stderr.
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_uncaught
    return handler


def settings_failed(error: Exception, environ: Mapping[str, str]) -> None:
    """Report settings that do not parse: a plain line, or a JSON one if LOG_FORMAT asks."""
    if environ.get("LOG_FORMAT", "").strip().lower() != "json":
        print(f"error: {error}", file=sys.stderr)
        return
    configure(
        "INFO", "json", (environ.get("DISCORD_TOKEN", ""), environ.get("SEEDANCE_API_KEY", ""))
    )
    logging.getLogger("bot").error("%s", error)


def _log_uncaught(
    kind: type[BaseException], error: BaseException, trace: types.TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("bot").critical("Uncaught exception", exc_info=(kind, error, trace))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    logging.getLogger("bot").critical(
        "Uncaught exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
