"""Every refusal of /video generate: private, clear, no provider call, nothing charged."""

from __future__ import annotations

from typing import Any

import pytest

from db import credits
from tests.harness import Harness

EPHEMERAL = 64


async def assert_refused_for_free(harness: Harness, payload: dict[str, Any], says: str) -> None:
    callback = harness.callback(payload)
    assert callback.json["type"] == 4
    assert callback.json["data"]["flags"] & EPHEMERAL
    assert says in callback.json["data"]["content"]
    assert harness.simulator.requests_to("generate") == []
    assert await harness.tasks() == []
    entries = await credits.ledger_for(harness.bot.db, harness.fake.guild_id, harness.fake.user_id)
    assert all(entry.reason == "welcome" for entry in entries)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"prompt": "   "}, "Your prompt is empty"),
        ({"prompt": "\n\t \u0007"}, "Your prompt is empty"),
        ({"prompt": "x" * 1001}, "Your prompt is 1001 characters long; the limit is 1000"),
        ({"prompt": "ok", "image_url": "ftp://example.com/a.png"}, "must be a web address"),
        ({"prompt": "ok", "image_url": "https://"}, "must be a web address"),
        ({"prompt": "ok", "image_url": "not a url"}, "must be a web address"),
        ({"prompt": "ok", "image_url": "javascript:alert(1)"}, "must be a web address"),
        ({"prompt": "ok", "image_url": "https://u:p@example.com/a.png"}, "user name or password"),
    ],
)
async def test_bad_input_is_refused_privately(
    harness: Harness, options: dict[str, Any], says: str
) -> None:
    payload = await harness.run("generate", options=options)
    await assert_refused_for_free(harness, payload, says)


@pytest.mark.parametrize(
    ("data", "filename", "content_type", "says"),
    [
        (b"%PDF-1.4", "notes.pdf", "application/pdf", "is not an image"),
        (b"", "empty.png", "image/png", "is empty"),
        (b"GIF89a", "clip.mp4", "video/mp4", "is not an image"),
    ],
)
async def test_attachments_that_are_not_usable_images_are_refused(
    harness: Harness, data: bytes, filename: str, content_type: str, says: str
) -> None:
    uploaded = harness.fake.add_attachment(data, filename, content_type)
    payload = await harness.run(
        "generate", options={"prompt": "animate it", "image": uploaded}, attachments=[uploaded]
    )
    await assert_refused_for_free(harness, payload, says)


async def test_a_huge_attachment_is_refused(harness: Harness) -> None:
    uploaded = harness.fake.add_attachment(b"\x89PNG", "big.png", "image/png")
    uploaded["size"] = 50 * 1024 * 1024  # what Discord reports; the bytes are never fetched
    payload = await harness.run(
        "generate", options={"prompt": "animate it", "image": uploaded}, attachments=[uploaded]
    )
    await assert_refused_for_free(harness, payload, "the limit is 20 MiB")


@pytest.mark.settings(default_credits=100)
async def test_not_enough_credits_says_what_to_do(harness: Harness) -> None:
    payload = await harness.run("generate", options={"prompt": "a cat", "duration": 10})
    await assert_refused_for_free(harness, payload, "costs **130** credits and you have **100**")
    assert "ask a server admin" in harness.callback(payload).json["data"]["content"]
    assert await harness.balance() == 100


async def test_the_prompt_is_trimmed_before_it_is_sent(harness: Harness) -> None:
    await harness.run("generate", options={"prompt": "   a calm lake at dawn \n "})
    [generate] = harness.simulator.requests_to("generate")
    assert isinstance(generate.json, dict) and generate.json["prompt"] == "a calm lake at dawn"
