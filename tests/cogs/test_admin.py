"""/video-admin grant: admins add or take credits, others are refused, the ledger records it."""

from __future__ import annotations

from typing import Any

from db import credits
from tests.harness import Harness

EPHEMERAL = 64


async def grant(harness: Harness, amount: int, *, admin: bool = True, **extra: Any) -> str:
    member = harness.fake.add_user(7777, username="painter")
    payload = await harness.run(
        "grant",
        group="video-admin",
        options={"member": member, "amount": amount, **extra},
        admin=admin,
    )
    [reply] = harness.replies(payload)
    assert reply["flags"] & EPHEMERAL
    return str(reply["content"])


async def test_the_admin_command_is_synced_for_manage_server_only(harness: Harness) -> None:
    [admin] = [c for c in harness.fake.global_commands if c["name"] == "video-admin"]
    assert int(admin["default_member_permissions"]) == 1 << 5
    assert admin["contexts"] == [0]


async def test_an_admin_gives_credits_and_sees_the_new_balance(harness: Harness) -> None:
    says = await grant(harness, 100, reason="won the contest")
    assert says.startswith("Gave **100** credits to <@7777>. New balance: **360**.")
    assert "won the contest" in says
    assert await harness.balance(7777) == 360
    entries = await credits.ledger_for(harness.bot.db, harness.fake.guild_id, 7777)
    assert [(e.reason, e.delta, e.actor_id, e.note) for e in entries] == [
        ("welcome", 260, None, "starting credits"),
        ("grant", 100, harness.fake.user_id, "won the contest"),
    ]


async def test_an_admin_takes_credits_but_never_below_zero(harness: Harness) -> None:
    assert "New balance: **60**" in await grant(harness, -200)
    says = await grant(harness, -61)
    assert "has **60** credits; you can take at most 60. Nothing was changed." in says
    assert await harness.balance(7777) == 60


async def test_a_member_without_manage_server_is_refused(harness: Harness) -> None:
    says = await grant(harness, 1000, admin=False)
    assert "Only members with the Manage Server permission" in says
    assert await credits.ledger_for(harness.bot.db, harness.fake.guild_id, 7777) == []


async def test_a_zero_grant_changes_nothing(harness: Harness) -> None:
    assert "An amount of 0 changes nothing" in await grant(harness, 0)
    assert await credits.ledger_for(harness.bot.db, harness.fake.guild_id, 7777) == []


async def test_the_grant_message_pings_nobody(harness: Harness) -> None:
    await grant(harness, 5, reason="@everyone party <@&123>")
    [followup] = harness.fake.calls("POST", r"^/webhooks/")
    assert followup.json["allowed_mentions"] == {"parse": []}
