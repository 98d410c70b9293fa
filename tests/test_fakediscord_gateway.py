"""The fake gateway, proved with plain discord.py: ``bot.start()`` connects, gets ready, answers
interactions delivered over the websocket, resumes after a dropped connection, and closes cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import discord
import pytest
from discord.ext import commands

from tests import payloads
from tests.fakediscord import EPHEMERAL, FakeDiscord

TOKEN = "gateway-test-token.abc.def"
HEARTBEAT_MS = 50
# discord.py waits this long after the last GUILD_CREATE before "ready" (default: 2 s).
GUILD_READY_TIMEOUT = 0.05
REDACTED = "<redacted>"

OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_RESUME = 6
OP_RECONNECT = 7
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11


class GatewayBot(commands.Bot):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py sleeps 5 s before every IDENTIFY but the first (identify rate limits).
        return None


def make_bot(intents: discord.Intents | None = None) -> commands.Bot:
    bot = GatewayBot(
        command_prefix=commands.when_mentioned,
        intents=intents or discord.Intents.default(),
        guild_ready_timeout=GUILD_READY_TIMEOUT,
    )

    @bot.tree.command(description="Check the bot answers")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong", ephemeral=True)

    return bot


async def wait_ready(fake: FakeDiscord, bot: commands.Bot, task: asyncio.Task[None]) -> None:
    """Wait for the bot's ready, failing at once if ``bot.start`` ended instead."""

    async def ready() -> None:
        # wait_until_ready() raises until login() has run: wait for READY to be sent first.
        await fake.gateway_connected.wait()
        await bot.wait_until_ready()

    waiter = asyncio.ensure_future(ready())
    try:
        done, _ = await asyncio.wait({waiter, task}, timeout=5, return_when="FIRST_COMPLETED")
    finally:
        waiter.cancel()
    if task in done:
        task.result()
        raise AssertionError("bot.start() returned before the bot was ready")
    assert waiter in done, "the bot was not ready within 5 s"


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, bot: commands.Bot) -> AsyncIterator[asyncio.Task[None]]:
    """``bot.start(TOKEN)`` in a background task, ready on entry, closed cleanly on exit."""
    task = asyncio.create_task(bot.start(TOKEN))
    try:
        await wait_ready(fake, bot, task)
        yield task
    finally:
        fake.release_gateway()
        await bot.close()
        # A clean close makes start() return None; anything else re-raises here.
        await asyncio.wait_for(task, 5)
        await fake.wait_for_gateway_closed()


def noisy_records(records: list[logging.LogRecord]) -> list[str]:
    """Errors from anywhere, warnings from the gateway, the state, aiohttp and asyncio."""
    watched = ("discord.gateway", "discord.state", "aiohttp", "asyncio")
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.ERROR
        or (r.levelno >= logging.WARNING and r.name.startswith(watched))
    ]


@pytest.fixture
async def fake(caplog: pytest.LogCaptureFixture) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_ms=HEARTBEAT_MS) as fake:
        yield fake
    assert not fake.errors
    logged = caplog.get_records("setup") + caplog.get_records("call") + caplog.records
    assert noisy_records(logged) == []


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[commands.Bot]:
    bot = make_bot()
    async with running(fake, bot):
        yield bot
    assert not fake.gateway_connected.is_set()
    assert all(c.done.is_set() for c in fake.gateway_connections)


@pytest.mark.parametrize("compressed", [True, False], ids=["zlib-stream", "text"])
async def test_start_identify_ready_and_cache(fake: FakeDiscord, compressed: bool) -> None:
    fake.gateway_compression = compressed
    bot = make_bot()
    async with running(fake, bot):
        assert bot.user is not None and bot.user.id == fake.bot_user_id
        assert bot.application_id == fake.application_id
        guild = bot.get_guild(fake.guild_id)
        assert guild is not None and not guild.unavailable
        channel = guild.get_channel(fake.channel_id)
        assert isinstance(channel, discord.TextChannel) and channel.name == "general"
        assert guild.system_channel == channel
        assert guild.default_role.id == guild.id
        assert guild.owner_id == int(fake.owner["id"])
        assert guild.me is not None and guild.me.id == fake.bot_user_id
        assert guild.me.guild_permissions.send_messages
        assert channel.permissions_for(guild.me).attach_files
        assert [g.id for g in bot.guilds] == [fake.guild_id]

        # discord.py 2.7.1 (no zstandard installed) asks for zlib-stream transport compression.
        [connection] = fake.gateway_connections
        assert connection.path == "/gateway"
        assert connection.query == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
        assert connection.compression == ("zlib-stream" if compressed else None)

        # HELLO, then the bot heartbeats at once and identifies; the token is never recorded.
        assert [f.op for f in fake.gateway_frames[:2]] == [OP_HEARTBEAT, OP_IDENTIFY]
        identify = fake.gateway_frames[1].d
        assert identify["token"] == REDACTED
        assert identify["intents"] == discord.Intents.default().value
        assert identify["properties"]["browser"] == "discord.py"
        assert TOKEN not in repr([asdict(f) for f in fake.gateway_frames])
        assert fake.identify_count == 1 and fake.resume_count == 0

        sent = [(f.op, f.t, f.s) for f in fake.gateway_sent if f.op != OP_HEARTBEAT_ACK]
        assert sent == [(OP_HELLO, None, None), (0, "READY", 1), (0, "GUILD_CREATE", 2)]
        ready = fake.gateway_sent[[f.t for f in fake.gateway_sent].index("READY")].d
        assert ready["resume_gateway_url"] == fake.resume_gateway_url
        assert ready["guilds"] == [{"id": str(fake.guild_id), "unavailable": True}]

        # The keep-alive thread heartbeats every 50 ms with the last sequence it saw.
        beat = await fake.wait_for_gateway_frame(OP_HEARTBEAT, since=2)
        assert beat.d == 2
        assert math.isfinite(bot.latency) and bot.latency < 1


async def test_slash_command_and_events_over_the_gateway(
    fake: FakeDiscord, bot: commands.Bot
) -> None:
    payload = payloads.slash_command(fake, name="ping")
    await fake.send_interaction(payload)
    callback = await fake.wait_for_call("POST", r"^/interactions/\d+/[^/]+/callback$")
    assert callback.status == 200
    [record] = fake.callbacks
    assert record.data["content"] == "pong" and record.data["flags"] & EPHEMERAL
    [message] = fake.interaction_messages(payload["token"])
    assert message["content"] == "pong"
    [delivered] = [f for f in fake.gateway_sent if f.t == "INTERACTION_CREATE"]
    assert delivered.s == 3 and delivered.d["token"] == payload["token"]

    # Any dispatch: the bot joins a second guild the fake adds to its world.
    joined: asyncio.Future[discord.Guild] = asyncio.get_running_loop().create_future()

    async def on_guild_join(guild: discord.Guild) -> None:
        joined.set_result(guild)

    bot.add_listener(on_guild_join)
    second = int(fake.add_guild(name="Second")["id"])
    studio = fake.add_channel(name="studio", guild_id=second)
    assert await fake.dispatch_event("GUILD_CREATE", fake.guild_payload(second, join=True)) == 1
    guild = await asyncio.wait_for(joined, 5)
    assert guild.id == second and guild.name == "Second"
    assert [c.id for c in guild.channels] == [int(studio["id"])]


@pytest.mark.parametrize("code", [4000, None], ids=["close-4000", "op7-reconnect"])
async def test_dropped_connection_resumes_and_replays_missed_dispatches(
    fake: FakeDiscord, bot: commands.Bot, code: int | None
) -> None:
    resumed = asyncio.Event()

    async def on_resumed() -> None:
        resumed.set()

    bot.add_listener(on_resumed)
    [session] = fake.gateway_sessions.values()
    seq_before = session.seq

    # hold: the bot reconnects at once, but gets no HELLO until release_gateway().
    await fake.disconnect(code, hold=True)
    assert not fake.gateway_connected.is_set()
    payload = payloads.slash_command(fake, name="ping")
    await fake.send_interaction(payload)  # missed by the bot: kept in the session's buffer
    assert fake.callbacks == []
    assert session.seq == seq_before + 1 and not session.connected

    fake.release_gateway()
    await fake.wait_for_call("POST", r"/callback$")
    await asyncio.wait_for(resumed.wait(), 5)
    assert fake.callbacks[0].data["content"] == "pong"
    assert (fake.identify_count, fake.resume_count) == (1, 1)
    assert fake.gateway_connected.is_set()

    first, second = fake.gateway_connections
    # RECONNECT: discord.py closes with 4000 itself; either way the session stays resumable.
    assert first.close_code == 4000
    assert first.closed_by_fake == code
    assert second.path == "/gateway/resume"  # READY's resume_gateway_url, not the default
    if code is None:
        assert OP_RECONNECT in [f.op for f in fake.gateway_sent if f.connection == first.number]
    resume = await fake.wait_for_gateway_frame(OP_RESUME)
    assert resume.connection == second.number
    assert resume.d == {"seq": seq_before, "session_id": session.session_id, "token": REDACTED}
    after_resume = [(f.t, f.s, f.replayed) for f in fake.gateway_sent[-2:]]
    assert after_resume == [
        ("INTERACTION_CREATE", seq_before + 1, True),
        ("RESUMED", seq_before + 2, False),
    ]


async def test_invalidated_session_identifies_again(fake: FakeDiscord, bot: commands.Bot) -> None:
    readied = asyncio.Event()

    async def on_ready() -> None:
        readied.set()

    bot.add_listener(on_ready)
    [first_session] = fake.gateway_sessions.values()

    # 4009 ends the session: discord.py still tries to RESUME, gets INVALID_SESSION (false),
    # closes with 1000 and identifies again on the default gateway URL.
    await fake.disconnect(4009)
    await asyncio.wait_for(readied.wait(), 5)
    assert (fake.identify_count, fake.resume_count) == (2, 0)
    assert first_session.ended
    _, refused, fresh = fake.gateway_connections
    assert [f.op for f in fake.gateway_frames if f.connection == refused.number][-1] == OP_RESUME
    assert [f.op for f in fake.gateway_sent if f.connection == refused.number][-1] == (
        OP_INVALID_SESSION
    )
    assert refused.close_code == 1000
    # discord.py resets ws.gateway on INVALID_SESSION, but connect() only passes the gateway
    # on for RESUMEs: the new IDENTIFY goes to the resume URL it used last. Discord accepts.
    assert fresh.path == "/gateway/resume"
    assert [f.op for f in fake.gateway_frames if f.connection == fresh.number][:2] == [
        OP_HEARTBEAT,
        OP_IDENTIFY,
    ]
    assert bot.get_guild(fake.guild_id) is not None

    await fake.send_interaction(payloads.slash_command(fake, name="ping"))
    await fake.wait_for_call("POST", r"/callback$")
    assert [s.ended for s in fake.gateway_sessions.values()] == [True, False]


async def test_wrong_token_at_login_and_at_identify(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeDiscord(token="the-real-one", heartbeat_interval_ms=HEARTBEAT_MS) as fake:
        bot = make_bot()
        try:
            # discord.py checks the token over REST first: GET /users/@me answers 401.
            with pytest.raises(discord.LoginFailure):
                await bot.start("not-it")
        finally:
            await bot.close()
        assert fake.gateway_connections == []

        # A token revoked between login and IDENTIFY: the gateway closes with 4004, which
        # discord.py does not retry: connect() closes the client and raises.
        bot = make_bot()
        await bot.login("the-real-one")
        fake.token = "rotated"
        with pytest.raises(discord.ConnectionClosed) as closed:
            await asyncio.wait_for(bot.connect(), 5)
        assert closed.value.code == 4004
        assert bot.is_closed()
        [connection] = fake.gateway_connections
        assert connection.close_code == 4004
        assert [f.op for f in fake.gateway_frames] == [OP_HEARTBEAT, OP_IDENTIFY]
        assert fake.gateway_frames[1].d["token"] == REDACTED
        assert fake.identify_count == 0 and fake.gateway_sessions == {}
        assert not fake.errors
    assert noisy_records(caplog.records) == []


async def test_privileged_intents_not_granted(fake: FakeDiscord) -> None:
    fake.privileged_intents = False
    intents = discord.Intents.default()
    intents.members = True
    bot = make_bot(intents)
    try:
        with pytest.raises(discord.PrivilegedIntentsRequired):
            await asyncio.wait_for(bot.start(TOKEN), 5)
    finally:
        await bot.close()
    [connection] = fake.gateway_connections
    assert connection.close_code == 4014


async def test_close_ends_the_session_cleanly(fake: FakeDiscord) -> None:
    disconnected: list[Any] = []
    bot = make_bot()

    async def on_disconnect() -> None:
        disconnected.append(True)

    bot.add_listener(on_disconnect)
    async with running(fake, bot) as task:
        [session] = fake.gateway_sessions.values()
        assert session.connected and not task.done()
    assert task.result() is None
    assert session.connection is None and not fake.gateway_connected.is_set()
    [connection] = fake.gateway_connections
    assert connection.closed_by_fake is None
    # bot.close() asks for 1000, but the connect loop's pending receive() wakes first and
    # closes with 4000, so Discord (and the fake) keep the session resumable.
    assert connection.close_code in (1000, 4000)
    assert session.ended == (connection.close_code == 1000)
    assert disconnected == [True]


async def test_dispatch_needs_a_session(fake: FakeDiscord) -> None:
    with pytest.raises(RuntimeError, match="no bot session"):
        await fake.dispatch_event("INTERACTION_CREATE", payloads.slash_command(fake, name="ping"))
