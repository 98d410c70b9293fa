"""End to end: what a member can do with a clip once it is posted, and the other ways in.

The buttons under a clip (reroll, 10 s, with sound, delete) and their confirmations, clicks by
someone else and after a restart, the "Animate image" context menu and its modal, progress on
the card, the DM when a clip is ready, `/video status` and the `/video history` pager. Each
test drives the bot only as Discord would (over the fake gateway) and asserts what the member
would notice.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import re
from pathlib import Path
from typing import Any, cast

import pytest

from cogs.rendering import Rendering
from core import texts
from core.bot import VideoBot
from db import credits
from db.tasks import Task
from provider.simulator import ProviderSimulator
from tests import payloads
from tests.e2e.live import LiveHarness, live_bot
from tests.fakediscord import EPHEMERAL, FakeDiscord, Recorded
from tests.harness import ADMIN_PERMISSIONS, MEMBER_PERMISSIONS, bot_settings, errors_logged

PROMPT = "A lighthouse in a storm, waves crashing"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 100
MESSAGE_COMMAND = 3  # application command type of a message context menu


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def quick_renders(simulator: ProviderSimulator) -> None:
    """Clips render in 50 ms unless a test asks for longer (the fixture's default is 200 ms)."""
    simulator.render_seconds = 0.05


def rendering(bot: VideoBot) -> Rendering:
    """The extension that polls and delivers: it built the bot's poller and delivery."""
    cog = bot.get_cog("Rendering")
    assert cog is not None
    # load_extension runs the module anew: its class is not the one imported here.
    return cast(Rendering, cog)


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The buttons of a message (or of an interaction response's data), in order."""
    return [
        component
        for row in message.get("components") or []
        for component in row.get("components") or []
        if component["type"] == 2
    ]


def button(message: dict[str, Any], label: str) -> dict[str, Any]:
    """The one button whose label is `label` or starts with `label · `."""
    [found] = [
        b
        for b in buttons(message)
        if b.get("label") == label or b["label"].startswith(label + " ·")
    ]
    return found


def labels(message: dict[str, Any]) -> list[str]:
    return [b["label"] for b in buttons(message)]


def clip_post(fake: FakeDiscord, task_id: str, channel_id: int | None = None) -> dict[str, Any]:
    """The message that carries the task's clip."""
    [post] = [
        m
        for m in fake.channel_messages(channel_id or fake.channel_id)
        if "your clip is ready" in m["content"] and f"`{task_id}`" in m["content"]
    ]
    return post


def answer(live: LiveHarness, payload: dict[str, Any]) -> dict[str, Any]:
    """What the member sees in answer to an interaction: its first message."""
    callback = live.callback(payload).json
    if callback["type"] == 4:
        data: dict[str, Any] = callback["data"]
        return data
    return live.replies(payload)[-1]


def is_private(message: dict[str, Any]) -> bool:
    return bool(int(message.get("flags") or 0) & EPHEMERAL)


def fields(embed: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["value"] for f in embed.get("fields") or []}


async def ledger_reasons(live: LiveHarness, user_id: int | None = None) -> list[str]:
    entries = await credits.ledger_for(
        live.bot.db, live.fake.guild_id, user_id or live.fake.user_id
    )
    return [entry.reason for entry in entries]


async def deliver(live: LiveHarness, **options: Any) -> tuple[Task, dict[str, Any]]:
    """`/video generate` as the test member; wait until the clip is posted."""
    await live.run("generate", options={"prompt": PROMPT, **options})
    newest = (await live.tasks())[0]
    task = await live.wait_for_task(newest.id, "done")
    # The card turns "Done" just after the task does.
    card = f"/channels/{task.channel_id}/messages/{task.card_message_id}"
    await live.fake.wait_for(
        lambda r: (
            r.method == "PATCH" and r.path == card and r.json["embeds"][0]["title"] == "✅ Done"
        )
    )
    return task, clip_post(live.fake, task.id)


async def click(
    live: LiveHarness,
    message: dict[str, Any],
    label: str,
    *,
    user_id: int | None = None,
    permissions: int = MEMBER_PERMISSIONS,
) -> dict[str, Any]:
    """Click the button labelled `label` on `message` and wait for the bot's handler."""
    payload = payloads.component_click(
        live.fake,
        button(message, label)["custom_id"],
        message,
        user_id=user_id or live.fake.user_id,
        permissions=permissions,
    )
    await live.dispatch(payload)
    return payload


async def offer(
    live: LiveHarness, post: dict[str, Any], label: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Click `label` under a clip; return the private confirmation and its message."""
    payload = await click(live, post, label)
    confirmation = answer(live, payload)
    [message] = live.replies(payload)
    return confirmation, message


async def wait_until(condition: Any, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition never held")
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- the buttons


async def test_a_posted_clip_has_reroll_variants_and_delete(live: LiveHarness) -> None:
    task, post = await deliver(live)
    assert labels(post) == ["Reroll · 65", "10 s · 130", "With sound · 130", "Delete"]
    assert [b["custom_id"] for b in buttons(post)] == [
        f"video:reroll:{task.id}",
        f"video:vary:long:{task.id}",
        f"video:vary:sound:{task.id}",
        f"video:delete:{task.id}",
    ]
    assert [b["emoji"]["name"] for b in buttons(post)] == ["🔄", "⏱️", "🔊", "🗑️"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"duration": 10}, ["Reroll · 130", "With sound · 260", "Delete"]),
        ({"sound": True}, ["Reroll · 130", "10 s · 260", "Delete"]),
        ({"duration": 10, "sound": True}, ["Reroll · 260", "Delete"]),
    ],
)
async def test_only_the_variants_that_differ_are_offered(
    live: LiveHarness, options: dict[str, Any], expected: list[str]
) -> None:
    _, post = await deliver(live, **options)
    assert labels(post) == expected


async def test_reroll_confirmed_starts_the_same_clip_again_for_a_new_charge(
    live: LiveHarness,
) -> None:
    fake = live.fake
    first, post = await deliver(live, aspect_ratio="9:16")
    confirmation, message = await offer(live, post, "Reroll")
    assert is_private(confirmation)
    said = confirmation["content"]
    assert said == f"Make a new take with the same settings of `{first.id}` for **65** credits?"
    assert labels(message) == ["Confirm", "Cancel"]
    assert await live.balance() == 195  # nothing is charged until Confirm

    confirm = await click(live, message, "Confirm")
    card = answer(live, confirm)
    assert not is_private(card), "the new card is public, like /video generate's"
    card_fields = fields(card["embeds"][0])
    assert (card_fields["Cost"], card_fields["Balance left"]) == ("65 credits", "130 credits")
    [again, original] = await live.tasks()
    assert original.id == first.id and again.id != first.id
    assert card_fields["Task id"] == f"`{again.id}`"
    assert (again.prompt, again.aspect_ratio, again.duration, again.sound, again.image_urls) == (
        first.prompt,
        first.aspect_ratio,
        first.duration,
        first.sound,
        first.image_urls,
    )
    [sent_first, sent_again] = live.simulator.requests_to("generate")
    assert sent_again.json == sent_first.json
    assert await live.balance() == 130
    assert await ledger_reasons(live) == ["welcome", "charge", "charge"]

    await live.wait_for_task(again.id, "done")
    new_post = clip_post(fake, again.id)
    assert button(new_post, "Reroll")["custom_id"] == f"video:reroll:{again.id}"


async def test_reroll_cancelled_charges_nothing(live: LiveHarness) -> None:
    _, post = await deliver(live)
    _, message = await offer(live, post, "Reroll")
    cancel = await click(live, message, "Cancel")
    edited = live.callback(cancel).json
    assert edited["type"] == 7  # the confirmation itself changes
    assert edited["data"]["content"] == "Cancelled; nothing was charged."
    assert edited["data"]["components"] == []
    assert len(live.simulator.requests_to("generate")) == 1
    assert len(await live.tasks()) == 1
    assert await live.balance() == 195
    assert await ledger_reasons(live) == ["welcome", "charge"]


@pytest.mark.parametrize(
    ("label", "words", "sent", "cost"),
    [
        ("10 s", "a 10-second version", {"duration": "10", "sound": False}, 130),
        ("With sound", "a version with sound", {"duration": "5", "sound": True}, 130),
    ],
)
async def test_a_variant_asks_for_its_price_and_sends_the_change(
    live: LiveHarness, label: str, words: str, sent: dict[str, Any], cost: int
) -> None:
    first, post = await deliver(live)
    shown = int(button(post, label)["label"].rsplit("· ", 1)[1])
    confirmation, message = await offer(live, post, label)
    assert is_private(confirmation)
    assert confirmation["content"] == f"Make {words} of `{first.id}` for **{cost}** credits?"
    assert shown == cost

    confirm = await click(live, message, "Confirm")
    card = answer(live, confirm)
    assert not is_private(card)
    assert fields(card["embeds"][0])["Cost"] == f"{cost} credits"
    [_, variant] = live.simulator.requests_to("generate")
    assert variant.json == {"prompt": PROMPT, "aspect_ratio": "16:9", **sent}
    assert await live.balance() == 260 - 65 - cost
    assert await ledger_reasons(live) == ["welcome", "charge", "charge"]
    await live.wait_for_task((await live.tasks())[0].id, "done")


@pytest.mark.parametrize("label", ["Reroll", "10 s", "With sound"])
async def test_someone_else_cannot_spend_on_a_clip(live: LiveHarness, label: str) -> None:
    fake = live.fake
    _, post = await deliver(live)
    other = int(fake.add_user(username="bystander")["id"])
    payload = await click(live, post, label, user_id=other)
    reply = answer(live, payload)
    assert is_private(reply)
    assert f"Only <@{fake.user_id}> can make new takes of this clip" in reply["content"]
    assert "/video generate" in reply["content"]
    assert "components" not in reply or reply["components"] == []  # nothing to confirm
    [shown] = live.replies(payload)
    assert shown["mentions"] == []  # the requester is named, not pinged
    assert len(live.simulator.requests_to("generate")) == 1
    assert await ledger_reasons(live, other) == []
    assert await live.balance() == 195
    assert len(await live.tasks()) == 1


async def test_someone_else_cannot_delete_a_clip(live: LiveHarness) -> None:
    fake = live.fake
    task, post = await deliver(live)
    other = int(fake.add_user(username="bystander")["id"])
    payload = await click(live, post, "Delete", user_id=other)
    reply = answer(live, payload)
    assert is_private(reply)
    said = reply["content"]
    assert f"Only <@{fake.user_id}>, who asked for this clip, or a server admin" in said
    assert fake.calls("DELETE", r"^/channels/\d+/messages/\d+$") == []
    assert clip_post(fake, task.id)["id"] == post["id"]


@pytest.mark.parametrize("who", ["requester", "admin"])
async def test_the_requester_or_an_admin_deletes_the_post(live: LiveHarness, who: str) -> None:
    fake = live.fake
    task, post = await deliver(live)
    if who == "admin":
        clicker = int(fake.add_user(username="moderator")["id"])
        payload = await click(live, post, "Delete", user_id=clicker, permissions=ADMIN_PERMISSIONS)
    else:
        payload = await click(live, post, "Delete")
    [deleted] = fake.calls("DELETE", r"^/channels/\d+/messages/\d+$")
    assert deleted.path == f"/channels/{fake.channel_id}/messages/{post['id']}"
    assert deleted.status == 204
    assert post["id"] not in {m["id"] for m in fake.channel_messages(fake.channel_id)}
    reply = live.replies(payload)[-1]
    assert is_private(reply) and f"Deleted the clip of `{task.id}`" in reply["content"]
    assert await live.balance() == 195  # deleting neither charges nor refunds


async def test_clicks_on_a_clip_from_before_a_restart_still_work(
    database_url: str,
    tmp_path: Path,
    fake: FakeDiscord,
    simulator: ProviderSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = bot_settings(tmp_path, simulator, database_url=database_url)
    async with live_bot(fake, simulator, settings) as before:
        task, post = await deliver(before)
    async with live_bot(fake, simulator, settings) as after:
        confirmation, message = await offer(after, post, "Reroll")
        assert is_private(confirmation) and "for **65** credits?" in confirmation["content"]
        confirm = await click(after, message, "Confirm")
        assert not is_private(answer(after, confirm))
        [again, _] = await after.tasks()
        assert len(simulator.requests_to("generate")) == 2
        assert await after.balance() == 130

        await click(after, post, "Delete")
        assert post["id"] not in {m["id"] for m in fake.channel_messages(fake.channel_id)}
        await after.wait_for_task(again.id, "done")
    assert task.id != again.id
    assert errors_logged(caplog.records) == []


@pytest.mark.settings(default_credits=65)
async def test_a_reroll_past_the_budget_is_refused_privately_for_free(live: LiveHarness) -> None:
    _, post = await deliver(live)
    assert await live.balance() == 0
    _, message = await offer(live, post, "Reroll")
    confirm = await click(live, message, "Confirm")
    reply = answer(live, confirm)
    assert is_private(reply)
    assert "This clip costs **65** credits and you have **0**" in reply["content"]
    assert len(live.simulator.requests_to("generate")) == 1
    assert len(await live.tasks()) == 1
    assert await live.balance() == 0
    assert await ledger_reasons(live) == ["welcome", "charge"]


# --------------------------------------------------------------------------- Animate image


def animate_menu(live: LiveHarness, message: dict[str, Any]) -> dict[str, Any]:
    """The "Animate image" message context menu used on `message`."""
    fake = live.fake
    [command] = [c for c in fake.global_commands if c["name"] == "Animate image"]
    assert command["type"] == MESSAGE_COMMAND
    return payloads.interaction(
        fake,
        2,
        {
            "id": command["id"],
            "name": command["name"],
            "type": MESSAGE_COMMAND,
            "target_id": message["id"],
            "resolved": {"messages": {message["id"]: message}},
        },
        permissions=MEMBER_PERMISSIONS,
    )


async def open_animate_modal(live: LiveHarness) -> tuple[dict[str, Any], dict[str, Any]]:
    """Use the menu on a message with a picture; return the picture and the modal shown."""
    image = live.fake.add_attachment(PNG, "cat.png", "image/png")
    message = live.fake.add_message(content="my cat", attachments=[image])
    menu = animate_menu(live, message)
    await live.dispatch(menu)
    callback = live.callback(menu).json
    assert callback["type"] == 9, "the menu answers with a modal"
    return image, callback["data"]


def modal_inputs(modal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The modal's text inputs by label."""
    return {
        component["label"]: component
        for row in modal["components"]
        for component in row["components"]
        if component["type"] == 4
    }


async def submit_animate(
    live: LiveHarness, modal: dict[str, Any], prompt: str, duration: str, sound: str
) -> dict[str, Any]:
    inputs = modal_inputs(modal)
    values = {
        inputs["What should happen in the clip?"]["custom_id"]: prompt,
        inputs["Length in seconds: 5 or 10"]["custom_id"]: duration,
        inputs["Sound: yes or no"]["custom_id"]: sound,
    }
    payload = payloads.modal_submit(
        live.fake, modal["custom_id"], values, permissions=MEMBER_PERMISSIONS
    )
    await live.dispatch(payload)
    return payload


async def test_animate_image_opens_a_modal_and_starts_image_to_video(live: LiveHarness) -> None:
    image, modal = await open_animate_modal(live)
    assert modal["title"] == "Animate image"
    inputs = modal_inputs(modal)
    assert list(inputs) == [
        "What should happen in the clip?",
        "Length in seconds: 5 or 10",
        "Sound: yes or no",
    ]
    assert inputs["Length in seconds: 5 or 10"]["value"] == "5"
    assert inputs["Sound: yes or no"]["value"] == "no"
    assert live.simulator.requests_to("generate") == []

    submit = await submit_animate(live, modal, "the cat waves a paw", "10", "yes")
    card = answer(live, submit)
    assert not is_private(card)
    card_fields = fields(card["embeds"][0])
    assert card_fields["Cost"] == "260 credits"
    assert card_fields["Settings"] == "16:9 · 10 s, with sound · from 1 image"
    [sent] = live.simulator.requests_to("generate")
    assert isinstance(sent.json, dict)
    assert sent.json["image_urls"] == [image["url"]]
    assert (sent.json["prompt"], sent.json["duration"], sent.json["sound"]) == (
        "the cat waves a paw",
        "10",
        True,
    )
    assert await live.balance() == 0
    [task] = await live.tasks()
    await live.wait_for_task(task.id, "done")
    assert labels(clip_post(live.fake, task.id)) == ["Reroll · 260", "Delete"]


@pytest.mark.parametrize(
    ("duration", "sound", "says"),
    [
        ("7", "no", "The length must be 5 or 10 (seconds). Nothing was charged."),
        ("5", "maybe", "Sound must be yes or no. Nothing was charged."),
    ],
)
async def test_animate_image_refuses_bad_answers_for_free(
    live: LiveHarness, duration: str, sound: str, says: str
) -> None:
    _, modal = await open_animate_modal(live)
    submit = await submit_animate(live, modal, "the cat waves", duration, sound)
    reply = answer(live, submit)
    assert is_private(reply) and reply["content"] == says
    assert live.simulator.requests_to("generate") == []
    assert await live.tasks() == []
    assert await ledger_reasons(live) == []


@pytest.mark.parametrize("attachments", ["none", "text"])
async def test_animate_image_on_a_message_without_a_picture_is_refused(
    live: LiveHarness, attachments: str
) -> None:
    fake = live.fake
    files = (
        [fake.add_attachment(b"just words", "notes.txt", "text/plain")]
        if attachments == "text"
        else []
    )
    message = fake.add_message(content="no picture here", attachments=files)
    menu = animate_menu(live, message)
    await live.dispatch(menu)
    reply = answer(live, menu)
    assert is_private(reply)
    assert "That message has no image attached" in reply["content"]
    assert live.simulator.requests_to("generate") == []
    assert await live.tasks() == []


# --------------------------------------------------------------------------- progress


def card_edits(fake: FakeDiscord, task: Task) -> list[Recorded]:
    """The edits of the task's card made with the bot's token (after the interaction's)."""
    return fake.calls("PATCH", rf"^/channels/{task.channel_id}/messages/{task.card_message_id}$")


def progress_edits(fake: FakeDiscord, task: Task) -> list[tuple[Recorded, str]]:
    """The card edits that show progress, with the Progress field's text."""
    found = []
    for edit in card_edits(fake, task):
        progress = fields(edit.json["embeds"][0]).get("Progress")
        if progress is not None:
            found.append((edit, progress))
    return found


async def test_the_card_shows_progress_calmly_with_the_usual_time(live: LiveHarness) -> None:
    fake = live.fake
    every = 0.2
    rendering(live.bot).delivery.progress_every = every
    rendering(live.bot).delivery.progress_gap = 0.05
    live.simulator.render_seconds = 0.9

    first, _ = await deliver(live)
    first_edits = progress_edits(fake, first)
    assert len(first_edits) >= 2, "a render of several periods shows its progress"
    # No estimate yet: no task of this preset has finished before.
    assert all(re.fullmatch(r"Rendering for \d+ s", text) for _, text in first_edits), first_edits

    # Its polls bound when it ended: still running at one, done at the next.
    assert first.running_seconds is not None and first.ready_seconds is not None
    took = (first.running_seconds + first.ready_seconds) / 2
    second, _ = await deliver(live)
    second_edits = progress_edits(fake, second)
    assert len(second_edits) >= 2
    usual = rf"Rendering for \d+ s · usually about {round(took)} s"
    assert all(re.fullmatch(usual, text) for _, text in second_edits), second_edits

    for task, edits in ((first, first_edits), (second, second_edits)):
        # Never more often than `every` per card, counting from when the card was shown.
        [card_shown] = [c for c in fake.callbacks if c.message_id == task.card_message_id]
        times = [card_shown.time] + [edit.time for edit, _ in edits]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert min(gaps) >= every * 0.8, gaps
        # The card ends done, without the progress line.
        [*_, last] = card_edits(fake, task)
        assert last.json["embeds"][0]["title"] == "✅ Done"
        assert "Progress" not in fields(last.json["embeds"][0])


async def test_progress_edits_across_cards_keep_a_gap(live: LiveHarness) -> None:
    fake = live.fake
    gap = 0.25
    rendering(live.bot).delivery.progress_every = 0.05
    rendering(live.bot).delivery.progress_gap = gap
    live.simulator.render_seconds = 1.0
    other = int(fake.add_user(username="friend")["id"])
    await asyncio.gather(
        live.run("generate", options={"prompt": "one"}),
        live.run("generate", options={"prompt": "two"}, user_id=other),
    )
    tasks = [(await live.tasks())[0], (await live.tasks(other))[0]]
    done = [await live.wait_for_task(task.id, "done") for task in tasks]
    edits = sorted(edit.time for task in done for edit, _ in progress_edits(fake, task))
    assert len(edits) >= 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(edits)]
    assert min(gaps) >= gap * 0.8, gaps


# --------------------------------------------------------------------------- DM when ready


async def test_notify_on_sends_a_dm_with_a_link_to_the_post(live: LiveHarness) -> None:
    fake = live.fake
    turned_on = await live.run("notify", options={"setting": "on"})
    reply = live.replies(turned_on)[-1]
    assert is_private(reply) and "You will get a DM" in reply["content"]

    task, post = await deliver(live)
    await wait_until(lambda: rendering(live.bot).poller.in_flight == 0)
    [dm] = fake.dm_messages(fake.user_id)
    jump = f"https://discord.com/channels/{fake.guild_id}/{fake.channel_id}/{post['id']}"
    assert dm["content"] == f"Your clip `{task.id}` is ready: {jump}"
    assert dm["mentions"] == []


async def test_notify_off_sends_no_dm(live: LiveHarness) -> None:
    fake = live.fake
    await live.run("notify", options={"setting": "on"})
    turned_off = await live.run("notify", options={"setting": "off"})
    assert "No more DMs" in live.replies(turned_off)[-1]["content"]
    await deliver(live)
    await wait_until(lambda: rendering(live.bot).poller.in_flight == 0)
    assert fake.dm_messages(fake.user_id) == []


# --------------------------------------------------------------------------- status, history


async def test_status_of_a_finished_task_shows_the_buttons(live: LiveHarness) -> None:
    task, _ = await deliver(live)
    status = await live.run("status", options={"task_id": task.id})
    reply = live.replies(status)[-1]
    assert is_private(reply)
    assert reply["embeds"][0]["title"] == "✅ Done"
    assert [b["custom_id"] for b in buttons(reply)] == [
        f"video:reroll:{task.id}",
        f"video:vary:long:{task.id}",
        f"video:vary:sound:{task.id}",
        f"video:delete:{task.id}",
    ]
    # The buttons there work like the ones under the clip.
    confirmation, _ = await offer(live, reply, "10 s")
    assert is_private(confirmation) and "for **130** credits?" in confirmation["content"]


async def test_status_of_a_failed_task_has_no_buttons(live: LiveHarness) -> None:
    live.simulator.fail_tasks = "Upstream said no"
    await live.run("generate", options={"prompt": PROMPT})
    task = await live.wait_for_task((await live.tasks())[0].id, "failed")
    status = await live.run("status", options={"task_id": task.id})
    reply = live.replies(status)[-1]
    assert reply["embeds"][0]["title"].startswith("❌ Failed")
    assert buttons(reply) == []


async def test_delete_under_status_removes_the_posted_clip(live: LiveHarness) -> None:
    fake = live.fake
    task, post = await deliver(live)
    status = await live.run("status", options={"task_id": task.id})
    payload = await click(live, live.replies(status)[-1], "Delete")
    assert "no post to delete" not in live.replies(payload)[-1]["content"]
    assert post["id"] not in {m["id"] for m in fake.channel_messages(fake.channel_id)}


@pytest.mark.settings(default_credits=2000)
async def test_history_pages_with_older_and_newer(live: LiveHarness) -> None:
    fake = live.fake
    await live.run("limits", group="video-admin", options={"max_concurrent": 20}, admin=True)
    live.simulator.render_seconds = 0.1
    await asyncio.gather(
        *(live.run("generate", options={"prompt": f"scene {n}"}) for n in range(11))
    )
    tasks = await live.tasks()
    assert len(tasks) == 11
    for task in tasks:
        await live.wait_for_task(task.id, "done")

    history = await live.run("history")
    page = live.replies(history)[-1]
    assert is_private(page)
    assert page["embeds"][0]["footer"]["text"] == "Page 1 of 2 · 11 tasks"
    assert [(b["label"], b.get("disabled", False)) for b in buttons(page)] == [
        ("Newer", True),
        ("Older", False),
    ]
    newest_first = [t.id for t in tasks]
    assert page_ids(page) == newest_first[:10]
    assert_lines_link_to_clips(fake, page)

    older = await click(live, page, "Older")
    assert live.callback(older).json["type"] == 7
    page = fake.messages_by_id[int(page["id"])]
    assert page["embeds"][0]["footer"]["text"] == "Page 2 of 2 · 11 tasks"
    assert page_ids(page) == newest_first[10:]
    assert [(b["label"], b.get("disabled", False)) for b in buttons(page)] == [
        ("Newer", False),
        ("Older", True),
    ]
    assert_lines_link_to_clips(fake, page)

    await click(live, page, "Newer")
    page = fake.messages_by_id[int(page["id"])]
    assert page["embeds"][0]["footer"]["text"] == "Page 1 of 2 · 11 tasks"
    assert page_ids(page) == newest_first[:10]


def page_ids(page: dict[str, Any]) -> list[str]:
    return re.findall(r"^`([0-9a-f]+)` ·", page["embeds"][0]["description"], re.MULTILINE)


def assert_lines_link_to_clips(fake: FakeDiscord, page: dict[str, Any]) -> None:
    lines = [line for line in page["embeds"][0]["description"].splitlines() if line.startswith("`")]
    assert lines
    for line in lines:
        task_id = line.split("`")[1]
        post = clip_post(fake, task_id)
        jump = f"https://discord.com/channels/{fake.guild_id}/{fake.channel_id}/{post['id']}"
        assert "✅ Done · 5 s, silent · 65 credits · <t:" in line
        assert line.endswith(f"[clip]({jump})"), line


# --------------------------------------------------------------------------- product bugs


async def test_confirm_clicked_twice_at_once_starts_one_take(live: LiveHarness) -> None:
    _, post = await deliver(live)
    _, message = await offer(live, post, "Reroll")
    custom_id = button(message, "Confirm")["custom_id"]
    clicks = [
        payloads.component_click(live.fake, custom_id, message, permissions=MEMBER_PERMISSIONS)
        for _ in range(2)
    ]
    await asyncio.gather(*(live.dispatch(click) for click in clicks))
    for task in await live.tasks():
        await live.wait_for_task(task.id, "done")
    assert len(live.simulator.requests_to("generate")) == 2  # the clip and one reroll
    assert await live.balance() == 130
    assert await ledger_reasons(live) == ["welcome", "charge", "charge"]


async def test_a_used_confirmation_does_not_leave_dead_buttons(live: LiveHarness) -> None:
    fake = live.fake
    _, post = await deliver(live)
    _, message = await offer(live, post, "Reroll")
    await click(live, message, "Confirm")
    current = fake.messages_by_id[int(message["id"])]
    assert labels(current) == []  # the answered confirmation keeps no buttons to click
    assert await live.balance() == 130
    await live.wait_for_task((await live.tasks())[0].id, "done")


async def test_a_clip_delivered_by_dm_can_be_deleted_but_not_rerolled_there(
    live: LiveHarness,
) -> None:
    fake = live.fake
    fake.forbidden_channels.add(fake.channel_id)
    await live.run("generate", options={"prompt": PROMPT})
    task = await live.wait_for_task((await live.tasks())[0].id, "done")
    assert task.delivered_via == "dm"
    [dm] = fake.dm_messages(fake.user_id)
    # New takes are charged to the server, so a DM carries only Delete.
    assert labels(dm) == ["Delete"]
    delete = payloads.component_click(
        fake, button(dm, "Delete")["custom_id"], dm, dm=True, permissions=MEMBER_PERMISSIONS
    )
    await live.dispatch(delete)
    assert dm["id"] not in {m["id"] for m in fake.dm_messages(fake.user_id)}


async def test_every_card_rendering_at_once_shows_progress(live: LiveHarness) -> None:
    fake = live.fake
    # The production ratio: a card at most every 15 s, any card at most every 1 s.
    rendering(live.bot).delivery.progress_every = 0.2
    # Almost a whole period: the two cards fit in one only if the slot goes to the longest
    # waiter, not to whichever card is polled first.
    rendering(live.bot).delivery.progress_gap = 0.19
    live.simulator.render_seconds = 1.2
    other = int(fake.add_user(username="friend")["id"])
    await asyncio.gather(
        live.run("generate", options={"prompt": "one"}),
        live.run("generate", options={"prompt": "two"}, user_id=other),
    )
    tasks = [(await live.tasks())[0], (await live.tasks(other))[0]]
    done = [await live.wait_for_task(task.id, "done") for task in tasks]
    shown = {task.id: len(progress_edits(fake, task)) for task in done}
    assert all(shown.values()), shown


# --------------------------------------------------------------------------- dead ends


async def test_a_second_delete_says_the_post_is_already_gone(live: LiveHarness) -> None:
    _, post = await deliver(live)
    as_shown = copy.deepcopy(post)  # what a second member's client still showed
    await click(live, post, "Delete")
    again = await click(live, as_shown, "Delete")
    reply = live.replies(again)[-1]
    assert is_private(reply) and reply["content"] == texts.ALREADY_DELETED


async def test_a_second_click_on_a_used_confirmation_is_told_at_once(live: LiveHarness) -> None:
    _, post = await deliver(live)
    _, message = await offer(live, post, "Reroll")
    as_shown = copy.deepcopy(message)  # what the member's client still showed
    await click(live, message, "Confirm")
    late = await click(live, as_shown, "Cancel")  # a click that left before the buttons went
    # Answered by the offer itself while the click was handled, not by the expired-menu
    # fallback seconds later.
    reply = answer(live, late)
    assert is_private(reply) and reply["content"] == texts.TAKE_ALREADY_ANSWERED
    assert await live.balance() == 130  # the clip and the one reroll
    await live.wait_for_task((await live.tasks())[0].id, "done")


@pytest.mark.parametrize("custom_id", ["video:remix:0123abcd", "video:reroll:NOT-AN-ID"])
async def test_a_video_button_that_matches_nothing_is_answered(
    live: LiveHarness, custom_id: str
) -> None:
    fake = live.fake
    old = {"type": 2, "style": 2, "label": "Remix", "custom_id": custom_id}
    message = fake.add_message(content="an old post", components=[{"type": 1, "components": [old]}])
    payload = payloads.component_click(fake, custom_id, message, permissions=MEMBER_PERMISSIONS)
    await live.dispatch(payload)
    callback = await fake.wait_for_call("POST", rf"^/interactions/{payload['id']}/[^/]+/callback$")
    assert callback.json["data"]["flags"] & EPHEMERAL
    assert callback.json["data"]["content"] == texts.BUTTON_UNKNOWN


async def test_a_dm_clip_is_only_deleted_by_its_requester_and_never_rerolled(
    live: LiveHarness,
) -> None:
    fake = live.fake
    fake.forbidden_channels.add(fake.channel_id)
    await live.run("generate", options={"prompt": PROMPT})
    task = await live.wait_for_task((await live.tasks())[0].id, "done")
    [dm] = fake.dm_messages(fake.user_id)
    # A Reroll id under a DM (an old post, or crafted) starts nothing: takes start in a server.
    reroll_id = f"video:reroll:{task.id}"
    dm["components"][0]["components"].append(
        {"type": 2, "style": 2, "label": "Reroll", "custom_id": reroll_id}
    )
    reroll = payloads.component_click(fake, reroll_id, dm, dm=True, permissions=0)
    await live.dispatch(reroll)
    reply = answer(live, reroll)
    assert is_private(reply) and reply["content"] == texts.TAKES_ONLY_IN_SERVER
    # Someone else pressing Delete on a copy of that DM finds no clip of theirs.
    other = int(fake.add_user(username="stranger")["id"])
    delete_id = button(dm, "Delete")["custom_id"]
    stranger = payloads.component_click(
        fake, delete_id, dm, dm=True, user_id=other, permissions=ADMIN_PERMISSIONS
    )
    await live.dispatch(stranger)
    assert answer(live, stranger)["content"] == texts.CLIP_UNKNOWN
    assert fake.calls("DELETE", r"^/channels/\d+/messages/\d+$") == []
    assert len(live.simulator.requests_to("generate")) == 1


# --------------------------------------------------------------------------- races that hold


async def test_cancel_and_confirm_at_once_do_exactly_one_of_them(live: LiveHarness) -> None:
    _, post = await deliver(live)
    _, message = await offer(live, post, "Reroll")
    clicks = [
        payloads.component_click(
            live.fake, button(message, label)["custom_id"], message, permissions=MEMBER_PERMISSIONS
        )
        for label in ("Cancel", "Confirm")
    ]
    await asyncio.gather(*(live.dispatch(click) for click in clicks))
    said = [answer(live, click)["content"] for click in clicks]
    # The first click to arrive takes the offer; the other is told it was answered.
    assert said.count(texts.TAKE_ALREADY_ANSWERED) == 1
    if said[0] == texts.TAKE_CANCELLED:
        assert await ledger_reasons(live) == ["welcome", "charge"]
    else:
        assert said[1] == texts.TAKE_STARTING
        assert await ledger_reasons(live) == ["welcome", "charge", "charge"]
    for task in await live.tasks():
        await live.wait_for_task(task.id, "done")
    assert len(live.simulator.requests_to("generate")) == len(await live.tasks())


async def test_reroll_and_delete_at_once_leave_a_consistent_clip(live: LiveHarness) -> None:
    fake = live.fake
    task, post = await deliver(live)
    clicks = [
        payloads.component_click(
            fake, button(post, label)["custom_id"], post, permissions=MEMBER_PERMISSIONS
        )
        for label in ("Reroll", "Delete")
    ]
    await asyncio.gather(*(live.dispatch(click) for click in clicks))
    assert post["id"] not in {m["id"] for m in fake.channel_messages(fake.channel_id)}
    confirmation = live.replies(clicks[0])[0]
    await click(live, confirmation, "Confirm")  # the offer still stands without the post
    [new, old] = await live.tasks()
    assert old.id == task.id and new.prompt == task.prompt
    await live.wait_for_task(new.id, "done")
    assert await live.balance() == 130


@pytest.mark.settings(default_credits=2000)
async def test_two_next_page_clicks_at_once_skip_no_page(live: LiveHarness) -> None:
    await live.run("limits", group="video-admin", options={"max_concurrent": 20}, admin=True)
    for batch in (range(20), range(1)):  # at most 20 in the making at once
        await asyncio.gather(*(live.run("generate", options={"prompt": f"s {n}"}) for n in batch))
        for task in await live.tasks():
            await live.wait_for_task(task.id, "done")
    history = await live.run("history")
    page = live.replies(history)[-1]
    clicks = [
        payloads.component_click(
            live.fake, button(page, "Older")["custom_id"], page, permissions=MEMBER_PERMISSIONS
        )
        for _ in range(2)
    ]
    await asyncio.gather(*(live.dispatch(click) for click in clicks))
    shown = sorted(
        live.callback(click).json["data"]["embeds"][0]["footer"]["text"] for click in clicks
    )
    assert shown == ["Page 2 of 3 · 21 tasks", "Page 3 of 3 · 21 tasks"]


async def test_status_by_another_members_provider_id_shows_nothing(live: LiveHarness) -> None:
    other = int(live.fake.add_user(username="neighbour")["id"])
    await live.run("generate", options={"prompt": "a secret garden"}, user_id=other)
    [theirs] = await live.tasks(other)
    theirs = await live.wait_for_task(theirs.id, "done")
    assert theirs.provider_task_id is not None
    payload = await live.run("status", options={"task_id": theirs.provider_task_id})
    reply = answer(live, payload)
    assert is_private(reply) and "You have no task" in reply["content"]
    assert "secret garden" not in str(reply)
