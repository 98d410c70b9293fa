"""/video generate through the real command tree: card, provider call, clip, credits."""

from __future__ import annotations

import pytest

from tests.harness import Harness


async def test_text_to_video_end_to_end(harness: Harness) -> None:
    fake, sim = harness.fake, harness.simulator
    payload = await harness.run(
        "generate",
        options={
            "prompt": "Drone shot over neon night market",
            "aspect_ratio": "16:9",
            "duration": 5,
            "sound": False,
        },
    )
    callback = harness.callback(payload)
    assert callback.json["type"] == 4
    assert not callback.json["data"].get("flags", 0) & 64  # the card is public
    [embed] = callback.json["data"]["embeds"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert "Drone shot over neon night market" in embed["description"]
    assert fields["Cost"] == "65 credits" and fields["Balance left"] == "195 credits"
    assert fields["Settings"] == "16:9 · 5 s, silent"
    [task] = await harness.tasks()
    assert fields["Task id"] == f"`{task.id}`"

    [generate] = sim.requests_to("generate")
    assert generate.json == {
        "prompt": "Drone shot over neon night market",
        "aspect_ratio": "16:9",
        "duration": "5",
        "sound": False,
    }
    # The card turns to Rendering once the provider accepted the task.
    edit = await fake.wait_for_call("PATCH", r"/messages/@original$")
    assert edit.json["embeds"][0]["title"] == "🎬 Rendering…"

    done = await harness.wait_for_task(task.id, "done")
    assert done.delivered_via == "attachment"
    [clip] = [m for m in fake.channel_messages(fake.channel_id) if m["attachments"]]
    assert clip["id"] == str(done.delivery_message_id)
    assert clip["content"].startswith(f"<@{fake.user_id}> your clip is ready")
    assert clip["attachments"][0]["filename"].endswith(".mp4")
    post = fake.calls("POST", rf"^/channels/{fake.channel_id}/messages$")[-1]
    assert post.files[0].data[4:8] == b"ftyp"
    mentions = post.json["allowed_mentions"]
    assert mentions["parse"] == [] and [int(u) for u in mentions["users"]] == [fake.user_id]
    assert not mentions.get("roles") and not mentions.get("replied_user")
    card_edit = await fake.wait_for_call(
        "PATCH", rf"^/channels/{fake.channel_id}/messages/{done.card_message_id}$"
    )
    assert card_edit.json["embeds"][0]["title"] == "✅ Done"

    balance = await harness.run("balance")
    [reply] = harness.replies(balance)
    assert "You have **195** credits" in reply["embeds"][0]["description"]


@pytest.mark.parametrize(
    ("options", "attachment", "expected_urls"),
    [
        ({"image_url": "https://example.com/cat.png"}, None, ["https://example.com/cat.png"]),
        ({}, ("cat.png", "image/png"), ["<attachment>"]),
        (
            {"image_url": "http://example.com/dog.jpg"},
            ("cat.webp", "image/webp"),
            ["<attachment>", "http://example.com/dog.jpg"],
        ),
    ],
)
async def test_image_to_video(
    harness: Harness,
    options: dict[str, object],
    attachment: tuple[str, str] | None,
    expected_urls: list[str],
) -> None:
    fake = harness.fake
    attachments = []
    if attachment is not None:
        uploaded = fake.add_attachment(b"\x89PNG\r\n\x1a\n" + b"0" * 64, *attachment)
        options = {**options, "image": uploaded}
        attachments.append(uploaded)
        expected_urls = [uploaded["url"] if u == "<attachment>" else u for u in expected_urls]
    await harness.run(
        "generate",
        options={"prompt": "Make the cat wave", "duration": 10, "sound": True, **options},
        attachments=attachments,
    )
    [generate] = harness.simulator.requests_to("generate")
    assert isinstance(generate.json, dict)
    assert generate.json["image_urls"] == expected_urls
    assert generate.json["duration"] == "10" and generate.json["sound"] is True
    assert await harness.balance() == 260 - 260
