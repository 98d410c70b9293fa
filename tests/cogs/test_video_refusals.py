"""Refusals of /video generate beyond bad input (test_hostile_input.py has that catalogue)."""

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
