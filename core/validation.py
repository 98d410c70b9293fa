"""Input checks that run before anything is charged or sent to the provider."""

from __future__ import annotations

import ipaddress
import unicodedata
from urllib.parse import urlsplit

import discord

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
        raise UserFacingError("Your prompt is empty: describe the scene you want, in words.")
    if len(prompt) > MAX_PROMPT_LENGTH:
        raise UserFacingError(
            f"Your prompt is {len(prompt)} characters long; the limit is {MAX_PROMPT_LENGTH}. "
            "Shorten it and try again."
        )
    return prompt


def check_image_url(raw: str) -> str:
    """Return the URL if it is a plain http(s) address with a host; refuse it otherwise."""
    url = raw.strip()
    refusal = UserFacingError(
        "`image_url` must be a web address starting with http:// or https://, "
        "such as https://example.com/picture.png"
    )
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
        raise UserFacingError("`image_url` must not contain a user name or password.")
    if _is_local(host):
        raise UserFacingError(
            "`image_url` must be a public web address, not a local or private network one."
        )
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
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return not address.is_global


def check_image_attachment(attachment: discord.Attachment) -> str:
    """Return the attachment's URL if it is a picture of a sane size; refuse it otherwise."""
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type not in IMAGE_TYPES:
        raise UserFacingError(
            f"`{discord.utils.escape_markdown(attachment.filename)[:100]}` is not an image: "
            "attach a PNG, JPEG, WebP or GIF picture."
        )
    if attachment.size <= 0:
        raise UserFacingError("The attached image is empty: attach the picture again.")
    if attachment.size > MAX_IMAGE_BYTES:
        raise UserFacingError(
            f"The attached image is {attachment.size / 1024 / 1024:.1f} MiB; "
            f"the limit is {MAX_IMAGE_BYTES // 1024 // 1024} MiB."
        )
    return attachment.url


def check_amount(amount: int, *, lowest: int, highest: int, what: str) -> int:
    """Refuse a number outside what the option allows (Discord checks too, a crafted call not)."""
    if not lowest <= amount <= highest:
        raise UserFacingError(f"{what} must be between {lowest:,} and {highest:,}.")
    return amount
