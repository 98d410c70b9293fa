"""Input checks that run before anything is charged or sent to the provider."""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import discord
from discord import app_commands

from core import texts
from core.errors import UserFacingError
from provider.models import MAX_PROMPT_LENGTH

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_URL_LENGTH = 2048
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def clean_prompt(raw: str) -> str:
    """Return the prompt trimmed, or refuse it when empty (or invisible) or too long."""
    prompt = "".join(
        # Control characters (other than line breaks) only break embeds and the provider's parser.
        " " if unicodedata.category(ch) == "Cc" and ch not in "\n" else ch
        for ch in raw
    ).strip()
    if not any(unicodedata.category(ch) not in INVISIBLE_CATEGORIES for ch in prompt):
        # Empty, or only spaces, zero-width and direction marks: nothing to describe a scene.
        raise UserFacingError(texts.PROMPT_EMPTY)
    if len(prompt) > MAX_PROMPT_LENGTH:
        raise UserFacingError(texts.prompt_too_long(length=len(prompt), limit=MAX_PROMPT_LENGTH))
    return prompt


def check_image_url(raw: str) -> str:
    """Return the URL if it is a plain http(s) address with a host; refuse it otherwise."""
    url = raw.strip()
    refusal = UserFacingError(texts.IMAGE_URL_NOT_WEB)
    if not url or len(url) > MAX_URL_LENGTH or any(ch.isspace() for ch in url):
        raise refusal
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise refusal from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise refusal
    if parts.username is not None or parts.password is not None:
        raise UserFacingError(texts.IMAGE_URL_WITH_LOGIN)
    if _is_local(host):
        raise UserFacingError(texts.IMAGE_URL_LOCAL)
    return url


LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


def _is_local(host: str) -> bool:
    """Whether the host names this machine or a private network rather than the internet."""
    name = host.lower().rstrip(".")
    if (
        name == "localhost"
        or name.endswith(LOCAL_SUFFIXES)
        or ("." not in name and ":" not in name)
    ):
        return True
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(name)
    except ValueError:
        try:
            # The shorthand forms fetchers still accept: 127.1, 0177.0.0.1, 0x7f.1
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return False
    return not address.is_global


def media_type(attachment: discord.Attachment) -> str:
    """Return the attachment's media type as Discord reports it, without parameters."""
    return (attachment.content_type or "").split(";")[0].strip().lower()


def check_image_attachment(attachment: discord.Attachment) -> str:
    """Return the attachment's URL if it is a picture of a sane size; refuse it otherwise."""
    if media_type(attachment) not in IMAGE_TYPES:
        filename = discord.utils.escape_markdown(attachment.filename)[:100]
        raise UserFacingError(texts.not_an_image(filename=filename))
    if attachment.size <= 0:
        raise UserFacingError(texts.IMAGE_EMPTY)
    if attachment.size > MAX_IMAGE_BYTES:
        raise UserFacingError(
            texts.image_too_large(size_bytes=attachment.size, limit_bytes=MAX_IMAGE_BYTES)
        )
    return attachment.url


class Amount(app_commands.Transformer):
    """A whole-number option Discord's form bounds, and the bot bounds again.

    Discord holds its own form to `min_value`/`max_value`, but a crafted interaction is not,
    and discord.py passes the number through unchecked; `transform` refuses it privately.
    """

    def __init__(self, lowest: int, highest: int, what: str) -> None:
        self.lowest, self.highest, self.what = lowest, highest, what

    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.integer

    @property
    def min_value(self) -> int:
        return self.lowest

    @property
    def max_value(self) -> int:
        return self.highest

    async def transform(self, interaction: discord.Interaction, value: Any, /) -> int:
        return check_amount(value, lowest=self.lowest, highest=self.highest, what=self.what)


def check_amount(amount: int, *, lowest: int, highest: int, what: str) -> int:
    """Refuse a number outside what the option allows (Discord checks too, a crafted call not).

    `what` names the number in the refusal: one of the `texts.AMOUNT_*` names.
    """
    if not lowest <= amount <= highest:
        raise UserFacingError(texts.out_of_range(what=what, lowest=lowest, highest=highest))
    return amount


_DAY_OR_MONTH = re.compile(r"(\d{4})-(\d{2})(?:-(\d{2}))?")


@dataclass(frozen=True)
class CalendarSpan:
    """A UTC day or month an admin named: `start` is its first moment, `end` the next one's."""

    text: str
    start: datetime
    end: datetime


def parse_span(raw: str, *, option: str) -> CalendarSpan:
    """Read `YYYY-MM-DD` (a day) or `YYYY-MM` (a month), UTC; refuse anything else."""
    text = raw.strip()
    match = _DAY_OR_MONTH.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        year, month, day = int(match[1]), int(match[2]), match[3]
        start = datetime(year, month, int(day) if day else 1, tzinfo=UTC)
        if day:
            end = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=UTC)
        else:
            end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    except (ValueError, OverflowError):
        raise UserFacingError(texts.bad_day_or_month(option=option)) from None
    return CalendarSpan(text, start, end)


class DayOrMonth(app_commands.Transformer):
    """A text option that names a UTC day (`2026-11-05`) or month (`2026-11`)."""

    def __init__(self, option: str) -> None:
        self.option = option

    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.string

    @property
    def min_value(self) -> int:
        return len("2026-11")

    @property
    def max_value(self) -> int:
        return len("2026-11-05")

    async def transform(self, interaction: discord.Interaction, value: Any, /) -> CalendarSpan:
        return parse_span(str(value), option=self.option)
