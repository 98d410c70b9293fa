"""The fake Discord, proved with plain discord.py: a real Bot logs in, syncs and answers."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests import payloads
from tests.fakediscord import EPHEMERAL, LOADING, FakeDiscord

TOKEN = "fake-token"
PRESETS = ("cinematic", "cartoon", "documentary")


class Feedback(discord.ui.Modal, title="Feedback"):
    comment: discord.ui.TextInput[Feedback] = discord.ui.TextInput(
        label="Comment", custom_id="feedback:comment"
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"thanks: {self.comment.value}", ephemeral=True)


class Counter(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Bump", custom_id="counter:bump")
    async def bump(
        self, interaction: discord.Interaction, button: discord.ui.Button[Counter]
    ) -> None:
        await interaction.response.edit_message(content="bumped", view=None)

    @discord.ui.select(custom_id="counter:pick", options=[discord.SelectOption(label="a")])
    async def pick(
        self, interaction: discord.Interaction, select: discord.ui.Select[Counter]
    ) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content=f"picked {select.values[0]}")


def make_bot() -> commands.Bot:
    bot = commands.Bot(command_prefix=commands.when_mentioned, intents=discord.Intents.default())

    @bot.tree.command(description="Check the bot answers")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong", ephemeral=True)

    @bot.tree.command(description="Defer, upload a report, then edit")
    async def report(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        report_file = discord.File(io.BytesIO(b"hello world"), filename="report.txt")
        await interaction.followup.send("here it is", file=report_file, ephemeral=True)
        await interaction.edit_original_response(content="report ready")

    @bot.tree.command(description="Upload several files in one follow-up")
    async def bundle(interaction: discord.Interaction, count: int, size: int) -> None:
        await interaction.response.defer(ephemeral=True)
        parts = [
            discord.File(io.BytesIO(b"x" * size), filename=f"part{n}.txt") for n in range(count)
        ]
        try:
            await interaction.followup.send("parts", files=parts, ephemeral=True)
        except discord.HTTPException as error:
            await interaction.followup.send(f"refused {error.status} {error.code}", ephemeral=True)

    @bot.tree.command(description="Describe an upload")
    async def inspect(
        interaction: discord.Interaction,
        upload: discord.Attachment,
        note: str,
        count: int,
        loud: bool,
        who: discord.User,
    ) -> None:
        data = await upload.read()
        await interaction.response.send_message(
            f"{upload.filename} {len(data)} {data[:4]!r} {note} {count} {loud} {who.id}",
            file=discord.File(io.BytesIO(data), filename="echo.mp4"),
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @bot.tree.command(description="Pick a preset")
    async def preset(interaction: discord.Interaction, name: str) -> None:
        await interaction.response.send_message(name)

    @preset.autocomplete("name")
    async def preset_names(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=p, value=p) for p in PRESETS if current in p]

    @bot.tree.command(description="Talk back a lot")
    async def chatty(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("one")
        original = await interaction.original_response()
        second = await interaction.followup.send("two", ephemeral=True, wait=True)
        await second.edit(content="two, edited")
        await original.edit(content="one, edited")
        await interaction.delete_original_response()

    @bot.tree.command(description="Ask for feedback")
    async def feedback(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(Feedback())

    video = app_commands.Group(name="video", description="Video tools")

    @video.command(description="Generate a clip")
    async def generate(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.send_message(f"generating {prompt}")

    bot.tree.add_command(video)
    return bot


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        yield fake


@pytest.fixture
async def bot(fake: FakeDiscord, caplog: pytest.LogCaptureFixture) -> AsyncIterator[commands.Bot]:
    bot = make_bot()
    await bot.login(TOKEN)
    try:
        yield bot
    finally:
        await bot.close()
    assert not fake.errors
    # A command that raised is logged by the tree, not raised into the test.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_login_and_sync(fake: FakeDiscord, bot: commands.Bot) -> None:
    assert bot.user is not None
    assert bot.user.id == fake.bot_user_id
    assert bot.application_id == fake.application_id
    assert fake.api_base == discord.http.Route.BASE

    synced = await bot.tree.sync()
    assert {c.name for c in synced} == {
        "ping",
        "report",
        "bundle",
        "inspect",
        "preset",
        "chatty",
        "feedback",
        "video",
    }
    assert [c["name"] for c in fake.global_commands] == [c.name for c in synced]
    # A second sync keeps the ids, as Discord does for commands of the same name.
    again = await bot.tree.sync()
    assert [c.id for c in again] == [c.id for c in synced]

    guild = discord.Object(fake.guild_id)
    bot.tree.copy_global_to(guild=guild)
    guild_synced = await bot.tree.sync(guild=guild)
    assert {c.guild_id for c in guild_synced} == {fake.guild_id}
    assert len(fake.guild_commands[fake.guild_id]) == len(synced)

    put = fake.calls("PUT", r"^/applications/\d+/commands$")
    assert len(put) == 2
    assert all(r.headers_authorized for r in fake.requests)
    assert TOKEN not in repr([asdict(r) for r in fake.requests])


async def test_wrong_token_is_a_login_failure() -> None:
    async with FakeDiscord(token="the-real-one") as fake:
        bot = make_bot()
        try:
            with pytest.raises(discord.LoginFailure):
                await bot.login("not-it")
        finally:
            await bot.close()
        assert fake.requests[-1].status == 401


@pytest.mark.parametrize("dm", [False, True])
async def test_ephemeral_reply(fake: FakeDiscord, bot: commands.Bot, dm: bool) -> None:
    await bot.tree.sync()
    payload = payloads.slash_command(fake, name="ping", dm=dm)
    payloads.dispatch(bot, payload)

    callback = await fake.wait_for_call("POST", r"^/interactions/\d+/[^/]+/callback$")
    assert callback.status == 200
    assert callback.query == {"with_response": "1"}
    assert not callback.headers_authorized  # interaction endpoints carry no bot token
    assert callback.json == {"type": 4, "data": {"tts": False, "content": "pong", "flags": 64}}
    [record] = fake.callbacks
    assert (record.type, record.ephemeral) == (4, True)
    [message] = fake.interaction_messages(payload["token"])
    assert message["content"] == "pong"
    assert message["flags"] & EPHEMERAL
    assert message["interaction_metadata"]["user"]["id"] == str(fake.user_id)


@pytest.mark.parametrize(
    ("count", "size", "answer"),
    [
        (2, 500, "parts"),
        (1, 1001, "refused 413 40005"),
        # The limit is the request's, not each file's: two files that each fit, together not.
        (3, 400, "refused 413 40005"),
        (11, 1, "refused 400 50035"),
    ],
)
async def test_an_upload_is_held_to_the_interactions_attachment_size_limit(
    fake: FakeDiscord, bot: commands.Bot, count: int, size: int, answer: str
) -> None:
    payload = payloads.slash_command(
        fake, name="bundle", options={"count": count, "size": size}, attachment_size_limit=1000
    )
    payloads.dispatch(bot, payload)

    await fake.wait_for_call("POST", r"^/webhooks/\d+/[^/]+$", status=200)
    [message] = fake.interaction_messages(payload["token"])
    assert message["content"] == answer
    assert len(message["attachments"]) == (count if answer == "parts" else 0)


async def test_defer_then_followup_file_then_edit(fake: FakeDiscord, bot: commands.Bot) -> None:
    payload = payloads.slash_command(fake, name="report")
    payloads.dispatch(bot, payload)

    edit = await fake.wait_for_call("PATCH", r"/messages/@original$")
    [callback] = fake.callbacks
    assert (callback.type, callback.ephemeral) == (5, True)

    [followup] = fake.calls("POST", r"^/webhooks/\d+/[^/]+$")
    assert followup.query["wait"] == "1"
    assert followup.json is not None and followup.json["content"] == "here it is"
    [upload] = followup.files
    assert (upload.field, upload.filename, upload.size) == ("files[0]", "report.txt", 11)
    assert upload.content_type == "application/octet-stream"  # discord.py's choice for every file
    assert upload.data == b"hello world"

    # The first follow-up after an ephemeral defer replaced the loading message.
    [message] = fake.interaction_messages(payload["token"])
    assert followup.response is not None and edit.response is not None
    assert followup.response["id"] == message["id"] == edit.response["id"]
    assert message["content"] == "report ready"
    assert message["flags"] & EPHEMERAL and not message["flags"] & LOADING
    [attachment] = message["attachments"]
    assert (attachment["filename"], attachment["content_type"]) == ("report.txt", "text/plain")
    async with aiohttp.ClientSession() as session, session.get(attachment["url"]) as resp:
        assert await resp.read() == b"hello world"


async def test_options_and_attachment_bytes(fake: FakeDiscord, bot: commands.Bot) -> None:
    clip = fake.add_attachment(b"\x00\x00\x00\x18ftypmp42", "clip.mp4", "video/mp4")
    friend = fake.add_user(username="friend")
    payload = payloads.slash_command(
        fake,
        name="inspect",
        options={"upload": clip, "note": "hi", "count": 3, "loud": True, "who": int(friend["id"])},
        option_types={"who": payloads.OPTION_USER},
    )
    assert payload["data"]["resolved"]["attachments"][clip["id"]]["size"] == 12
    payloads.dispatch(bot, payload)

    callback = await fake.wait_for_call("POST", r"/callback$")
    cdn = fake.calls("GET", r"^/cdn/attachments/")
    assert len(cdn) == 1 and cdn[0].status == 200
    # A reply with a file is multipart: the JSON part is recorded as json, the file as files.
    assert callback.json is not None and callback.json["type"] == 4
    assert [(f.field, f.filename, f.size) for f in callback.files] == [("files[0]", "echo.mp4", 12)]
    [message] = fake.interaction_messages(payload["token"])
    assert message["content"] == f"clip.mp4 12 b'\\x00\\x00\\x00\\x18' hi 3 True {friend['id']}"
    assert message["allowed_mentions"] == {"parse": []}
    assert not message["flags"] & EPHEMERAL
    assert message["attachments"][0]["content_type"] == "video/mp4"


async def test_subcommand_group_autocomplete_and_button(
    fake: FakeDiscord, bot: commands.Bot
) -> None:
    payloads.dispatch(
        bot,
        payloads.slash_command(
            fake, name="video", subcommand="generate", options={"prompt": "a cat"}
        ),
    )
    await fake.wait_for_call("POST", r"/callback$")
    assert fake.callbacks[-1].data["content"] == "generating a cat"

    since = fake.mark()
    payloads.dispatch(
        bot, payloads.autocomplete(fake, name="preset", focused="name", options={"name": "car"})
    )
    await fake.wait_for_call("POST", r"/callback$", since=since)
    assert fake.callbacks[-1].type == 8
    assert fake.callbacks[-1].data == {"choices": [{"name": "cartoon", "value": "cartoon"}]}

    bot.add_view(Counter())
    panel = fake.add_message(
        content="press", author=fake.bot_user, components=Counter().to_components()
    )
    since = fake.mark()
    payloads.dispatch(bot, payloads.component_click(fake, "counter:bump", panel))
    await fake.wait_for_call("POST", r"/callback$", since=since)
    assert fake.callbacks[-1].type == 7
    assert fake.channel_messages(fake.channel_id)[-1]["content"] == "bumped"
    assert fake.messages_by_id[int(panel["id"])]["components"] == []


async def test_followups_edits_and_deletes(fake: FakeDiscord, bot: commands.Bot) -> None:
    payload = payloads.slash_command(fake, name="chatty")
    payloads.dispatch(bot, payload)
    await fake.wait_for_call("DELETE", r"/messages/@original$")

    [one] = fake.deleted_messages.values()
    assert one["content"] == "one, edited"
    [two] = fake.interaction_messages(payload["token"])
    assert two["content"] == "two, edited"
    assert two["flags"] & EPHEMERAL  # a follow-up after a real response has its own flags
    assert [r.method for r in fake.calls(None, r"^/webhooks/")] == [
        "GET",
        "POST",
        "PATCH",
        "PATCH",
        "DELETE",
    ]


async def test_modal_and_deferred_component_update(fake: FakeDiscord, bot: commands.Bot) -> None:
    payloads.dispatch(bot, payloads.slash_command(fake, name="feedback"))
    # wait_for_call returns once the fake has answered; the bot stores the modal only after
    # it has read that answer, so wait for the command itself to finish.
    await bot.wait_for("app_command_completion", timeout=5)
    modal = fake.callbacks[-1]
    assert modal.type == 9 and modal.data["custom_id"]
    since = fake.mark()
    payloads.dispatch(
        bot, payloads.modal_submit(fake, modal.data["custom_id"], {"feedback:comment": "great"})
    )
    await fake.wait_for_call("POST", r"/callback$", since=since)
    assert fake.callbacks[-1].data["content"] == "thanks: great"

    bot.add_view(Counter())
    panel = fake.add_message(author=fake.bot_user, components=Counter().to_components())
    since = fake.mark()
    click = payloads.component_click(fake, "counter:pick", panel, component_type=3, values=["a"])
    payloads.dispatch(bot, click)
    await fake.wait_for_call("PATCH", r"/messages/@original$", since=since)
    assert fake.callbacks[-1].type == 6
    assert fake.messages_by_id[int(panel["id"])]["content"] == "picked a"


async def test_channel_send_nonce_files_edit_delete(fake: FakeDiscord, bot: commands.Bot) -> None:
    channel = bot.get_partial_messageable(fake.channel_id)
    first = await channel.send("hello", nonce=42)
    retry = await channel.send("hello", nonce=42)
    assert retry.id == first.id
    assert len(fake.channel_messages(fake.channel_id)) == 1

    with_file = await channel.send(
        f"<@{fake.user_id}> your clip",
        file=discord.File(io.BytesIO(b"x" * 2048), filename="clip.mp4"),
        allowed_mentions=discord.AllowedMentions(users=True, everyone=False, roles=False),
    )
    assert with_file.attachments[0].content_type == "video/mp4"
    assert [u.id for u in with_file.mentions] == [fake.user_id]
    stored = fake.messages_by_id[with_file.id]
    assert stored["allowed_mentions"] == {"parse": ["users"], "replied_user": True}
    [post] = fake.calls("POST", r"/messages$")[-1:]
    assert post.json is not None and post.json["content"] == f"<@{fake.user_id}> your clip"
    assert [(f.filename, f.size) for f in post.files] == [("clip.mp4", 2048)]

    fetched = await channel.fetch_message(with_file.id)
    assert fetched.content == with_file.content
    edited = await fetched.edit(content="edited")
    assert edited.edited_at is not None
    assert [m.id async for m in channel.history(limit=5)] == [with_file.id, first.id]
    await edited.delete()
    assert [m["id"] for m in fake.channel_messages(fake.channel_id)] == [str(first.id)]


async def test_embeds_past_discords_limits_are_refused(
    fake: FakeDiscord, bot: commands.Bot
) -> None:
    channel = bot.get_partial_messageable(fake.channel_id)
    # Discord counts code points: 1,024 astral emoji fill a field exactly.
    posted = await channel.send(embed=discord.Embed().add_field(name="n", value="😀" * 1024))

    async def refusal(**kwargs: Any) -> str:
        with pytest.raises(discord.HTTPException) as refused:
            await channel.send(**kwargs)
        assert (refused.value.status, refused.value.code) == (400, 50035)
        return refused.value.text

    too_long = discord.Embed().add_field(name="n", value="x" * 1025)
    assert "embeds.0.fields.0.value: Must be 1024 or fewer" in await refusal(embed=too_long)
    empty = discord.Embed().add_field(name="n", value=" ")
    assert "embeds.0.fields.0.value: This field is required" in await refusal(embed=empty)
    crowded = discord.Embed()
    for number in range(26):
        crowded.add_field(name=str(number), value="v")
    assert "embeds.0.fields: Must be 25 or fewer" in await refusal(embed=crowded)
    assert "embeds.1.title: Must be 256" in await refusal(
        embeds=[discord.Embed(), discord.Embed(title="t" * 257)]
    )
    # The 6,000 count every embed of the message together.
    two = [discord.Embed(description="d" * 4000), discord.Embed(description="d" * 2001)]
    assert "Embed size exceeds maximum size of 6000" in await refusal(embeds=two)

    with pytest.raises(discord.HTTPException):
        await posted.edit(embed=discord.Embed(description="d" * 4097))
    [stored] = fake.channel_messages(fake.channel_id)
    assert stored["embeds"][0]["fields"][0]["value"] == "😀" * 1024


async def test_forbidden_and_missing_channels(fake: FakeDiscord, bot: commands.Bot) -> None:
    fake.fail_next("POST", r"/messages$", 403)
    with pytest.raises(discord.Forbidden) as once:
        await bot.get_partial_messageable(fake.channel_id).send("hi")
    assert (once.value.code, once.value.text) == (50013, "Missing Permissions")
    await bot.get_partial_messageable(fake.channel_id).send("hi again")

    fake.forbidden_channels.add(fake.channel_id)
    with pytest.raises(discord.Forbidden) as forbidden:
        await bot.get_partial_messageable(fake.channel_id).send("hi")
    assert forbidden.value.code == 50013

    gone = fake.add_channel(name="gone")
    fake.missing_channels.add(int(gone["id"]))
    with pytest.raises(discord.NotFound) as missing:
        await bot.get_partial_messageable(int(gone["id"])).send("hi")
    assert missing.value.code == 10003
    assert [m["content"] for m in fake.channel_messages(fake.channel_id)] == ["hi again"]


async def test_rate_limits_are_retried(fake: FakeDiscord, bot: commands.Bot) -> None:
    fake.fail_next("POST", r"^/channels/\d+/messages$", 429)
    fake.fail_next("POST", r"^/channels/\d+/messages$", 429, is_global=True)
    message = await bot.get_partial_messageable(fake.channel_id).send("eventually")
    posts = fake.calls("POST", r"^/channels/\d+/messages$")
    assert [r.status for r in posts] == [429, 429, 200]
    assert posts[1].response == {
        "message": "You are being rate limited.",
        "code": 0,
        "retry_after": 0.05,
        "global": True,
    }
    assert fake.channel_messages(fake.channel_id)[0]["id"] == str(message.id)

    # Follow-ups go through discord.py's webhook adapter, which retries 429s on its own.
    fake.fail_next("POST", r"^/webhooks/", 429)
    payloads.dispatch(bot, payloads.slash_command(fake, name="report"))
    await fake.wait_for_call("PATCH", r"/messages/@original$")
    assert [r.status for r in fake.calls("POST", r"^/webhooks/")] == [429, 200]


async def test_server_errors_are_retried(fake: FakeDiscord, bot: commands.Bot) -> None:
    # discord.py sleeps 1 + 2n seconds between 5xx retries, so one fault costs a second.
    fake.fail_next("GET", r"^/users/\d+$", 502)
    user = await bot.fetch_user(fake.user_id)
    assert user.name == "tester"
    assert [r.status for r in fake.calls("GET", r"^/users/\d+$")] == [502, 200]


async def test_direct_messages(fake: FakeDiscord, bot: commands.Bot) -> None:
    user = await bot.fetch_user(fake.user_id)
    await user.send("your clip is ready")
    assert [m["content"] for m in fake.dm_messages(fake.user_id)] == ["your clip is ready"]
    dm_channel = fake.channels[fake.dm_channels[fake.user_id]]
    assert dm_channel["type"] == 1 and dm_channel["recipients"][0]["id"] == str(fake.user_id)

    closed = fake.add_user(username="private")
    fake.dm_closed_users.add(int(closed["id"]))
    with pytest.raises(discord.Forbidden) as refused:
        await (await bot.fetch_user(int(closed["id"]))).send("hi")
    assert refused.value.code == 50007
    with pytest.raises(discord.NotFound):
        await bot.fetch_user(12345)


async def test_unknown_routes_and_late_callbacks(
    fake: FakeDiscord, bot: commands.Bot, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(discord.NotFound):
        await bot.fetch_guild(fake.guild_id)
    [unknown] = fake.unknown_requests
    assert unknown.method == "GET" and unknown.path == f"/guilds/{fake.guild_id}"
    assert unknown.response == {"message": "404: Not Found", "code": 0}

    # Discord forgets an interaction that is not acknowledged within 3 seconds.
    fake.callback_deadline = 0.0
    payloads.dispatch(bot, payloads.slash_command(fake, name="ping"))
    late = await fake.wait_for_call("POST", r"/callback$")
    assert late.status == 404
    assert late.response == {"message": "Unknown interaction", "code": 10062}
    assert fake.callbacks == []
    await asyncio.sleep(0.05)  # let the tree log the NotFound the command raised
    assert "Unknown interaction" in caplog.text
    caplog.clear()
