"""The bot serves its own servers only: not foreign ones (a user-installed copy), not DMs.

An interaction from a server the bot is not in must neither welcome nor charge anyone, and
that server's admins are not ours; a command that needs a server says so in a DM.
"""

from __future__ import annotations

from typing import Any

import pytest

from core import texts
from tests import payloads
from tests.fakediscord import new_snowflake
from tests.harness import ADMIN_PERMISSIONS, MEMBER_PERMISSIONS, Harness

EPHEMERAL = 64
GUILD_INSTALL, USER_INSTALL = 0, 1
GUILD_CONTEXT = 0


def foreign_server() -> dict[str, Any]:
    """Where a user-installed copy of the app is used: a server the bot never joined."""
    return {"guild_id": new_snowflake(), "channel_id": new_snowflake()}


def private_answer(harness: Harness, payload: dict[str, Any]) -> str:
    [reply] = harness.replies(payload)
    assert reply["flags"] & EPHEMERAL
    return str(reply["content"])


async def member_rows(harness: Harness, guild_id: int) -> int:
    row = await harness.bot.db.fetchone(
        "SELECT count(*) FROM members WHERE guild_id = ?", (guild_id,)
    )
    assert row is not None
    return int(row[0])


async def test_every_command_is_installed_with_a_server_only(harness: Harness) -> None:
    commands = harness.fake.global_commands
    assert {c["name"] for c in commands} == {"video", "video-admin", "Animate image"}
    for command in commands:
        assert command["integration_types"] == [GUILD_INSTALL], command["name"]
        assert command["contexts"] == [GUILD_CONTEXT], command["name"]


@pytest.mark.parametrize(
    ("subcommand", "options"),
    [
        ("generate", {"prompt": "a fox in the snow"}),
        ("balance", {}),
        ("history", {}),
        ("notify", {"setting": "on"}),
        ("status", {"task_id": "abcdef123456"}),
    ],
)
async def test_a_member_command_in_a_foreign_server_welcomes_and_charges_nobody(
    harness: Harness, subcommand: str, options: dict[str, Any]
) -> None:
    where = foreign_server()
    payload = await harness.run(subcommand, options=options, **where)
    assert private_answer(harness, payload) == texts.NOT_IN_THIS_SERVER
    assert await member_rows(harness, where["guild_id"]) == 0
    assert harness.simulator.requests_to("generate") == []


async def test_an_admin_of_a_foreign_server_cannot_grant_credits(harness: Harness) -> None:
    where = foreign_server()
    payload = await harness.run(
        "grant",
        group="video-admin",
        options={"member": harness.fake.user_id, "amount": 1_000_000},
        admin=True,
        **where,
    )
    assert private_answer(harness, payload) == texts.NOT_IN_THIS_SERVER
    assert await member_rows(harness, where["guild_id"]) == 0
    # The member's standing in the real server is untouched too.
    assert await member_rows(harness, harness.fake.guild_id) == 0


async def test_a_user_installed_interaction_in_a_foreign_server_is_refused(
    harness: Harness,
) -> None:
    where = foreign_server()
    payload = payloads.slash_command(
        harness.fake,
        name="video",
        subcommand="generate",
        options={"prompt": "a fox in the snow"},
        user_id=harness.fake.user_id,
        permissions=MEMBER_PERMISSIONS,
        **where,
    )
    payload["authorizing_integration_owners"] = {str(USER_INSTALL): str(harness.fake.user_id)}
    await harness.dispatch(payload)
    assert private_answer(harness, payload) == texts.NOT_IN_THIS_SERVER
    assert await harness.tasks() == []


async def test_autocomplete_in_a_foreign_server_offers_nothing(harness: Harness) -> None:
    await harness.reserve()  # a task of the test member in the real server
    payload = payloads.autocomplete(
        harness.fake,
        name="video",
        subcommand="status",
        focused="task_id",
        permissions=ADMIN_PERMISSIONS,
        **foreign_server(),
    )
    await harness.dispatch(payload)
    callback = harness.callback(payload).json
    assert callback["type"] == 8 and callback["data"]["choices"] == []


async def test_a_clip_button_clicked_in_a_foreign_server_is_refused(harness: Harness) -> None:
    task = await harness.reserve()
    where = foreign_server()
    custom_id = f"video:reroll:{task.id}"
    reroll = {"type": 2, "style": 2, "label": "Reroll", "custom_id": custom_id}
    message = harness.fake.add_message(
        content="a clip post", components=[{"type": 1, "components": [reroll]}]
    )
    click = payloads.component_click(
        harness.fake,
        custom_id,
        message,
        permissions=MEMBER_PERMISSIONS,
        **where,
    )
    await harness.dispatch(click)
    assert private_answer(harness, click) == texts.NOT_IN_THIS_SERVER
    assert await harness.balance() == 260 - task.cost  # only the one charge


async def test_animate_image_in_a_foreign_server_opens_no_form(harness: Harness) -> None:
    fake = harness.fake
    [command] = [c for c in fake.global_commands if c["name"] == "Animate image"]
    image = fake.add_attachment(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "cat.png", "image/png")
    message = fake.add_message(content="my cat", attachments=[image])
    menu = payloads.interaction(
        fake,
        2,
        {
            "id": command["id"],
            "name": command["name"],
            "type": 3,
            "target_id": message["id"],
            "resolved": {"messages": {message["id"]: message}},
        },
        permissions=MEMBER_PERMISSIONS,
        **foreign_server(),
    )
    await harness.dispatch(menu)
    callback = harness.callback(menu).json
    assert callback["type"] == 4, "a private message, not the form"
    assert callback["data"]["content"] == texts.NOT_IN_THIS_SERVER
    assert callback["data"]["flags"] & EPHEMERAL


@pytest.mark.parametrize(
    ("group", "subcommand", "options"),
    [
        ("video", "generate", {"prompt": "a fox in the snow"}),
        ("video", "balance", {}),
        ("video", "history", {}),
        ("video", "status", {"task_id": "abcdef123456"}),
        ("video-admin", "usage", {}),
    ],
)
async def test_a_command_in_a_dm_says_to_use_it_in_a_server(
    harness: Harness, group: str, subcommand: str, options: dict[str, Any]
) -> None:
    # The error fixture fails the test on any ERROR line: no AssertionError in the log.
    payload = await harness.run(subcommand, group=group, options=options, dm=True)
    assert private_answer(harness, payload) == texts.USE_IN_SERVER
    assert harness.simulator.requests_to("generate") == []
