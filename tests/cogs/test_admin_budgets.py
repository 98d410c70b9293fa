"""/video-admin budget controls as admins and members see them: allowances, role allowances,
caps, concurrency, the operator ceiling, usage, the ledger CSV and member balances.

Every command runs as a real interaction through the command tree against the fake Discord
and the provider simulator. The bot's clock starts on Wed 25 Nov 2026 12:00 UTC and tests move
it into the next day, week or month.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from db import budgets, credits, reports, set_clock
from tests import payloads
from tests.fakediscord import new_snowflake
from tests.harness import ADMIN_PERMISSIONS, MEMBER_PERMISSIONS, Harness

EPHEMERAL = 64
OPTION_ROLE = 8
WEDNESDAY = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NEXT_MONDAY = datetime(2026, 11, 30, 0, 0, 1, tzinfo=UTC)
NEXT_MONTH = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)
LEDGER_HEADER = [
    "created_at",
    "guild_id",
    "user_id",
    "delta",
    "balance_after",
    "reason",
    "task_id",
    "actor_id",
]
REFUSED = "Only members with the Manage Server permission can use `/video-admin`."


class Clock:
    """The moment the bot's budget periods and timestamps see: real time moved by an offset.

    Time keeps running (the poller polls on it); tests jump it to a chosen moment.
    """

    def __init__(self, moment: datetime) -> None:
        self.move_to(moment)

    def move_to(self, moment: datetime) -> None:
        self._offset = moment - datetime.now(UTC)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def timestamp(self) -> float:
        return self().timestamp()


@pytest.fixture(autouse=True)
def clock(harness: Harness) -> Iterator[Clock]:
    """Move the bot to Wed 25 Nov 2026 12:00 UTC: the database and the timetable alike."""
    moved = Clock(WEDNESDAY)
    set_clock(moved)
    # The poller compares the timetable's clock with the stored submission times.
    harness.bot.timetable.clock = moved.timestamp
    try:
        yield moved
    finally:
        set_clock(None)


# --------------------------------------------------------------------------- helpers


def new_member(harness: Harness, name: str) -> int:
    """Register a user with a real-sized snowflake id and return the id."""
    return int(harness.fake.add_user(new_snowflake(), username=name)["id"])


async def admin(harness: Harness, subcommand: str, **options: Any) -> dict[str, Any]:
    """Run a /video-admin subcommand as the server admin (the fake's default user)."""
    return await harness.run(subcommand, group="video-admin", options=options, admin=True)


def only_reply(harness: Harness, payload: dict[str, Any]) -> dict[str, Any]:
    """The single private message an interaction produced."""
    [reply] = harness.replies(payload)
    assert reply["flags"] & EPHEMERAL
    return reply


async def admin_says(harness: Harness, subcommand: str, **options: Any) -> str:
    """Run an admin command and return the text of its private reply."""
    return str(only_reply(harness, await admin(harness, subcommand, **options))["content"])


def role_object(role_id: int) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": f"role-{role_id % 10000}",
        "color": 0,
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": 1,
        "permissions": "0",
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


async def role_allowance(
    harness: Harness, role_id: int, amount: int, *, is_admin: bool = True
) -> dict[str, Any]:
    """Run `/video-admin role-allowance` with a resolved role option (type 8)."""
    payload = payloads.slash_command(
        harness.fake,
        name="video-admin",
        subcommand="role-allowance",
        options={"amount": amount},
        permissions=ADMIN_PERMISSIONS if is_admin else MEMBER_PERMISSIONS,
    )
    data = payload["data"]
    data["options"][0]["options"].append(
        {"name": "role", "type": OPTION_ROLE, "value": str(role_id)}
    )
    data.setdefault("resolved", {})["roles"] = {str(role_id): role_object(role_id)}
    await harness.dispatch(payload)
    return payload


async def my_balance(harness: Harness, user_id: int, roles: Iterable[int] = ()) -> tuple[str, str]:
    """Run `/video balance` as a member; return the embed's description and Refill field."""
    payload = await harness.run("balance", user_id=user_id, roles=list(roles))
    [embed] = only_reply(harness, payload)["embeds"]
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    return embed["description"], fields["Refill"]


async def generate(
    harness: Harness,
    user_id: int,
    *,
    prompt: str = "a lighthouse in a storm",
    duration: int = 5,
    sound: bool = False,
    roles: Iterable[int] = (),
    **context: Any,
) -> dict[str, Any]:
    return await harness.run(
        "generate",
        options={"prompt": prompt, "duration": duration, "sound": sound},
        user_id=user_id,
        roles=list(roles),
        **context,
    )


def accepted(harness: Harness, payload: dict[str, Any]) -> None:
    """The generate answered with the public task card."""
    callback = harness.callback(payload)
    assert callback.json["type"] == 4
    assert "embeds" in callback.json["data"], callback.json
    assert not callback.json["data"].get("flags", 0) & EPHEMERAL


def refusal(harness: Harness, payload: dict[str, Any]) -> str:
    """The generate was refused privately; return what the member read."""
    callback = harness.callback(payload)
    assert callback.json["type"] == 4
    assert callback.json["data"]["flags"] & EPHEMERAL
    assert not callback.json["data"].get("embeds")
    return str(callback.json["data"]["content"])


async def ledger_rows(harness: Harness, user_id: int) -> list[tuple[str, int]]:
    entries = await credits.ledger_for(harness.bot.db, harness.fake.guild_id, user_id)
    return [(entry.reason, entry.delta) for entry in entries]


async def generate_and_finish(harness: Harness, user_id: int, **kwargs: Any) -> str:
    """A generate that is accepted and delivered; return its task id."""
    payload = await generate(harness, user_id, **kwargs)
    accepted(harness, payload)
    newest = (await harness.tasks(user_id))[0]
    assert newest.provider_task_id is not None
    harness.simulator.finish(newest.provider_task_id)  # no need to wait for the render
    await harness.wait_for_task(newest.id, "done")
    return newest.id


async def generate_and_fail(harness: Harness, user_id: int, **kwargs: Any) -> str:
    """A generate the provider renders to FAILED (the member is refunded); return its id."""
    render_seconds = harness.simulator.render_seconds
    harness.simulator.render_seconds = 3600
    try:
        payload = await generate(harness, user_id, **kwargs)
    finally:
        harness.simulator.render_seconds = render_seconds
    accepted(harness, payload)
    task = (await harness.tasks(user_id))[0]
    assert task.provider_task_id is not None
    harness.simulator.fail_task(task.provider_task_id, "content policy")
    harness.simulator.finish(task.provider_task_id)
    await harness.wait_for_task(task.id, "failed")
    return task.id


def uploaded_csv(harness: Harness) -> tuple[str, list[list[str]]]:
    """The file the latest follow-up uploaded: its name and its CSV rows."""
    upload = harness.fake.calls("POST", r"^/webhooks/")[-1].files[0]
    return upload.filename, list(csv.reader(io.StringIO(upload.data.decode())))


# --------------------------------------------------------------------------- allowance


async def test_a_weekly_allowance_is_explained_and_new_members_start_with_it(
    harness: Harness,
) -> None:
    says = await admin_says(harness, "allowance", amount=520, period="week")
    assert says == (
        "Every member now gets **520** credits per week: once in each week (UTC), on the "
        "member's first use of the bot, a lower balance is raised back to 520; granted credits "
        "above it stay. Members already topped up this week get the new amount from the next "
        "one. Refills to **520** on Mon 30 Nov (00:00 UTC)."
    )
    newcomer = new_member(harness, "newcomer")
    description, refill = await my_balance(harness, newcomer)
    assert description == "You have **520** credits in this server."
    assert refill == "Refills to **520** on Mon 30 Nov (00:00 UTC)."
    assert await ledger_rows(harness, newcomer) == [("welcome", 520)]


async def test_the_balance_is_raised_back_to_the_allowance_in_the_next_week(
    harness: Harness, clock: Clock
) -> None:
    await admin(harness, "allowance", amount=520, period="week")
    member = new_member(harness, "spender")
    await generate_and_finish(harness, member, duration=10)  # 130
    assert (await my_balance(harness, member))[0] == "You have **390** credits in this server."

    clock.move_to(datetime(2026, 11, 29, 23, 59, tzinfo=UTC))  # still this week
    assert (await my_balance(harness, member))[0] == "You have **390** credits in this server."

    clock.move_to(NEXT_MONDAY)
    description, refill = await my_balance(harness, member)
    assert description == "You have **520** credits in this server."
    assert refill == "Refills to **520** on Mon 7 Dec (00:00 UTC)."
    assert await ledger_rows(harness, member) == [
        ("welcome", 520),
        ("charge", -130),
        ("refill", 130),
    ]
    # Once per week: asking again the same week changes nothing.
    await my_balance(harness, member)
    assert len(await ledger_rows(harness, member)) == 3


async def test_granted_credits_above_the_allowance_are_kept_at_the_refill(
    harness: Harness, clock: Clock
) -> None:
    await admin(harness, "allowance", amount=520, period="week")
    member = harness.fake.add_user(new_snowflake(), username="winner")
    says = await admin_says(harness, "grant", member=member, amount=200)
    assert "New balance: **720**." in says
    member_id = int(member["id"])
    await generate_and_finish(harness, member_id)  # 65 → 655, still above 520

    clock.move_to(NEXT_MONDAY)
    assert (await my_balance(harness, member_id))[0] == "You have **655** credits in this server."
    assert [reason for reason, _ in await ledger_rows(harness, member_id)] == [
        "welcome",
        "grant",
        "charge",
    ]


async def test_an_allowance_with_period_none_is_given_once_and_never_refilled(
    harness: Harness, clock: Clock
) -> None:
    says = await admin_says(harness, "allowance", amount=300, period="none")
    assert says == "New members now start with **300** credits; there is no refill."
    member = new_member(harness, "once")
    await generate_and_finish(harness, member)
    clock.move_to(NEXT_MONTH + timedelta(days=40))
    description, refill = await my_balance(harness, member)
    assert description == "You have **235** credits in this server."
    assert refill == "This server has no automatic refill: ask a server admin for more credits."
    assert await ledger_rows(harness, member) == [("welcome", 300), ("charge", -65)]


@pytest.mark.parametrize(
    ("period", "refills"),
    [
        ("day", "Refills to **100** on Thu 26 Nov (00:00 UTC)."),
        ("week", "Refills to **100** on Mon 30 Nov (00:00 UTC)."),
        ("month", "Refills to **100** on Tue 1 Dec (00:00 UTC)."),
    ],
)
async def test_the_allowance_reply_names_the_next_refill(
    harness: Harness, period: str, refills: str
) -> None:
    says = await admin_says(harness, "allowance", amount=100, period=period)
    assert says.startswith(f"Every member now gets **100** credits per {period}: ")
    assert says.endswith(refills)
    assert (await my_balance(harness, new_member(harness, "m")))[1] == refills


async def test_a_member_out_of_credits_is_told_the_refill_and_can_generate_after_it(
    harness: Harness, clock: Clock
) -> None:
    await admin(harness, "allowance", amount=130, period="week")
    member = new_member(harness, "broke")
    await generate_and_finish(harness, member, duration=10)
    says = refusal(harness, await generate(harness, member))
    assert "This clip costs **65** credits and you have **0**." in says
    assert "Refills to **130** on Mon 30 Nov (00:00 UTC)." in says

    clock.move_to(NEXT_MONDAY)
    accepted(harness, await generate(harness, member))  # the refill comes first
    assert await ledger_rows(harness, member) == [
        ("welcome", 130),
        ("charge", -130),
        ("refill", 130),
        ("charge", -65),
    ]


# --------------------------------------------------------------------------- role allowance


async def test_a_role_allowance_gives_its_members_more_as_newcomers_and_at_refill(
    harness: Harness, clock: Clock
) -> None:
    await admin(harness, "allowance", amount=520, period="week")
    patrons = new_snowflake()
    says = str(only_reply(harness, await role_allowance(harness, patrons, 900))["content"])
    assert says.startswith(f"Members with <@&{patrons}> now get **900** credits")

    patron, plain = new_member(harness, "patron"), new_member(harness, "plain")
    description, refill = await my_balance(harness, patron, roles=[patrons])
    assert description == "You have **900** credits in this server."
    assert refill == "Refills to **900** on Mon 30 Nov (00:00 UTC)."
    assert (await my_balance(harness, plain))[0] == "You have **520** credits in this server."

    await generate_and_finish(harness, patron, roles=[patrons], duration=10, sound=True)  # 260
    clock.move_to(NEXT_MONDAY)
    description, _ = await my_balance(harness, patron, roles=[patrons])
    assert description == "You have **900** credits in this server."
    assert await ledger_rows(harness, patron) == [
        ("welcome", 900),
        ("charge", -260),
        ("refill", 260),
    ]


async def test_the_highest_of_the_server_and_role_allowances_applies(harness: Harness) -> None:
    await admin(harness, "allowance", amount=520, period="week")
    low, high = new_snowflake(), new_snowflake()
    await role_allowance(harness, low, 300)
    await role_allowance(harness, high, 900)

    only_low, both = new_member(harness, "low"), new_member(harness, "both")
    low_only, _ = await my_balance(harness, only_low, roles=[low])
    assert low_only == "You have **520** credits in this server."  # the server's is higher
    highest, refill = await my_balance(harness, both, roles=[low, high])
    assert highest == "You have **900** credits in this server."
    assert refill == "Refills to **900** on Mon 30 Nov (00:00 UTC)."


async def test_a_role_allowance_of_zero_removes_it(harness: Harness) -> None:
    await admin(harness, "allowance", amount=520, period="week")
    patrons = new_snowflake()
    await role_allowance(harness, patrons, 900)
    says = str(only_reply(harness, await role_allowance(harness, patrons, 0))["content"])
    assert says == f"<@&{patrons}> no longer has its own allowance."
    again = str(only_reply(harness, await role_allowance(harness, patrons, 0))["content"])
    assert again == f"<@&{patrons}> had no allowance of its own; nothing changed."

    member = new_member(harness, "patron")
    description, refill = await my_balance(harness, member, roles=[patrons])
    assert description == "You have **520** credits in this server."
    assert refill == "Refills to **520** on Mon 30 Nov (00:00 UTC)."


async def test_an_admin_sees_a_role_holders_balance_at_the_role_allowance(
    harness: Harness,
) -> None:
    patrons = new_snowflake()
    await role_allowance(harness, patrons, 900)
    member = harness.fake.add_user(new_snowflake(), username="patron")
    payload = payloads.slash_command(
        harness.fake,
        name="video-admin",
        subcommand="balance",
        options={"member": member},
        permissions=ADMIN_PERMISSIONS,
    )
    payload["data"]["resolved"]["members"][member["id"]]["roles"] = [str(patrons)]
    await harness.dispatch(payload)
    [embed] = only_reply(harness, payload)["embeds"]
    assert embed["description"].startswith(f"<@{member['id']}> has **900** credits. ")


async def test_the_role_allowance_reply_states_the_rule_clearly(harness: Harness) -> None:
    await admin(harness, "allowance", amount=520, period="week")
    patrons = new_snowflake()
    says = str(only_reply(harness, await role_allowance(harness, patrons, 900))["content"])
    assert f"Members with <@&{patrons}> now get **900** credits per week" in says


async def test_a_role_allowance_on_everyone_reaches_every_member(harness: Harness) -> None:
    everyone = harness.fake.guild_id  # the @everyone role's id is the server's id
    says = str(only_reply(harness, await role_allowance(harness, everyone, 900))["content"])
    member = new_member(harness, "anyone")
    description, _ = await my_balance(harness, member)
    assert "now get **900**" in says
    assert description == "You have **900** credits in this server."


# --------------------------------------------------------------------------- cap


async def test_a_daily_cap_refuses_the_generate_that_would_pass_it(harness: Harness) -> None:
    says = await admin_says(harness, "cap", amount=130, period="day")
    assert says == (
        "The server may now spend **130** credits per day. Spent this day so far: 0; left: 130."
    )
    first, second, third = (new_member(harness, n) for n in ("first", "second", "third"))
    accepted(harness, await generate(harness, first))
    accepted(harness, await generate(harness, second))

    says = refusal(harness, await generate(harness, third))
    assert "used its budget of 130 credits for this day" in says
    assert "Generation opens again on Thu 26 Nov (00:00 UTC)" in says
    assert "`/video-admin cap`" in says
    assert "Nothing was charged" in says
    assert len(harness.simulator.requests_to("generate")) == 2
    assert await harness.tasks(third) == []
    assert await ledger_rows(harness, third) == []
    assert (await my_balance(harness, third))[0] == "You have **260** credits in this server."


async def test_refunded_tasks_do_not_count_against_the_cap(harness: Harness) -> None:
    await admin(harness, "cap", amount=130, period="day")
    first, second = new_member(harness, "first"), new_member(harness, "second")
    await generate_and_fail(harness, first, duration=10)  # 130 charged, then refunded
    assert await ledger_rows(harness, first) == [
        ("welcome", 260),
        ("charge", -130),
        ("refund", 130),
    ]
    accepted(harness, await generate(harness, first))
    accepted(harness, await generate(harness, second))
    assert "used its budget of 130" in refusal(harness, await generate(harness, second))


async def test_the_cap_counts_per_period_zero_means_nothing_and_none_removes_it(
    harness: Harness, clock: Clock
) -> None:
    await admin(harness, "cap", amount=130, period="day")
    member = new_member(harness, "member")
    await generate_and_finish(harness, member, duration=10)
    assert "used its budget" in refusal(harness, await generate(harness, member))

    clock.move_to(WEDNESDAY + timedelta(days=1))  # a new UTC day
    await generate_and_finish(harness, member, duration=10)
    other = new_member(harness, "other")
    assert "Generation opens again on Fri 27 Nov" in refusal(
        harness, await generate(harness, other)
    )

    # 0 means what an admin who types it means: nothing may be spent.
    assert "may now spend **0** credits per day" in await admin_says(
        harness, "cap", amount=0, period="day"
    )
    assert "used its budget of 0 credits" in refusal(harness, await generate(harness, other))
    assert await admin_says(harness, "cap", amount=0, period="none") == (
        "The server no longer has a spending cap."
    )
    accepted(harness, await generate(harness, other))
    assert await ledger_rows(harness, other) == [("welcome", 260), ("charge", -65)]


async def test_members_generating_at_the_same_moment_never_pass_the_cap(
    harness: Harness,
) -> None:
    await admin(harness, "cap", amount=130, period="day")
    members = [new_member(harness, f"m{n}") for n in range(6)]
    built = [
        payloads.slash_command(
            harness.fake,
            name="video",
            subcommand="generate",
            options={"prompt": "a crowd at once"},
            user_id=member,
            permissions=MEMBER_PERMISSIONS,
        )
        for member in members
    ]
    await asyncio.gather(*(harness.dispatch(payload) for payload in built))
    cards = [p for p in built if "embeds" in harness.callback(p).json["data"]]
    refused = [p for p in built if p not in cards]
    assert len(cards) == 2
    assert all("used its budget of 130" in refusal(harness, p) for p in refused)
    assert len(harness.simulator.requests_to("generate")) == 2
    charged = [
        reason for member in members for reason, _ in await ledger_rows(harness, member)
    ].count("charge")
    assert charged == 2


# --------------------------------------------------------------------------- limits


async def test_limits_one_refuses_a_second_clip_while_one_renders(harness: Harness) -> None:
    harness.simulator.render_seconds = 3600
    says = await admin_says(harness, "limits", max_concurrent=1)
    assert says == "Each member may now have **1** clip in the making at once."
    member, other = new_member(harness, "busy"), new_member(harness, "other")
    accepted(harness, await generate(harness, member))
    says = refusal(harness, await generate(harness, member))
    assert "You already have 1 clip being made, the most this server allows at once." in says
    assert "Wait for one to be posted" in says
    assert len(await harness.tasks(member)) == 1
    assert await ledger_rows(harness, member) == [("welcome", 260), ("charge", -65)]
    accepted(harness, await generate(harness, other))  # the limit is per member


async def test_by_default_a_member_may_have_two_clips_rendering(harness: Harness) -> None:
    harness.simulator.render_seconds = 3600
    member = new_member(harness, "busy")
    accepted(harness, await generate(harness, member))
    accepted(harness, await generate(harness, member))
    says = refusal(harness, await generate(harness, member))
    assert "You already have 2 clips being made" in says
    assert len(harness.simulator.requests_to("generate")) == 2
    assert (await my_balance(harness, member))[0] == "You have **130** credits in this server."


async def test_a_delivered_clip_frees_its_place(harness: Harness) -> None:
    await admin(harness, "limits", max_concurrent=1)
    member = new_member(harness, "steady")
    await generate_and_finish(harness, member)
    accepted(harness, await generate(harness, member))


# --------------------------------------------------------------------------- operator ceiling


@pytest.mark.settings(max_credits_per_day=100)
async def test_the_operator_ceiling_refuses_every_server_and_warns_once(
    harness: Harness, caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.WARNING)
    first, second = new_member(harness, "first"), new_member(harness, "second")
    accepted(harness, await generate(harness, first))
    says = refusal(harness, await generate(harness, second))
    assert says == (
        "The bot has reached its spending limit for today across all servers. "
        "Try again after 00:00 UTC. Nothing was charged."
    )
    assert "spending limit for today" in refusal(harness, await generate(harness, first))
    other_server = int(harness.fake.add_guild(new_snowflake())["id"])
    elsewhere = await generate(harness, second, guild_id=other_server)
    assert "spending limit for today" in refusal(harness, elsewhere)
    assert len(harness.simulator.requests_to("generate")) == 1
    assert await ledger_rows(harness, second) == []
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "MAX_CREDITS_PER_DAY" in r.getMessage()
    ]
    assert warnings == [
        "MAX_CREDITS_PER_DAY (100) reached: every server is refused until 00:00 UTC"
    ]

    clock.move_to(WEDNESDAY + timedelta(days=1))
    accepted(harness, await generate(harness, second))


# --------------------------------------------------------------------------- usage


async def test_usage_shows_spending_tasks_top_members_cap_and_settings_changes(
    harness: Harness,
) -> None:
    admin_id = harness.fake.user_id
    await admin(harness, "allowance", amount=520, period="week")
    await admin(harness, "cap", amount=1000, period="month")
    big = harness.fake.add_user(new_snowflake(), username="big")
    small, unlucky = new_member(harness, "small"), new_member(harness, "unlucky")
    big_id = int(big["id"])
    await generate_and_finish(harness, big_id)  # 65
    await generate_and_finish(harness, big_id, sound=True)  # 130
    await generate_and_finish(harness, small)  # 65
    await generate_and_fail(harness, unlucky, duration=10)  # 130, refunded
    await admin(harness, "grant", member=big, amount=50)  # not spending

    reply = only_reply(harness, await admin(harness, "usage"))
    [embed] = reply["embeds"]
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert embed["title"] == "Video usage this month"
    assert embed["description"] == (
        "Since Sun 1 Nov 00:00 UTC: **260** credits spent (390 charged, 130 refunded)."
    )
    assert fields["Tasks"].splitlines() == [
        "5 s, silent · done: 2",
        "5 s, with sound · done: 1",
        "10 s, silent · failed: 1",
    ]
    assert fields["Top members"].splitlines() == [f"<@{big_id}>: 195", f"<@{small}>: 65"]
    assert fields["Cap"] == "1000 per month; 740 left"
    assert fields["Allowance"] == "520 per week"
    assert fields["Per member at once"] == "2"
    changes = fields["Recent settings changes"].splitlines()
    assert len(changes) == 2
    assert changes[0].endswith(f"<@{admin_id}> cap: unset → 1000 per month")
    assert changes[1].endswith(f"<@{admin_id}> allowance: unset → 520 per week")
    for line in changes:  # when: a Discord date stamp of the moment of the change
        stamp = int(line.removeprefix("<t:").split(":d> ")[0])
        assert 0 <= stamp - WEDNESDAY.timestamp() < 60


async def test_usage_counts_only_the_period_asked_for(harness: Harness, clock: Clock) -> None:
    member = new_member(harness, "member")
    await generate_and_finish(harness, member)
    clock.move_to(WEDNESDAY + timedelta(days=1))
    await admin(harness, "limits", max_concurrent=3)

    [embed] = only_reply(harness, await admin(harness, "usage", period="day"))["embeds"]
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert embed["title"] == "Video usage this day"
    assert "**0** credits spent (0 charged, 0 refunded)" in embed["description"]
    assert fields["Tasks"] == "None."
    assert fields["Top members"] == "Nobody yet."
    assert fields["Cap"] == "None."
    assert fields["Allowance"] == "260 once (default)"
    assert fields["Per member at once"] == "3"
    assert fields["Recent settings changes"].endswith("max_concurrent: 2 → 3")

    [month] = only_reply(harness, await admin(harness, "usage"))["embeds"]
    assert "**65** credits spent (65 charged, 0 refunded)" in month["description"]


# --------------------------------------------------------------------------- ledger


async def spend_grant_fail_and_refill(harness: Harness, clock: Clock) -> tuple[int, int]:
    """A mix of every kind of ledger row for two members; return their ids."""
    await admin(harness, "allowance", amount=300, period="week")
    painter = harness.fake.add_user(new_snowflake(), username="painter")
    painter_id, other = int(painter["id"]), new_member(harness, "other")
    await generate_and_finish(harness, painter_id, duration=10)  # -130
    await generate_and_fail(harness, painter_id)  # -65 +65
    await admin(harness, "grant", member=painter, amount=-20, reason="penalty")
    await generate_and_finish(harness, other)  # -65
    clock.move_to(NEXT_MONDAY)
    await my_balance(harness, other)  # refill +65
    await my_balance(harness, painter_id)  # refill +150
    await admin(harness, "grant", member=painter, amount=1000)
    return painter_id, other


async def test_the_ledger_csv_explains_every_balance(harness: Harness, clock: Clock) -> None:
    painter, other = await spend_grant_fail_and_refill(harness, clock)
    guild = harness.fake.guild_id

    payload = await admin(harness, "ledger")
    filename, rows = uploaded_csv(harness)
    assert filename == f"ledger-{guild}.csv"
    header, body = rows[0], rows[1:]
    assert header == LEDGER_HEADER
    assert only_reply(harness, payload)["content"] == f"{len(body)} ledger rows."
    column = {name: index for index, name in enumerate(header)}
    assert {row[column["guild_id"]] for row in body} == {str(guild)}
    assert {row[column["user_id"]] for row in body} == {str(painter), str(other)}

    def of(user: int) -> list[tuple[str, str, str]]:
        return [
            (row[column["reason"]], row[column["delta"]], row[column["actor_id"]])
            for row in body
            if row[column["user_id"]] == str(user)
        ]

    admin_id = str(harness.fake.user_id)
    assert of(painter) == [
        ("welcome", "300", ""),
        ("charge", "-130", ""),
        ("charge", "-65", ""),
        ("refund", "65", ""),
        ("grant", "-20", admin_id),
        ("refill", "150", ""),
        ("grant", "1000", admin_id),
    ]
    assert of(other) == [("welcome", "300", ""), ("charge", "-65", ""), ("refill", "65", "")]
    tasks = {task.id for user in (painter, other) for task in await harness.tasks(user)}
    for row in body:
        reason, task_id = row[column["reason"]], row[column["task_id"]]
        assert (task_id in tasks) if reason in ("charge", "refund") else task_id == ""
        datetime.fromisoformat(row[column["created_at"]])

    for user in (painter, other):
        user_rows = [row for row in body if row[column["user_id"]] == str(user)]
        running = 0
        for row in user_rows:
            running += int(row[column["delta"]])
            assert int(row[column["balance_after"]]) == running
        assert running == await harness.balance(user)
    assert await harness.balance(painter) == 1300
    assert await credits.unexplained_balances(harness.bot.db) == []


async def test_the_ledger_of_one_member_has_only_their_rows(harness: Harness, clock: Clock) -> None:
    painter, _other = await spend_grant_fail_and_refill(harness, clock)
    payload = await admin(harness, "ledger", member=harness.fake.users[painter])
    filename, rows = uploaded_csv(harness)
    assert filename == f"ledger-{harness.fake.guild_id}-{painter}.csv"
    assert rows[0] == LEDGER_HEADER
    assert len(rows) == 8
    assert {row[2] for row in rows[1:]} == {str(painter)}
    assert sum(int(row[3]) for row in rows[1:]) == await harness.balance(painter)
    content = only_reply(harness, payload)["content"]
    assert content == f"7 ledger rows for <@{painter}>."


async def test_an_empty_ledger_is_just_the_header(harness: Harness) -> None:
    payload = await admin(harness, "ledger")
    assert only_reply(harness, payload)["content"] == "0 ledger rows."
    assert uploaded_csv(harness)[1] == [LEDGER_HEADER]


# --------------------------------------------------------------------------- balance member


async def test_an_admin_sees_another_members_balance_and_recent_tasks(
    harness: Harness,
) -> None:
    await admin(harness, "allowance", amount=520, period="week")
    member = harness.fake.add_user(new_snowflake(), username="painter", global_name="Painter")
    member_id = int(member["id"])
    done = await generate_and_finish(harness, member_id)
    failed = await generate_and_fail(harness, member_id)

    [embed] = only_reply(harness, await admin(harness, "balance", member=member))["embeds"]
    assert embed["title"] == "Credits of Painter"
    assert embed["description"] == (
        f"<@{member_id}> has **455** credits. Refills to **520** on Mon 30 Nov (00:00 UTC)."
    )
    [recent] = embed["fields"]
    assert recent["name"] == "Recent tasks"
    lines = recent["value"].splitlines()
    assert lines[0].startswith(f"`{failed}` · ")
    assert lines[2].startswith(f"`{done}` · ")
    assert "a lighthouse in a storm" in recent["value"]


async def test_five_posted_clips_with_long_prompts_fit_the_recent_tasks_field(
    harness: Harness,
) -> None:
    # Issue 16: this field passed 1,024 characters and Discord refused the whole answer.
    member = harness.fake.add_user(new_snowflake(), username="painter")
    await admin(harness, "grant", member=member, amount=1000)
    prompts = [
        f"Take {n}: a slow dolly shot through a rain-soaked neon night market, "
        "steam rising from the food stalls, reflections shimmering in every puddle"
        for n in range(1, 6)
    ]
    task_ids = [await generate_and_finish(harness, int(member["id"]), prompt=p) for p in prompts]

    [embed] = only_reply(harness, await admin(harness, "balance", member=member))["embeds"]
    [recent] = embed["fields"]
    assert len(recent["value"]) <= 1024
    lines = recent["value"].splitlines()
    # All five are listed, newest first, each with its clip and the start of its prompt.
    assert [line.split(" · ")[0] for line in lines[::2]] == [
        f"`{task_id}`" for task_id in reversed(task_ids)
    ]
    assert all("[clip](https://discord.com/channels/" in line for line in lines[::2])
    for line, prompt in zip(lines[1::2], reversed(prompts), strict=True):
        assert line.startswith(f"> {prompt[:30]}") and line.endswith("…")


async def test_looking_at_a_bots_balance_gives_it_no_credits(harness: Harness) -> None:
    robot = harness.fake.add_user(new_snowflake(), username="robot", bot=True)
    await admin(harness, "balance", member=robot)
    assert await ledger_rows(harness, int(robot["id"])) == []


async def test_a_member_with_no_tasks_shows_none_yet(harness: Harness) -> None:
    member = harness.fake.add_user(new_snowflake(), username="quiet")
    [embed] = only_reply(harness, await admin(harness, "balance", member=member))["embeds"]
    assert embed["description"].startswith(f"<@{member['id']}> has **260** credits. ")
    assert embed["fields"][0]["value"] == "None yet."


# --------------------------------------------------------------------------- refusals


ADMIN_COMMANDS: list[tuple[str, dict[str, Any]]] = [
    ("grant", {"amount": 100, "member": None}),
    ("allowance", {"amount": 5000, "period": "week"}),
    ("role-allowance", {"amount": 5000}),
    ("cap", {"amount": 65, "period": "day"}),
    ("limits", {"max_concurrent": 1}),
    ("usage", {}),
    ("ledger", {}),
    ("ledger", {"member": None}),
    ("balance", {"member": None}),
]


@pytest.mark.parametrize(
    ("subcommand", "options"),
    ADMIN_COMMANDS,
    ids=[f"{name}-{'-'.join(options)}" for name, options in ADMIN_COMMANDS],
)
async def test_every_admin_command_is_refused_without_manage_server(
    harness: Harness, subcommand: str, options: dict[str, Any]
) -> None:
    target = harness.fake.add_user(new_snowflake(), username="target")
    options = {name: target if value is None else value for name, value in options.items()}
    if subcommand == "role-allowance":
        payload = await role_allowance(harness, new_snowflake(), 5000, is_admin=False)
    else:
        payload = await harness.run(subcommand, group="video-admin", options=options, admin=False)

    callback = harness.callback(payload)
    assert callback.json["type"] == 4
    assert callback.json["data"]["flags"] & EPHEMERAL
    assert callback.json["data"]["content"] == REFUSED
    assert not callback.json["data"].get("embeds")
    assert harness.fake.calls("POST", r"^/webhooks/") == []
    guild = harness.fake.guild_id
    assert await budgets.budget(harness.bot.db, guild) == budgets.GuildBudget(guild)
    assert await budgets.recent_changes(harness.bot.db, guild, limit=5) == []
    header_only = await reports.ledger_csv(harness.bot.db, guild)
    assert header_only == (",".join(LEDGER_HEADER) + "\n").encode()

    # The target's credits and generation still follow the defaults.
    target_id = int(target["id"])
    accepted(harness, await generate(harness, target_id))
    assert await ledger_rows(harness, target_id) == [("welcome", 260), ("charge", -65)]
