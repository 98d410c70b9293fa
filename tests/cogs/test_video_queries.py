"""/video status, balance and history: each member sees their own tasks; admins see the server's."""

from __future__ import annotations

from typing import Any

from db import budgets
from tests import payloads
from tests.harness import Harness

EPHEMERAL = 64
OTHER_MEMBER = 4242


async def make_tasks(harness: Harness, count: int, *, user_id: int | None = None) -> list[str]:
    """Record tasks directly (as generate would) to have a history to page through."""
    ids = []
    # These tasks never finish; let one member hold more than the default two at once.
    await budgets.set_max_concurrent(harness.bot.db, harness.fake.guild_id, 100, actor_id=1)
    for n in range(count):
        task = await harness.reserve(user_id, prompt=f"scene number {n}", cost=0)
        ids.append(task.id)
    return ids


def only_reply(harness: Harness, payload: dict[str, Any]) -> dict[str, Any]:
    [reply] = harness.replies(payload)
    assert reply["flags"] & EPHEMERAL
    return reply


async def test_status_shows_the_callers_own_task(harness: Harness) -> None:
    [task_id] = await make_tasks(harness, 1)
    payload = await harness.run("status", options={"task_id": task_id})
    embed = only_reply(harness, payload)["embeds"][0]
    assert "scene number 0" in embed["description"]
    assert {f["name"]: f["value"] for f in embed["fields"]}["Task id"] == f"`{task_id}`"


async def test_status_of_someone_elses_task_reads_like_an_unknown_one(harness: Harness) -> None:
    [theirs] = await make_tasks(harness, 1, user_id=OTHER_MEMBER)
    foreign = await harness.run("status", options={"task_id": theirs})
    unknown = await harness.run("status", options={"task_id": "deadbeef"})
    sql = await harness.run("status", options={"task_id": "' OR 1=1 --"})
    huge = await harness.run("status", options={"task_id": "x" * 10_000})
    for payload in (foreign, unknown, sql, huge):
        assert "You have no task" in only_reply(harness, payload)["content"]
    # Word for word what an unknown id gets: nothing tells whose task it is.
    unknown_reply = only_reply(harness, unknown)["content"]
    assert only_reply(harness, foreign)["content"] == unknown_reply.replace("deadbeef", theirs)


async def test_an_admin_sees_any_task_of_their_server(harness: Harness) -> None:
    [theirs] = await make_tasks(harness, 1, user_id=OTHER_MEMBER)
    payload = await harness.run("status", options={"task_id": theirs}, admin=True)
    assert only_reply(harness, payload)["embeds"][0]["description"] == "scene number 0"


async def test_status_autocomplete_offers_only_the_callers_tasks(harness: Harness) -> None:
    mine = await make_tasks(harness, 3)
    await make_tasks(harness, 2, user_id=OTHER_MEMBER)
    payload = payloads.autocomplete(
        harness.fake,
        name="video",
        subcommand="status",
        focused="task_id",
        options={"task_id": ""},
        permissions=0,
    )
    await harness.dispatch(payload)
    [callback] = harness.fake.calls("POST", rf"^/interactions/{payload['id']}/")
    assert callback.json["type"] == 8
    offered = [choice["value"] for choice in callback.json["data"]["choices"]]
    assert sorted(offered) == sorted(mine)

    typed = payloads.autocomplete(
        harness.fake,
        name="video",
        subcommand="status",
        focused="task_id",
        options={"task_id": "number 1"},
        permissions=0,
    )
    await harness.dispatch(typed)
    [callback] = harness.fake.calls("POST", rf"^/interactions/{typed['id']}/")
    assert [c["value"] for c in callback.json["data"]["choices"]] == [mine[1]]


async def test_balance_shows_credits_and_prices(harness: Harness) -> None:
    payload = await harness.run("balance")
    embed = only_reply(harness, payload)["embeds"][0]
    assert "You have **260** credits" in embed["description"]
    prices = {f["name"]: f["value"] for f in embed["fields"]}["Prices"]
    for line in (
        "5 s, silent: **65**",
        "10 s, silent: **130**",
        "5 s, with sound: **130**",
        "10 s, with sound: **260**",
    ):
        assert line in prices


async def test_history_pages_ten_at_a_time_newest_first(harness: Harness) -> None:
    ids = await make_tasks(harness, 12)
    payload = await harness.run("history")
    reply = only_reply(harness, payload)
    first_page = reply["embeds"][0]["description"]
    assert first_page.count("\n> ") == 10
    assert first_page.index(ids[-1]) < first_page.index(ids[-2])
    assert ids[0] not in first_page and ids[1] not in first_page
    assert reply["embeds"][0]["footer"]["text"] == "Page 1 of 2 · 12 tasks"

    buttons = [c for row in reply["components"] for c in row["components"]]
    older = next(b for b in buttons if b["label"] == "Older")
    click = payloads.component_click(harness.fake, older["custom_id"], reply, permissions=0)
    await harness.dispatch(click)
    [update] = harness.fake.calls("POST", rf"^/interactions/{click['id']}/")
    assert update.json["type"] == 7
    second_page = update.json["data"]["embeds"][0]["description"]
    assert ids[0] in second_page and ids[1] in second_page and ids[2] not in second_page


async def test_history_of_a_newcomer_says_how_to_start(harness: Harness) -> None:
    payload = await harness.run("history")
    assert "No tasks yet" in only_reply(harness, payload)["embeds"][0]["description"]
