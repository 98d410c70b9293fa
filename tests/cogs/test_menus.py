"""Menus that outlive their handlers: lapsed offers and pagers, and clicks nobody handles."""

from __future__ import annotations

import sys
from typing import Any

import pytest

import core.clip_buttons
from core import texts
from tests import payloads
from tests.harness import MEMBER_PERMISSIONS, Harness

EPHEMERAL = 64


async def delivered_clip(harness: Harness) -> dict[str, Any]:
    await harness.run("generate", options={"prompt": "a lighthouse in a storm"})
    task = await harness.wait_for_task((await harness.tasks())[0].id, "done")
    assert task.delivery_message_id is not None
    return harness.fake.messages_by_id[task.delivery_message_id]


def button(message: dict[str, Any], label: str) -> dict[str, Any]:
    return next(
        b
        for row in message["components"]
        for b in row["components"]
        if b.get("label", "").startswith(label)
    )


async def test_a_lapsed_offer_loses_its_buttons_and_charges_nothing(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.clip_buttons, "CONFIRM_SECONDS", 0.2)
    clip = await delivered_clip(harness)
    click = payloads.component_click(
        harness.fake, button(clip, "Reroll")["custom_id"], clip, permissions=MEMBER_PERMISSIONS
    )
    await harness.dispatch(click)
    edit = await harness.fake.wait_for_call(
        "PATCH", rf"^/webhooks/\d+/{click['token']}/messages/@original$"
    )
    assert edit.json["content"] == texts.TAKE_EXPIRED and edit.json["components"] == []
    assert await harness.balance() == 195  # only the first clip was charged


async def test_a_click_nobody_handles_is_answered_not_left_failing(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # load_extension runs the cog from its own module object: patch that one.
    cog_module = sys.modules[type(harness.bot.get_cog("Video")).__module__]
    monkeypatch.setattr(cog_module, "EXPIRED_MENU_GRACE_SECONDS", 0.05)
    message = harness.fake.add_message(content="an old history page")
    stale = payloads.component_click(
        harness.fake, "0" * 32, message, permissions=MEMBER_PERMISSIONS
    )
    await harness.dispatch(stale)
    callback = await harness.fake.wait_for_call(
        "POST", rf"^/interactions/{stale['id']}/[^/]+/callback$"
    )
    assert callback.json["data"]["flags"] & EPHEMERAL
    assert callback.json["data"]["content"] == texts.MENU_EXPIRED


@pytest.mark.allow_errors
async def test_a_button_that_fails_unexpectedly_still_answers(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = await delivered_clip(harness)

    async def broken_offer(*args: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(core.clip_buttons, "offer", broken_offer)
    click = payloads.component_click(
        harness.fake, button(clip, "Reroll")["custom_id"], clip, permissions=MEMBER_PERMISSIONS
    )
    await harness.dispatch(click)
    [answer] = harness.replies(click)
    assert answer["flags"] & EPHEMERAL and answer["content"] == texts.OUR_FAULT
