"""A fake Discord (REST API and gateway) on 127.0.0.1 that the unmodified discord.py client uses.

Start it (``async with FakeDiscord() as fake:``), log a real ``commands.Bot`` in with any token,
feed it interactions built by ``tests.payloads`` through
``bot._connection.parse_interaction_create(payload)``, then assert on what the bot sent:
``fake.requests`` (every request, recorded), ``fake.callbacks`` (interaction responses),
``fake.channel_messages(channel_id)`` (the messages as Discord would store them).

Or run the whole client (``bot.start(token)``): the fake's gateway (``/gateway``, websocket,
zlib-stream compressed like Discord's) says HELLO, acks heartbeats, answers IDENTIFY with READY
and one GUILD_CREATE per guild of its world, and RESUME with the missed dispatches. Deliver
events with ``fake.send_interaction(payload)`` / ``fake.dispatch_event(name, data)``, drop the
connection with ``fake.disconnect()``; ``fake.gateway_frames`` records what the bot sent.
Three discord.py habits to plan for: ``wait_until_ready()`` raises until ``login()`` has run
(wait for ``fake.gateway_connected`` first); "ready" comes ``guild_ready_timeout`` (2 s by
default) after the last GUILD_CREATE; and every IDENTIFY but the first sleeps 5 s in
``before_identify_hook`` (override it in a test bot that will identify twice).

Routes are a table (``FakeDiscord.add_route``) matched in order, so more endpoints slot in
without touching the dispatcher. Handlers raise ``DiscordError`` to answer with Discord's JSON
error body. Faults (``fail_next``, ``forbidden_channels``, ``missing_channels``,
``dm_closed_users``) make chosen calls fail the way Discord fails them; ``random_faults``
makes a random share of message sends and edits fail (for soak tests; off by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import mimetypes
import random
import re
import secrets
import socket
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import discord
import discord.asset
import discord.gateway
import discord.http
import discord.webhook.async_
import yarl
from aiohttp import BodyPartReader, WSMsgType, hdrs, web

__all__ = [
    "API_BASE_PATH",
    "BOT_PERMISSIONS",
    "EPHEMERAL",
    "EVERYONE_PERMISSIONS",
    "LOADING",
    "PRIVILEGED_INTENTS",
    "CallbackRecord",
    "DiscordError",
    "FakeDiscord",
    "FakeRequest",
    "Fault",
    "GatewayConnection",
    "GatewayFrame",
    "GatewaySession",
    "InteractionState",
    "Recorded",
    "RecordedFile",
    "make_member",
    "make_user",
    "new_snowflake",
    "utc_iso",
]

JSON = dict[str, Any]

# Interaction callbacks and follow-ups go through the webhook adapter, which builds its URLs
# from the Route it imported from discord.http (today the same class; patched by both names).
_WEBHOOK_ROUTE: type[discord.http.Route] = discord.webhook.async_.Route  # type: ignore[attr-defined]
Handler = Callable[["FakeRequest"], Awaitable[web.StreamResponse]]

API_BASE_PATH = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000

# Message flags Discord sets or honours on messages the bot creates.
SUPPRESS_EMBEDS = 1 << 2
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_NOTIFICATIONS = 1 << 12
IS_COMPONENTS_V2 = 1 << 15
SETTABLE_FLAGS = SUPPRESS_EMBEDS | EPHEMERAL | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2
EDITABLE_FLAGS = SUPPRESS_EMBEDS | IS_COMPONENTS_V2

MAX_CONTENT_LENGTH = 2000
# Discord's embed limits, counted as its API counts them (Python str length: code points).
EMBED_LIMITS = {"title": 256, "description": 4096, "footer.text": 2048, "author.name": 256}
EMBED_FIELD_LIMITS = {"name": 256, "value": 1024}
MAX_EMBED_FIELDS = 25
MAX_EMBEDS_TOTAL = 6000
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
MAX_ATTACHMENTS = 10

_MESSAGE_TYPE_DEFAULT = 0
_MESSAGE_TYPE_REPLY = 19
_MESSAGE_TYPE_CHAT_INPUT_COMMAND = 20

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_TEMPLATE_PARAM = re.compile(r"\{(\w+)\}")

# The gateway: opcodes, close codes and what discord.py makes of them.
GATEWAY_VERSION = 10
OP_DISPATCH = 0
OP_HEARTBEAT = 1
OP_IDENTIFY = 2
OP_PRESENCE_UPDATE = 3
OP_VOICE_STATE_UPDATE = 4
OP_RESUME = 6
OP_RECONNECT = 7
OP_REQUEST_GUILD_MEMBERS = 8
OP_INVALID_SESSION = 9
OP_HELLO = 10
OP_HEARTBEAT_ACK = 11
OP_REQUEST_SOUNDBOARD_SOUNDS = 31
_CLIENT_OPS = {
    OP_HEARTBEAT,
    OP_IDENTIFY,
    OP_PRESENCE_UPDATE,
    OP_VOICE_STATE_UPDATE,
    OP_RESUME,
    OP_REQUEST_GUILD_MEMBERS,
    OP_REQUEST_SOUNDBOARD_SOUNDS,
}
_CLOSE_REASONS: dict[int, str] = {
    1001: "Going away.",
    4000: "Unknown error.",
    4001: "Unknown opcode.",
    4002: "Error while decoding payload.",
    4003: "Not authenticated.",
    4004: "Authentication failed.",
    4005: "Already authenticated.",
    4007: "Invalid seq.",
    4008: "Rate limited.",
    4009: "Session timed out.",
    4010: "Invalid shard.",
    4011: "Sharding required.",
    4012: "Invalid API version.",
    4013: "Invalid intent(s).",
    4014: "Disallowed intent(s).",
}
# Closing with these also ends the session: the bot's RESUME gets INVALID_SESSION.
_SESSION_ENDING_CLOSES = {4007, 4009}
_ZLIB_SUFFIX = b"\x00\x00\xff\xff"
_REDACTED = "<redacted>"
# Where random faults land: creating and editing messages, in channels and as follow-ups.
_RANDOM_FAULT_ROUTES = (
    ("POST", re.compile(r"/channels/(?P<channel_id>\d+)/messages")),
    ("PATCH", re.compile(r"/channels/\d+/messages/\d+")),
    ("POST", re.compile(r"/webhooks/\d+/[^/]+")),
    ("PATCH", re.compile(r"/webhooks/\d+/[^/]+/messages/[^/]+")),
)
_GUILDS_INTENT = 1 << 0
# GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT: the ones an app must be granted.
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)
_THREAD_TYPES = {10, 11, 12}
_VOICE_TYPES = {2, 13}

EVERYONE_PERMISSIONS = discord.Permissions(
    create_instant_invite=True,
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_external_emojis=True,
    read_message_history=True,
    use_application_commands=True,
    connect=True,
    speak=True,
    change_nickname=True,
).value
BOT_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    read_message_history=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_external_emojis=True,
).value

_DEFAULT_ERRORS: dict[int, tuple[int, str]] = {
    400: (50035, "Invalid Form Body"),
    401: (0, "401: Unauthorized"),
    403: (50013, "Missing Permissions"),
    404: (0, "404: Not Found"),
    405: (0, "405: Method Not Allowed"),
    413: (40005, "Request entity too large"),
    429: (0, "You are being rate limited."),
    500: (0, "500: Internal Server Error"),
    502: (0, "502: Bad Gateway"),
    503: (0, "503: Service Unavailable"),
    504: (0, "504: Gateway Timeout"),
}


# --------------------------------------------------------------------------- helpers


class _Snowflakes:
    """Discord-shaped ids: milliseconds since the Discord epoch, strictly increasing."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        candidate = max(candidate, self._last + 1)
        self._last = candidate
        return candidate


_snowflakes = _Snowflakes()


def new_snowflake() -> int:
    """Return a fresh snowflake (real timestamp bits, so discord.py's age checks work)."""
    return _snowflakes.next()


def utc_iso(when: datetime | None = None) -> str:
    """Return an ISO 8601 timestamp as Discord writes them."""
    return (when or datetime.now(UTC)).isoformat()


def make_user(
    user_id: int,
    username: str | None = None,
    *,
    global_name: str | None = None,
    bot: bool = False,
    avatar: str | None = None,
) -> JSON:
    """Build a user object as the REST API and the gateway send it."""
    user: JSON = {
        "id": str(user_id),
        "username": username or f"user{user_id % 100000}",
        "discriminator": "0",
        "global_name": global_name,
        "avatar": avatar,
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
        "collectibles": None,
        "primary_guild": None,
    }
    if bot:
        user["bot"] = True
    return user


def make_member(
    user: Mapping[str, Any] | None,
    *,
    permissions: int | None = None,
    roles: Iterable[int] = (),
    nick: str | None = None,
) -> JSON:
    """Build a guild member object; ``user`` is nested unless None (as in ``resolved.members``)."""
    member: JSON = {
        "roles": [str(r) for r in roles],
        "joined_at": utc_iso(),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "nick": nick,
        "avatar": None,
        "banner": None,
        "communication_disabled_until": None,
    }
    if user is not None:
        member["user"] = dict(user)
    if permissions is not None:
        member["permissions"] = str(permissions)
    return member


def _json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    # discord.py only decodes JSON when Content-Type is exactly "application/json";
    # web.json_response would append "; charset=utf-8" and the bot would get a str back.
    response = web.Response(body=json.dumps(data).encode(), status=status, headers=headers)
    response.headers[hdrs.CONTENT_TYPE] = "application/json"
    return response


def _no_content() -> web.Response:
    return web.Response(status=204)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in {"1", "true", "yes"}


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _template_to_regex(template: str) -> re.Pattern[str]:
    """Turn "/channels/{channel_id}/messages" into a regex with named groups."""
    parts: list[str] = []
    last = 0
    for match in _TEMPLATE_PARAM.finditer(template):
        parts.append(re.escape(template[last : match.start()]))
        parts.append(f"(?P<{match.group(1)}>[^/]+)")
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts))


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RecordedFile:
    """One file part of a multipart request."""

    field: str
    filename: str
    size: int
    content_type: str | None
    data: bytes = dc_field(repr=False)


@dataclass(frozen=True)
class Recorded:
    """One request the fake received. The Authorization value (the token) is never kept.

    ``path`` is relative to ``/api/v10`` for API calls (``/channels/1/messages``) and the raw
    path for anything else (``/cdn/attachments/...``). ``json`` is the JSON body, or the parsed
    ``payload_json`` part of a multipart body.
    """

    method: str
    path: str
    query: dict[str, str]
    json: Any  # None when the request had no JSON body
    files: list[RecordedFile]
    headers_authorized: bool
    time: float
    status: int = 0
    response: Any | None = dc_field(default=None, repr=False)


@dataclass
class Fault:
    """A scheduled failure: the next ``remaining`` matching requests get ``status``."""

    method: str | None
    pattern: re.Pattern[str]
    status: int
    remaining: int
    code: int | None = None
    message: str | None = None
    retry_after: float | None = None
    is_global: bool = False

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.pattern.search(path) is not None


@dataclass(frozen=True)
class CallbackRecord:
    """One accepted interaction response (POST /interactions/{id}/{token}/callback)."""

    interaction_id: int
    token: str
    type: int
    data: JSON
    files: list[RecordedFile]
    message_id: int | None
    time: float

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.data.get("flags") or 0) & EPHEMERAL)


@dataclass
class InteractionState:
    """What the fake knows about one interaction token."""

    id: int
    token: str
    type: int | None
    channel_id: int | None
    guild_id: int | None
    user: JSON | None
    created: float
    component_message_id: int | None = None
    # The payload's attachment_size_limit: what Discord accepts in one reply to it.
    upload_limit: int | None = None
    response_type: int | None = None
    response_data: JSON | None = None
    original_message_id: int | None = None
    deferred_pending: bool = False
    followup_ids: list[int] = dc_field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None


@dataclass(frozen=True)
class GatewayFrame:
    """One gateway frame: received from the bot (``fake.gateway_frames``) or sent to it
    (``fake.gateway_sent``). A ``token`` in ``d`` (IDENTIFY, RESUME) is never kept.

    ``connection`` is the ``GatewayConnection.number`` (1 for the bot's first socket);
    ``replayed`` marks a dispatch sent again in answer to RESUME.
    """

    connection: int
    op: int | None
    d: Any = dc_field(repr=False)
    t: str | None
    s: int | None
    time: float
    replayed: bool = False


def shard_holds(shard: tuple[int, int] | None, guild_id: int) -> bool:
    """Whether a session on ``shard`` (id, count) receives the guild's events (0: DMs)."""
    return shard is None or (guild_id >> 22) % shard[1] == shard[0]


@dataclass
class GatewaySession:
    """One IDENTIFY'd gateway session: its sequence and every dispatch sent in it.

    The buffer outlives the socket, so a RESUME (on another socket) replays what the bot
    missed. A session ends when the bot closes with 1000/1001 or the fake invalidates it.
    """

    session_id: str
    intents: int
    shard: tuple[int, int] | None
    seq: int = 0
    buffer: list[JSON] = dc_field(default_factory=list, repr=False)
    connection: GatewayConnection | None = dc_field(default=None, repr=False)
    ended: bool = False

    @property
    def connected(self) -> bool:
        return self.connection is not None


class GatewayConnection:
    """One websocket the bot opened to the fake gateway.

    Frames are serialised, compressed and queued in the order they are pushed; a single writer
    task sends them, so the zlib stream and the sequence numbers never interleave.
    """

    def __init__(
        self,
        number: int,
        ws: web.WebSocketResponse,
        request: web.Request,
        *,
        compression: str | None,
        sent: list[GatewayFrame],
    ) -> None:
        self.number = number
        self.ws = ws
        self.path: str = request.path
        self.query: dict[str, str] = dict(request.query)
        # "zlib-stream" when frames are binary zlib, None when they are JSON text.
        self.compression = compression
        self.session: GatewaySession | None = None
        self.opened: float = time.monotonic()
        self.close_code: int | None = None  # set once the socket is gone
        self.closed_by_fake: int | None = None  # the code, when the fake closed it
        self.done = asyncio.Event()
        self._sent = sent
        self._closing = asyncio.Event()
        self._zlib = zlib.compressobj() if compression == "zlib-stream" else None
        self._outbox: asyncio.Queue[tuple[str | bytes, asyncio.Future[bool]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        session = self.session.session_id if self.session else None
        return (
            f"<GatewayConnection #{self.number} {self.path} session={session} "
            f"close_code={self.close_code}>"
        )

    @property
    def closed(self) -> bool:
        return self.done.is_set() or self.ws.closed

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write(), name=f"fake-gateway-writer-{self.number}")

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` for this connection; it is cancelled when the socket ends."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def push(self, frame: JSON, *, replayed: bool = False) -> asyncio.Future[bool]:
        """Queue ``frame``; the future says whether it reached the socket."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._writer is None or self._writer.done() or self._closing.is_set():
            future.set_result(False)
            return future
        text = json.dumps(frame, separators=(",", ":"))
        payload: str | bytes = text
        if self._zlib is not None:
            # One compressor for the whole connection; each message ends in a sync flush,
            # which is how discord.py finds message boundaries (the 00 00 ff ff suffix).
            payload = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            assert payload.endswith(_ZLIB_SUFFIX)
        self._sent.append(
            GatewayFrame(
                connection=self.number,
                op=frame.get("op"),
                d=frame.get("d"),
                t=frame.get("t"),
                s=frame.get("s"),
                time=time.monotonic(),
                replayed=replayed,
            )
        )
        self._outbox.put_nowait((payload, future))
        return future

    async def _write(self) -> None:
        current: asyncio.Future[bool] | None = None
        try:
            while True:
                payload, current = await self._outbox.get()
                if isinstance(payload, bytes):
                    await self.ws.send_bytes(payload)
                else:
                    await self.ws.send_str(payload)
                if not current.done():
                    current.set_result(True)
                current = None
        except Exception:  # noqa: S110 - the socket closed under us; the frames stay unsent
            pass
        finally:
            if current is not None and not current.done():
                current.set_result(False)
            while not self._outbox.empty():
                _, pending = self._outbox.get_nowait()
                if not pending.done():
                    pending.set_result(False)

    async def close(self, code: int, reason: str | None = None) -> None:
        """Close the socket with ``code`` (Discord's reason text unless ``reason``)."""
        if self.ws.closed:
            return
        self.closed_by_fake = code
        self._closing.set()
        message = _CLOSE_REASONS.get(code, "") if reason is None else reason
        await self.ws.close(code=code, message=message.encode())

    async def finish(self) -> None:
        """Stop the writer and the helpers once the socket has ended (``done`` is set by
        the fake after its bookkeeping)."""
        self._closing.set()
        tasks = [*self._tasks, *([self._writer] if self._writer is not None else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # aiohttp reports 1000 when close() had to interrupt a pending receive(): prefer the
        # code the fake sent.
        self.close_code = self.closed_by_fake or self.ws.close_code


class DiscordError(Exception):
    """Raised by a route handler to answer with Discord's JSON error body."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: JSON | None = None,
        headers: Mapping[str, str] | None = None,
        extra: JSON | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def response(self) -> web.Response:
        body: JSON = {"message": self.message, "code": self.code, **self.extra}
        if self.errors is not None:
            body["errors"] = self.errors
        return _json_response(body, self.status, self.headers)


class _UnknownRoute(DiscordError):
    """No route matches: recorded in ``unknown_requests`` as well."""


def _unknown(what: str, code: int) -> DiscordError:
    return DiscordError(404, code, f"Unknown {what}")


def _form_error(field_name: str, code: str, message: str) -> DiscordError:
    """Discord's 50035, with the error nested under each part of a dotted path."""
    errors: JSON = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field_name.split(".")):
        errors = {part: errors}
    return DiscordError(400, 50035, "Invalid Form Body", errors=errors)


def _validate_embeds(embeds: Any) -> None:
    """Refuse embeds past Discord's limits, with the error body Discord sends."""
    if not embeds:
        return
    if len(embeds) > 10:
        raise _form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    total = 0
    for index, embed in enumerate(embeds):
        texts: dict[str, Any] = {
            "title": embed.get("title"),
            "description": embed.get("description"),
            "footer.text": (embed.get("footer") or {}).get("text"),
            "author.name": (embed.get("author") or {}).get("name"),
        }
        for path, text in texts.items():
            text = str(text or "")
            total += len(text)
            if len(text) > EMBED_LIMITS[path]:
                raise _form_error(
                    f"embeds.{index}.{path}",
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {EMBED_LIMITS[path]} or fewer in length.",
                )
        fields = embed.get("fields") or []
        if len(fields) > MAX_EMBED_FIELDS:
            raise _form_error(
                f"embeds.{index}.fields",
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {MAX_EMBED_FIELDS} or fewer in length.",
            )
        for number, embed_field in enumerate(fields):
            for key, limit in EMBED_FIELD_LIMITS.items():
                text = str(embed_field.get(key) or "")
                total += len(text)
                where = f"embeds.{index}.fields.{number}.{key}"
                if not text.strip():
                    raise _form_error(where, "BASE_TYPE_REQUIRED", "This field is required")
                if len(text) > limit:
                    raise _form_error(
                        where, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
                    )
    if total > MAX_EMBEDS_TOTAL:
        # Since 2022 the 6,000 count all the embeds of a message together.
        raise _form_error(
            "embeds",
            "MAX_EMBED_SIZE_EXCEEDED",
            f"Embed size exceeds maximum size of {MAX_EMBEDS_TOTAL}",
        )


@dataclass
class FakeRequest:
    """What a route handler gets: the parsed request plus the path parameters."""

    request: web.Request
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    json: Any | None
    files: list[RecordedFile]
    authorized: bool

    def int_param(self, name: str) -> int:
        value = _as_int(self.params[name])
        if value is None:
            raise _form_error(
                name, "NUMBER_TYPE_COERCE", f'Value "{self.params[name]}" is not snowflake.'
            )
        return value

    @property
    def body(self) -> JSON:
        return self.json if isinstance(self.json, dict) else {}


@dataclass(frozen=True)
class _RouteEntry:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool
    api: bool


# --------------------------------------------------------------------------- the fake


class FakeDiscord:
    """Discord's REST API (the parts a slash-command bot uses) served on 127.0.0.1."""

    _active: FakeDiscord | None = None

    def __init__(
        self,
        *,
        application_id: int | None = None,
        bot_user_id: int | None = None,
        bot_name: str = "FakeBot",
        token: str | None = None,
        heartbeat_interval_ms: int = 41250,
        shard_count: int = 1,
    ) -> None:
        # What GET /gateway/bot recommends; guilds are spread over shards by Discord's rule.
        self.shard_count = shard_count
        self.application_id: int = application_id or new_snowflake()
        self.bot_user_id: int = bot_user_id or new_snowflake()
        self.bot_name: str = bot_name
        # When set, only "Bot <token>" is accepted; otherwise any bot token logs in.
        self.token: str | None = token

        # Knobs modelling Discord's rules.
        self.callback_deadline: float | None = 3.0
        self.strict_interactions: bool = False
        self.strict_channels: bool = False
        self.nonce_window: float = 300.0
        self.upload_limit: int = DEFAULT_UPLOAD_LIMIT

        # Recording.
        self.requests: list[Recorded] = []
        self.unknown_requests: list[Recorded] = []
        self.callbacks: list[CallbackRecord] = []
        self.errors: list[Exception] = []
        self._waiters: list[tuple[Callable[[Recorded], bool], asyncio.Future[Recorded]]] = []

        # Faults.
        self.faults: list[Fault] = []
        self.forbidden_channels: set[int] = set()
        self.missing_channels: set[int] = set()
        self.dm_closed_users: set[int] = set()
        # Random faults for soak tests, off by default. `random_faults` is the chance that a
        # message create or edit (in a channel, or an interaction follow-up) fails one of the
        # ways `random_fault_shares` weighs: "429" (Via and a short JSON retry_after: discord.py
        # sleeps and retries), "500" (refused; discord.py retries after 1 + 2n s), "500_after"
        # (done, but the answer is lost; only where a repeat is harmless: an edit, or a send
        # with enforce_nonce; elsewhere a plain "500"), "403" (Missing Permissions on a guild
        # channel send; elsewhere a "429"). `random_fault_rng` draws them (seed it for a
        # repeatable run); `random_faults_injected` counts them by kind.
        self.random_faults: float = 0.0
        self.random_fault_shares: dict[str, float] = {
            "429": 0.8,
            "403": 0.1,
            "500": 0.05,
            "500_after": 0.05,
        }
        self.random_fault_rng = random.Random(0)
        self.random_faults_injected: Counter[str] = Counter()

        # World state.
        self.users: dict[int, JSON] = {}
        self.channels: dict[int, JSON] = {}
        self.dm_channels: dict[int, int] = {}
        self.messages_by_id: dict[int, JSON] = {}
        self.deleted_messages: dict[int, JSON] = {}
        self._channel_order: dict[int, list[int]] = {}
        self._nonces: dict[tuple[int, str], tuple[int, float]] = {}
        self.attachment_bytes: dict[int, tuple[bytes, str | None]] = {}
        self.interactions: dict[str, InteractionState] = {}
        self.global_commands: list[JSON] = []
        self.guild_commands: dict[int, list[JSON]] = {}
        self.guilds: dict[int, JSON] = {}

        # Gateway knobs, state and recording.
        self.heartbeat_interval_ms: int = heartbeat_interval_ms
        self.gateway_compression: bool = True  # False: JSON text frames whatever the bot asks
        self.privileged_intents: bool = True  # False: IDENTIFY asking for them gets 4014
        self.application_flags: int = 0
        self.gateway_connected = asyncio.Event()  # a READY/RESUMED session has a live socket
        self.identify_count: int = 0  # IDENTIFYs answered with READY
        self.resume_count: int = 0  # RESUMEs answered with the replay and RESUMED
        self.gateway_sessions: dict[str, GatewaySession] = {}
        self.gateway_connections: list[GatewayConnection] = []
        self.gateway_frames: list[GatewayFrame] = []  # received from the bot, tokens redacted
        self.gateway_sent: list[GatewayFrame] = []  # sent (queued) to the bot
        self._gateway_open = asyncio.Event()
        self._gateway_open.set()
        self._frame_waiters: list[
            tuple[Callable[[GatewayFrame], bool], asyncio.Future[GatewayFrame]]
        ] = []

        self.bot_user: JSON = make_user(self.bot_user_id, bot_name, bot=True)
        self.users[self.bot_user_id] = self.bot_user
        self.owner: JSON = self.add_user(username="owner")
        # A default guild, text channel and member so a test can start from nothing.
        self.guild_id: int = new_snowflake()
        self.add_guild(self.guild_id)
        self.channel_id: int = int(self.add_channel(name="general")["id"])
        self.user_id: int = int(self.add_user(username="tester", global_name="Tester")["id"])
        self.verify_key: str = secrets.token_hex(32)

        self.port: int | None = None
        self.app = web.Application(client_max_size=256 * 1024 * 1024)
        # The gateway is a websocket, not a request/response: it has its own handler (and its
        # own recording), ahead of the REST catch-all.
        self.app.router.add_get("/gateway", self._gateway, allow_head=False)
        self.app.router.add_get("/gateway/resume", self._gateway, allow_head=False)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._routes: list[_RouteEntry] = []
        self._runner: web.AppRunner | None = None
        self._saved_bases: dict[str, str] = {}
        self._saved_gateway: yarl.URL = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        self._install_routes()

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeDiscord is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base_url + API_BASE_PATH

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        """Where READY tells the bot to reconnect for RESUME (discord.py honours it)."""
        return f"ws://127.0.0.1:{self.port}/gateway/resume"

    async def start(self) -> None:
        """Serve on a random loopback port and point discord.py's base URLs at it."""
        if FakeDiscord._active is not None:
            raise RuntimeError("another FakeDiscord is running; discord.py's base URL is global")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

        # Route.url is computed from the class attribute at construction time, so patching
        # the class redirects every later request; webhook.async_ re-exports the same class.
        self._saved_bases = {
            "http": discord.http.Route.BASE,
            "webhook": _WEBHOOK_ROUTE.BASE,
            "asset": discord.asset.Asset.BASE,
        }
        self._saved_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        _WEBHOOK_ROUTE.BASE = self.api_base
        # Avatars and other CDN assets would otherwise go to the real cdn.discordapp.com.
        discord.asset.Asset.BASE = self.base_url
        # Client.connect() never asks GET /gateway/bot: it opens DEFAULT_GATEWAY (read at each
        # connect), then READY's resume_gateway_url for RESUMEs. (AutoShardedClient does ask.)
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        FakeDiscord._active = self

    async def stop(self) -> None:
        """Close the gateway sockets, stop serving and restore discord.py's base URLs."""
        await self._close_gateway()
        if FakeDiscord._active is self:
            discord.http.Route.BASE = self._saved_bases["http"]
            _WEBHOOK_ROUTE.BASE = self._saved_bases["webhook"]
            discord.asset.Asset.BASE = self._saved_bases["asset"]
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved_gateway
            FakeDiscord._active = None
        for _, future in self._waiters:
            if not future.done():
                future.cancel()
        self._waiters.clear()
        for _, frame_future in self._frame_waiters:
            if not frame_future.done():
                frame_future.cancel()
        self._frame_waiters.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ world setup

    def add_user(
        self,
        user_id: int | None = None,
        *,
        username: str | None = None,
        global_name: str | None = None,
        bot: bool = False,
    ) -> JSON:
        """Register a user (served by GET /users/{id}) and return its user object."""
        uid = user_id or new_snowflake()
        user = make_user(uid, username, global_name=global_name, bot=bot)
        self.users[uid] = user
        return user

    def add_guild(
        self,
        guild_id: int | None = None,
        *,
        name: str = "Fake Guild",
        owner_id: int | None = None,
        everyone_permissions: int = EVERYONE_PERMISSIONS,
        bot_permissions: int = BOT_PERMISSIONS,
    ) -> JSON:
        """Register a guild the bot is in: the gateway sends it in READY and GUILD_CREATE.

        It gets an @everyone role (id == guild id) and the bot's managed role, which the bot's
        member has; edit ``fake.guilds[id]["roles"]`` to change permissions before connecting.
        """
        gid = guild_id or new_snowflake()
        role_defaults: JSON = {
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "mentionable": False,
            "flags": 0,
        }
        guild: JSON = {
            "id": str(gid),
            "name": name,
            "owner_id": str(owner_id or self.owner["id"]),
            "joined_at": utc_iso(),
            "roles": [
                {
                    **role_defaults,
                    "id": str(gid),
                    "name": "@everyone",
                    "permissions": str(everyone_permissions),
                    "position": 0,
                    "managed": False,
                },
                {
                    **role_defaults,
                    "id": str(new_snowflake()),
                    "name": self.bot_name,
                    "permissions": str(bot_permissions),
                    "position": 1,
                    "managed": True,
                    "tags": {"bot_id": str(self.bot_user_id)},
                },
            ],
        }
        self.guilds[gid] = guild
        return guild

    def add_channel(
        self,
        channel_id: int | None = None,
        *,
        name: str = "general",
        guild_id: int | None = None,
        type: int = 0,
        parent_id: int | None = None,
    ) -> JSON:
        """Register a guild channel (served by GET /channels/{id}) and return its object."""
        cid = channel_id or new_snowflake()
        channel: JSON = {
            "id": str(cid),
            "type": type,
            "guild_id": str(guild_id or self.guild_id),
            "name": name,
            "position": len(self.channels),
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None if parent_id is None else str(parent_id),
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        self.channels[cid] = channel
        return channel

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str,
        *,
        channel_id: int = 0,
        **extra: Any,
    ) -> JSON:
        """Serve ``data`` from the fake CDN and return the attachment object pointing at it.

        The URL embeds the port, so call this after ``start()``.
        """
        attachment = self._store_attachment(channel_id, data, filename, content_type)
        attachment.update(extra)
        return attachment

    def add_message(
        self,
        channel_id: int | None = None,
        *,
        content: str = "",
        author: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> JSON:
        """Store a message as if already posted (by the test user unless ``author`` is given)."""
        cid = channel_id or self.channel_id
        message = self._new_message(
            cid,
            {"content": content},
            author=dict(author) if author is not None else self.users[self.user_id],
        )
        message.update(fields)
        return message

    def register_interaction(self, payload: Mapping[str, Any]) -> InteractionState:
        """Remember an INTERACTION_CREATE payload so its callback and webhooks resolve."""
        user = payload.get("user")
        member = payload.get("member")
        if isinstance(member, Mapping):
            user = member.get("user", user)
        component_message_id: int | None = None
        message = payload.get("message")
        channel_id = _as_int(payload.get("channel_id"))
        if isinstance(message, Mapping):
            component_message_id = int(message["id"])
            # A click on a message that was deleted since does not bring it back.
            known = self.messages_by_id.keys() | self.deleted_messages.keys()
            if component_message_id not in known:
                stored = dict(message)
                self.messages_by_id[component_message_id] = stored
                cid = _as_int(stored.get("channel_id")) or channel_id or 0
                self._channel_order.setdefault(cid, []).append(component_message_id)
        state = InteractionState(
            id=int(payload["id"]),
            token=str(payload["token"]),
            type=_as_int(payload.get("type")),
            channel_id=channel_id,
            guild_id=_as_int(payload.get("guild_id")),
            user=dict(user) if isinstance(user, Mapping) else None,
            created=time.monotonic(),
            component_message_id=component_message_id,
            upload_limit=_as_int(payload.get("attachment_size_limit")),
        )
        self.interactions[state.token] = state
        return state

    def dm_channel_for(self, user_id: int) -> JSON:
        """Return (creating if needed) the DM channel between the bot and ``user_id``."""
        existing = self.dm_channels.get(user_id)
        if existing is not None:
            return self.channels[existing]
        recipient = self.users.get(user_id) or self.add_user(user_id)
        cid = new_snowflake()
        channel: JSON = {
            "id": str(cid),
            "type": 1,
            "last_message_id": None,
            "flags": 0,
            "recipients": [recipient],
        }
        self.channels[cid] = channel
        self.dm_channels[user_id] = cid
        return channel

    # ------------------------------------------------------------------ inspection

    def mark(self) -> int:
        """Return an index to pass as ``since`` to only consider later requests."""
        return len(self.requests)

    def calls(self, method: str | None, path_regex: str, *, since: int = 0) -> list[Recorded]:
        """Recorded requests with this method (None: any) whose path matches ``path_regex``."""
        pattern = re.compile(path_regex)
        return [
            r
            for r in self.requests[since:]
            if (method is None or r.method == method.upper()) and pattern.search(r.path)
        ]

    async def wait_for(
        self,
        predicate: Callable[[Recorded], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - the waiting is the point of this helper
        *,
        since: int = 0,
    ) -> Recorded:
        """Return the first recorded request (from index ``since``) matching ``predicate``."""
        for recorded in self.requests[since:]:
            if predicate(recorded):
                return recorded
        future: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        waiter = (predicate, future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            seen = "\n".join(f"  {r.method} {r.path} -> {r.status}" for r in self.requests[since:])
            raise AssertionError(
                f"no matching request within {timeout}s; requests seen:\n{seen or '  (none)'}"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    async def wait_for_call(
        self,
        method: str | None,
        path_regex: str,
        timeout: float = 5.0,  # noqa: ASYNC109 - the waiting is the point of this helper
        *,
        since: int = 0,
        status: int | None = None,
    ) -> Recorded:
        """``wait_for`` a request by method and path regex (and optionally response status)."""
        pattern = re.compile(path_regex)

        def matches(r: Recorded) -> bool:
            return (
                (method is None or r.method == method.upper())
                and pattern.search(r.path) is not None
                and (status is None or r.status == status)
            )

        return await self.wait_for(matches, timeout, since=since)

    def channel_messages(self, channel_id: int, *, include_ephemeral: bool = True) -> list[JSON]:
        """Messages stored in a channel, oldest first (deleted ones excluded)."""
        messages = [
            self.messages_by_id[mid]
            for mid in self._channel_order.get(channel_id, [])
            if mid in self.messages_by_id
        ]
        if include_ephemeral:
            return messages
        return [m for m in messages if not int(m.get("flags") or 0) & EPHEMERAL]

    def dm_messages(self, user_id: int) -> list[JSON]:
        """Messages the bot sent in its DM with ``user_id``."""
        cid = self.dm_channels.get(user_id)
        return [] if cid is None else self.channel_messages(cid)

    def interaction_messages(self, token: str) -> list[JSON]:
        """The original response (if any) and the follow-ups of one interaction, in order."""
        state = self.interactions.get(token)
        if state is None:
            return []
        ids = [state.original_message_id, *state.followup_ids]
        return [self.messages_by_id[i] for i in ids if i is not None and i in self.messages_by_id]

    # ------------------------------------------------------------------ faults

    def fail_next(
        self,
        method: str | None,
        path_regex: str,
        status: int,
        *,
        count: int = 1,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        is_global: bool = False,
    ) -> Fault:
        """Make the next ``count`` matching requests fail with ``status``.

        A 429 carries ``Via`` and a JSON ``retry_after`` (default 0.05 s), which is what
        discord.py needs to sleep and retry instead of raising. discord.py also retries 5xx
        by itself, but sleeps 1 + 2n seconds between tries.
        """
        fault = Fault(
            method=method,
            pattern=re.compile(path_regex),
            status=status,
            remaining=count,
            code=code,
            message=message,
            retry_after=retry_after,
            is_global=is_global,
        )
        self.faults.append(fault)
        return fault

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                return fault
        return None

    def _fault_error(self, fault: Fault, path: str) -> DiscordError:
        default_code, default_message = _DEFAULT_ERRORS.get(fault.status, (0, f"{fault.status}"))
        if fault.status == 404 and fault.code is None:
            default_code, default_message = self._not_found_for(path)
        code = default_code if fault.code is None else fault.code
        message = default_message if fault.message is None else fault.message
        if fault.status != 429:
            return DiscordError(fault.status, code, message)
        retry_after = 0.05 if fault.retry_after is None else fault.retry_after
        headers = {
            # discord.py treats a 429 without Via as a Cloudflare ban and raises at once.
            "Via": "1.1 google",
            "Retry-After": str(max(1, math.ceil(retry_after))),
            "X-RateLimit-Scope": "global" if fault.is_global else "user",
        }
        if fault.is_global:
            headers["X-RateLimit-Global"] = "true"
        return DiscordError(
            429,
            code,
            message,
            headers=headers,
            extra={"retry_after": retry_after, "global": fault.is_global},
        )

    def _random_fault(self, method: str, path: str, body: Any) -> str | None:
        """Draw a random fault kind for this request (None: none), as `random_faults` says."""
        if self.random_faults <= 0:
            return None
        route = next(
            (
                m
                for verb, pattern in _RANDOM_FAULT_ROUTES
                if verb == method and (m := pattern.fullmatch(path)) is not None
            ),
            None,
        )
        if route is None or self.random_fault_rng.random() >= self.random_faults:
            return None
        kinds = list(self.random_fault_shares)
        weights = list(self.random_fault_shares.values())
        kind = self.random_fault_rng.choices(kinds, weights)[0]
        if kind == "403":
            channel = self.channels.get(_as_int(route.groupdict().get("channel_id")) or 0)
            if channel is None or channel.get("type") == 1:
                kind = "429"  # only a guild channel send can lose its permission
        if kind == "500_after":
            nonce = isinstance(body, dict) and body.get("nonce") and body.get("enforce_nonce")
            if method != "PATCH" and not nonce:
                kind = "500"  # a lost answer to a plain send would make a real duplicate
        self.random_faults_injected[kind] += 1
        return kind

    def _random_fault_error(self, kind: str, path: str) -> DiscordError:
        if kind == "403":
            return DiscordError(403, 50013, "Missing Permissions")
        if kind.startswith("500"):
            return DiscordError(500, 0, "500: Internal Server Error")
        retry_after = round(self.random_fault_rng.uniform(0.02, 0.2), 3)
        return self._fault_error(Fault(None, re.compile(""), 429, 0, retry_after=retry_after), path)

    @staticmethod
    def _not_found_for(path: str) -> tuple[int, str]:
        if re.search(r"/messages/", path):
            return 10008, "Unknown Message"
        if path.startswith("/channels/"):
            return 10003, "Unknown Channel"
        if path.startswith("/interactions/"):
            return 10062, "Unknown interaction"
        if path.startswith("/webhooks/"):
            return 10015, "Unknown Webhook"
        if path.startswith("/users/"):
            return 10013, "Unknown User"
        return 0, "404: Not Found"

    # ------------------------------------------------------------------ routing

    def add_route(
        self,
        method: str,
        template: str,
        handler: Handler,
        *,
        auth: bool = True,
        api: bool = True,
        first: bool = True,
    ) -> None:
        """Add a route; ``template`` uses ``{name}`` params and is under /api/v10 if ``api``.

        Routes added later win over earlier ones (``first=True``), so a test can override a
        built-in. ``auth`` routes answer 401 without a bot Authorization header.
        """
        entry = _RouteEntry(method.upper(), _template_to_regex(template), handler, auth, api)
        if first:
            self._routes.insert(0, entry)
        else:
            self._routes.append(entry)

    def _install_routes(self) -> None:
        table: list[tuple[str, str, Handler, bool]] = [
            ("GET", "/users/@me", self._get_me, True),
            ("POST", "/users/@me/channels", self._create_dm, True),
            ("GET", "/users/{user_id}", self._get_user, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/applications/{app_id}/commands", self._get_global_commands, True),
            ("PUT", "/applications/{app_id}/commands", self._put_global_commands, True),
            (
                "GET",
                "/applications/{app_id}/guilds/{guild_id}/commands",
                self._get_guild_commands,
                True,
            ),
            (
                "PUT",
                "/applications/{app_id}/guilds/{guild_id}/commands",
                self._put_guild_commands,
                True,
            ),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback, False),
            ("POST", "/webhooks/{app_id}/{token}", self._webhook_execute, False),
            ("GET", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_get, False),
            (
                "PATCH",
                "/webhooks/{app_id}/{token}/messages/{message_id}",
                self._webhook_edit,
                False,
            ),
            (
                "DELETE",
                "/webhooks/{app_id}/{token}/messages/{message_id}",
                self._webhook_delete,
                False,
            ),
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("POST", "/channels/{channel_id}/typing", self._typing, True),
            ("GET", "/channels/{channel_id}/messages", self._list_messages, True),
            ("POST", "/channels/{channel_id}/messages", self._create_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message, True),
        ]
        for method, template, handler, auth in table:
            self.add_route(method, template, handler, auth=auth, first=False)
        for prefix in ("/cdn/attachments", "/media/attachments"):
            self.add_route(
                "GET",
                prefix + "/{channel_id}/{attachment_id}/{filename}",
                self._cdn_attachment,
                auth=False,
                api=False,
                first=False,
            )

    def _match(self, method: str, path: str, api: bool) -> tuple[_RouteEntry, dict[str, str]]:
        path_exists = False
        for entry in self._routes:
            if entry.api != api:
                continue
            match = entry.pattern.fullmatch(path)
            if match is None:
                continue
            path_exists = True
            if entry.method == method:
                return entry, match.groupdict()
        if path_exists:
            raise _UnknownRoute(405, 0, "405: Method Not Allowed")
        raise _UnknownRoute(404, 0, "404: Not Found")

    def _is_authorized(self, request: web.Request) -> bool:
        header = request.headers.get(hdrs.AUTHORIZATION, "")
        if self.token is not None:
            return secrets.compare_digest(header, f"Bot {self.token}")
        return header.startswith("Bot ") and len(header) > len("Bot ")

    async def _read_body(self, request: web.Request) -> tuple[Any | None, list[RecordedFile]]:
        content_type = request.content_type
        if content_type == "multipart/form-data":
            payload: Any | None = None
            files: list[RecordedFile] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    continue
                data = bytes(await part.read(decode=False))
                name = part.name or ""
                if part.filename is None and name == "payload_json":
                    payload = self._parse_json(data)
                    continue
                files.append(
                    RecordedFile(
                        field=name,
                        filename=part.filename or name,
                        size=len(data),
                        content_type=part.headers.get(hdrs.CONTENT_TYPE),
                        data=data,
                    )
                )
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        if content_type == "application/json":
            return self._parse_json(raw), []
        return None, []

    @staticmethod
    def _parse_json(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise DiscordError(400, 50109, "The request body contains invalid JSON.") from None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        method = request.method.upper()
        api = request.path == API_BASE_PATH or request.path.startswith(API_BASE_PATH + "/")
        path = request.path[len(API_BASE_PATH) :] if api else request.path
        authorized = self._is_authorized(request)
        query = dict(request.query)
        body: Any | None = None
        files: list[RecordedFile] = []
        unknown = False
        response: web.StreamResponse
        try:
            body, files = await self._read_body(request)
            fault = self._take_fault(method, path)
            if fault is not None:
                raise self._fault_error(fault, path)
            chance = self._random_fault(method, path, body) if api else None
            if chance is not None and chance != "500_after":
                raise self._random_fault_error(chance, path)
            try:
                entry, params = self._match(method, path, api)
            except _UnknownRoute:
                unknown = True
                raise
            if entry.auth and not authorized:
                raise DiscordError(401, 0, "401: Unauthorized")
            response = await entry.handler(
                FakeRequest(request, method, path, params, query, body, files, authorized)
            )
            if chance == "500_after" and 200 <= response.status < 300:
                response = self._random_fault_error(chance, path).response()
        except DiscordError as error:
            response = error.response()
        except Exception as exc:
            # A bug in the fake: fail fast with a 400 (discord.py would retry a 5xx for
            # seconds) and keep the exception so the test can show it.
            self.errors.append(exc)
            response = DiscordError(400, -1, f"FakeDiscord handler crashed: {exc!r}").response()
        recorded = Recorded(
            method=method,
            path=path,
            query=query,
            json=body,
            files=files,
            headers_authorized=authorized,
            time=arrived,
            status=response.status,
            response=self._response_json(response),
        )
        self._record(recorded, unknown=unknown)
        return response

    @staticmethod
    def _response_json(response: web.StreamResponse) -> Any | None:
        if isinstance(response, web.Response) and response.content_type == "application/json":
            body = response.body
            if isinstance(body, bytes | bytearray):
                return json.loads(body)
        return None

    def _record(self, recorded: Recorded, *, unknown: bool = False) -> None:
        self.requests.append(recorded)
        if unknown:
            self.unknown_requests.append(recorded)
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(recorded):
                future.set_result(recorded)

    # ------------------------------------------------------------------ identity routes

    async def _get_me(self, req: FakeRequest) -> web.StreamResponse:
        me = {
            **self.bot_user,
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
            "email": None,
            "bio": "",
        }
        return _json_response(me)

    async def _get_user(self, req: FakeRequest) -> web.StreamResponse:
        user = self.users.get(req.int_param("user_id"))
        if user is None:
            raise _unknown("User", 10013)
        return _json_response(user)

    async def _get_application(self, req: FakeRequest) -> web.StreamResponse:
        return _json_response(
            {
                "id": str(self.application_id),
                "name": self.bot_name,
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "hook": True,
                "bot": self.bot_user,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": self.verify_key,
                "flags": 0,
                "flags_new": "0",
                "owner": self.owner,
                "team": None,
                "rpc_origins": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "event_webhooks_url": None,
                "event_webhooks_status": 1,
                "event_webhooks_types": [],
                "tags": [],
                "integration_types_config": {"0": {}},
                "approximate_guild_count": 1,
                "approximate_user_install_count": 0,
                "approximate_user_authorization_count": 0,
                "explicit_content_filter": 0,
                "eligible_oauth2_scopes": [],
                "is_monetized": False,
                "is_verified": False,
                "is_discoverable": False,
            }
        )

    async def _get_gateway_bot(self, req: FakeRequest) -> web.StreamResponse:
        return _json_response(
            {
                "url": self.gateway_url,
                "shards": self.shard_count,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _get_gateway(self, req: FakeRequest) -> web.StreamResponse:
        return _json_response({"url": self.gateway_url})

    # ------------------------------------------------------------------ commands

    def _check_app(self, req: FakeRequest) -> None:
        if req.int_param("app_id") != self.application_id:
            raise _unknown("Application", 10002)

    def _upsert_commands(
        self, req: FakeRequest, existing: list[JSON], guild_id: int | None
    ) -> list[JSON]:
        payload = req.json
        if not isinstance(payload, list):
            raise _form_error(
                "_root", "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"
            )
        seen: set[tuple[str, int]] = set()
        by_key = {(c["name"], int(c.get("type", 1))): c for c in existing}
        result: list[JSON] = []
        for index, command in enumerate(payload):
            if not isinstance(command, dict):
                raise _form_error(str(index), "DICT_TYPE_CONVERT", "Only dictionaries may be used")
            name = str(command.get("name", ""))
            ctype = int(command.get("type", 1))
            # Slash commands: lowercase, no spaces; user and message context menus take any
            # 1-32 characters, spaces and capitals included ("Animate image").
            valid_name = (
                re.fullmatch(r"[-_'\w]{1,32}", name) is not None and name == name.lower()
                if ctype == 1
                else 1 <= len(name) <= 32 and name.strip() == name
            )
            if not valid_name:
                raise _form_error(
                    f"{index}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"
                )
            if ctype == 1 and not 1 <= len(str(command.get("description") or "")) <= 100:
                raise _form_error(
                    f"{index}.description",
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            if len(command.get("options") or []) > 25:
                raise _form_error(
                    f"{index}.options", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
                )
            if (name, ctype) in seen:
                raise _form_error(
                    f"{index}.name",
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    "Application command names must be unique",
                )
            seen.add((name, ctype))
            previous = by_key.get((name, ctype))
            stored: JSON = {
                "default_member_permissions": None,
                "nsfw": False,
                "description": "",
                "options": [],
                "contexts": None,
                "integration_types": [0],
                "name_localizations": None,
                "description_localizations": None,
                **command,
                "id": previous["id"] if previous else str(new_snowflake()),
                "application_id": str(self.application_id),
                "version": str(new_snowflake()),
                "type": ctype,
            }
            if guild_id is not None:
                stored["guild_id"] = str(guild_id)
            result.append(stored)
        return result

    async def _get_global_commands(self, req: FakeRequest) -> web.StreamResponse:
        self._check_app(req)
        return _json_response(self.global_commands)

    async def _put_global_commands(self, req: FakeRequest) -> web.StreamResponse:
        self._check_app(req)
        self.global_commands = self._upsert_commands(req, self.global_commands, None)
        return _json_response(self.global_commands)

    async def _get_guild_commands(self, req: FakeRequest) -> web.StreamResponse:
        self._check_app(req)
        return _json_response(self.guild_commands.get(req.int_param("guild_id"), []))

    async def _put_guild_commands(self, req: FakeRequest) -> web.StreamResponse:
        self._check_app(req)
        guild_id = req.int_param("guild_id")
        commands = self._upsert_commands(req, self.guild_commands.get(guild_id, []), guild_id)
        self.guild_commands[guild_id] = commands
        return _json_response(commands)

    # ------------------------------------------------------------------ messages (shared)

    def _store_attachment(
        self,
        channel_id: int,
        data: bytes,
        filename: str,
        content_type: str | None,
        *,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> JSON:
        attachment_id = new_snowflake()
        self.attachment_bytes[attachment_id] = (data, content_type)
        path = f"/attachments/{channel_id}/{attachment_id}/{filename}"
        attachment: JSON = {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data),
            "url": f"{self.base_url}/cdn{path}",
            "proxy_url": f"{self.base_url}/media{path}",
            "content_type": content_type,
        }
        if description is not None:
            attachment["description"] = description
        if ephemeral:
            attachment["ephemeral"] = True
        return attachment

    def _upload(
        self, channel_id: int, upload: RecordedFile, entry: Mapping[str, Any], ephemeral: bool
    ) -> JSON:
        filename = str(entry.get("filename") or upload.filename)
        sent_type = upload.content_type
        # Discord sniffs the type; discord.py always sends application/octet-stream.
        guessed = mimetypes.guess_type(filename)[0]
        content_type = guessed or (sent_type if sent_type != "application/octet-stream" else None)
        return self._store_attachment(
            channel_id,
            upload.data,
            filename,
            content_type,
            description=entry.get("description"),
            ephemeral=ephemeral,
        )

    def _check_uploads(self, files: list[RecordedFile], upload_limit: int | None) -> None:
        if len(files) > MAX_ATTACHMENTS:
            raise _form_error("files", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        # Discord bounds the whole request, not each file: several files share one limit.
        if sum(upload.size for upload in files) > (upload_limit or self.upload_limit):
            raise DiscordError(413, 40005, "Request entity too large")

    def _resolve_attachments(
        self,
        channel_id: int,
        payload: Mapping[str, Any],
        files: list[RecordedFile],
        existing: list[JSON],
        ephemeral: bool,
        upload_limit: int | None = None,
    ) -> list[JSON]:
        self._check_uploads(files, upload_limit)
        uploads: dict[int, RecordedFile] = {}
        for position, upload in enumerate(files):
            match = re.fullmatch(r"files\[(\d+)\]", upload.field)
            uploads[int(match.group(1)) if match else position] = upload

        existing_by_id = {str(a["id"]): a for a in existing}
        result: list[JSON] = []
        used: set[int] = set()
        if "attachments" in payload and payload["attachments"] is not None:
            for entry in payload["attachments"]:
                key = str(entry.get("id"))
                if key in existing_by_id:
                    result.append(existing_by_id[key])
                    continue
                index = _as_int(key)
                if index is None or index not in uploads:
                    raise _form_error(
                        "attachments", "ATTACHMENT_NOT_FOUND", f"Unknown attachment {key}"
                    )
                used.add(index)
                result.append(self._upload(channel_id, uploads[index], entry, ephemeral))
        else:
            result.extend(existing)
        for index in sorted(uploads):
            if index not in used:
                result.append(self._upload(channel_id, uploads[index], {}, ephemeral))
        return result

    def _mentions(
        self, content: str, allowed: Mapping[str, Any] | None
    ) -> tuple[list[JSON], list[str], bool]:
        user_ids = list(dict.fromkeys(_USER_MENTION.findall(content)))
        role_ids = list(dict.fromkeys(_ROLE_MENTION.findall(content)))
        everyone = "@everyone" in content or "@here" in content
        if allowed is not None:
            parse = set(allowed.get("parse") or [])
            allowed_users = [str(u) for u in allowed.get("users") or []]
            allowed_roles = [str(r) for r in allowed.get("roles") or []]
            user_ids = (
                [u for u in user_ids if u in allowed_users]
                if allowed_users
                else (user_ids if "users" in parse else [])
            )
            role_ids = (
                [r for r in role_ids if r in allowed_roles]
                if allowed_roles
                else (role_ids if "roles" in parse else [])
            )
            everyone = everyone and "everyone" in parse
        users = [self.users.get(int(u)) or make_user(int(u)) for u in user_ids]
        return users, role_ids, everyone

    @staticmethod
    def _validate_new_message(payload: Mapping[str, Any], files: list[RecordedFile]) -> None:
        content = payload.get("content")
        if content is not None and len(str(content)) > MAX_CONTENT_LENGTH:
            raise _form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        has_body = (
            bool(str(content or "").strip())
            or bool(payload.get("embeds"))
            or bool(files)
            or bool(payload.get("attachments"))
            or bool(payload.get("components"))
            or bool(payload.get("sticker_ids"))
            or bool(payload.get("poll"))
        )
        if not has_body:
            raise DiscordError(400, 50006, "Cannot send an empty message")
        _validate_embeds(payload.get("embeds"))

    def _new_message(
        self,
        channel_id: int,
        payload: Mapping[str, Any],
        *,
        files: list[RecordedFile] | None = None,
        author: JSON | None = None,
        flags: int = 0,
        message_type: int = _MESSAGE_TYPE_DEFAULT,
        interaction: InteractionState | None = None,
    ) -> JSON:
        message_id = new_snowflake()
        content = str(payload.get("content") or "")
        allowed = payload.get("allowed_mentions")
        mentions, mention_roles, everyone = self._mentions(content, allowed)
        reference = payload.get("message_reference")
        message: JSON = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "author": author or self.bot_user,
            "content": content,
            "timestamp": utc_iso(),
            "edited_timestamp": None,
            "tts": bool(payload.get("tts", False)),
            "mention_everyone": everyone,
            "mentions": mentions,
            "mention_roles": mention_roles,
            "attachments": self._resolve_attachments(
                channel_id,
                payload,
                files or [],
                [],
                bool(flags & EPHEMERAL),
                None if interaction is None else interaction.upload_limit,
            ),
            "embeds": list(payload.get("embeds") or []),
            "reactions": [],
            "pinned": False,
            "type": _MESSAGE_TYPE_REPLY if reference and message_type == 0 else message_type,
            "flags": flags,
            "components": list(payload.get("components") or []),
        }
        if allowed is not None:
            message["allowed_mentions"] = allowed
        if payload.get("nonce") is not None:
            message["nonce"] = payload["nonce"]
        if reference:
            message["message_reference"] = {**reference, "channel_id": str(channel_id), "type": 0}
            referenced = self.messages_by_id.get(_as_int(reference.get("message_id")) or 0)
            if referenced is not None:
                message["referenced_message"] = referenced
        if interaction is not None:
            message["webhook_id"] = str(self.application_id)
            message["application_id"] = str(self.application_id)
            if interaction.user is not None:
                message["interaction_metadata"] = {
                    "id": str(interaction.id),
                    "type": interaction.type or 2,
                    "user": interaction.user,
                    "authorizing_integration_owners": (
                        {"0": str(interaction.guild_id)} if interaction.guild_id else {"0": "0"}
                    ),
                }
        self.messages_by_id[message_id] = message
        self._channel_order.setdefault(channel_id, []).append(message_id)
        channel = self.channels.get(channel_id)
        if channel is not None:
            channel["last_message_id"] = str(message_id)
        return message

    def _apply_edit(
        self,
        message: JSON,
        payload: Mapping[str, Any],
        files: list[RecordedFile],
        upload_limit: int | None = None,
    ) -> None:
        self._check_uploads(files, upload_limit)  # a refused edit changes nothing
        _validate_embeds(payload.get("embeds"))
        if "content" in payload:
            content = payload["content"]
            if content is not None and len(str(content)) > MAX_CONTENT_LENGTH:
                raise _form_error(
                    "content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."
                )
            message["content"] = "" if content is None else str(content)
        for key in ("embeds", "components"):
            if key in payload:
                message[key] = list(payload[key] or [])
        if "allowed_mentions" in payload:
            message["allowed_mentions"] = payload["allowed_mentions"]
        if "content" in payload or "allowed_mentions" in payload:
            mentions, roles, everyone = self._mentions(
                message["content"], message.get("allowed_mentions")
            )
            message.update(mentions=mentions, mention_roles=roles, mention_everyone=everyone)
        flags = int(message.get("flags") or 0)
        if payload.get("flags") is not None:
            flags = (flags & ~EDITABLE_FLAGS) | (int(payload["flags"]) & EDITABLE_FLAGS)
        message["flags"] = flags & ~LOADING
        if "attachments" in payload or files:
            message["attachments"] = self._resolve_attachments(
                int(message["channel_id"]),
                payload,
                files,
                list(message.get("attachments") or []),
                bool(flags & EPHEMERAL),
                upload_limit,
            )
        message["edited_timestamp"] = utc_iso()

    def _delete_stored(self, message_id: int) -> None:
        message = self.messages_by_id.pop(message_id, None)
        if message is None:
            raise _unknown("Message", 10008)
        self.deleted_messages[message_id] = message
        order = self._channel_order.get(int(message["channel_id"]), [])
        if message_id in order:
            order.remove(message_id)

    # ------------------------------------------------------------------ interactions

    async def _callback(self, req: FakeRequest) -> web.StreamResponse:
        interaction_id = req.int_param("interaction_id")
        token = req.params["token"]
        state = self.interactions.get(token)
        if state is None:
            if self.strict_interactions:
                raise _unknown("interaction", 10062)
            state = InteractionState(
                id=interaction_id,
                token=token,
                type=None,
                channel_id=None,
                guild_id=None,
                user=None,
                created=time.monotonic(),
            )
            self.interactions[token] = state
        if state.id != interaction_id:
            raise _unknown("interaction", 10062)
        if (
            self.callback_deadline is not None
            and time.monotonic() - state.created > self.callback_deadline
        ):
            # Discord drops the interaction if the first response is later than 3 seconds.
            raise _unknown("interaction", 10062)
        if state.acknowledged:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")

        body = req.body
        response_type = _as_int(body.get("type"))
        if response_type is None:
            raise _form_error("type", "BASE_TYPE_REQUIRED", "This field is required")
        self._check_response_type(state, response_type)
        data: JSON = dict(body.get("data") or {})
        channel_id = state.channel_id or 0
        message: JSON | None = None
        ephemeral = bool(int(data.get("flags") or 0) & EPHEMERAL)

        if response_type == 4:
            self._validate_new_message(data, req.files)
            message = self._new_message(
                channel_id,
                data,
                files=req.files,
                flags=int(data.get("flags") or 0) & SETTABLE_FLAGS,
                message_type=_MESSAGE_TYPE_CHAT_INPUT_COMMAND
                if state.type == 2
                else _MESSAGE_TYPE_DEFAULT,
                interaction=state,
            )
            state.original_message_id = int(message["id"])
        elif response_type == 5:
            message = self._new_message(
                channel_id,
                {"content": ""},
                flags=LOADING | (EPHEMERAL if ephemeral else 0),
                message_type=_MESSAGE_TYPE_CHAT_INPUT_COMMAND
                if state.type == 2
                else _MESSAGE_TYPE_DEFAULT,
                interaction=state,
            )
            state.original_message_id = int(message["id"])
            state.deferred_pending = True
        elif response_type in (6, 7):
            state.original_message_id = state.component_message_id
            if state.component_message_id is not None:
                message = self.messages_by_id.get(state.component_message_id)
            if response_type == 7 and message is not None:
                self._apply_edit(message, data, req.files, state.upload_limit)

        state.response_type = response_type
        state.response_data = data
        self.callbacks.append(
            CallbackRecord(
                interaction_id=interaction_id,
                token=token,
                type=response_type,
                data=data,
                files=list(req.files),
                message_id=state.original_message_id,
                time=time.monotonic(),
            )
        )
        if not _truthy(req.query.get("with_response")):
            return _no_content()
        interaction: JSON = {"id": str(interaction_id), "type": state.type or 2}
        if message is not None:
            interaction["response_message_id"] = message["id"]
            interaction["response_message_loading"] = response_type == 5
            interaction["response_message_ephemeral"] = bool(
                int(message.get("flags") or 0) & EPHEMERAL
            )
        if state.channel_id is not None:
            interaction["channel_id"] = str(state.channel_id)
        if state.guild_id is not None:
            interaction["guild_id"] = str(state.guild_id)
        resource: JSON = {"type": response_type}
        if message is not None and response_type in (4, 5, 7):
            resource["message"] = message
        return _json_response({"interaction": interaction, "resource": resource})

    @staticmethod
    def _check_response_type(state: InteractionState, response_type: int) -> None:
        if response_type not in (1, 4, 5, 6, 7, 8, 9):
            raise _form_error(
                "type", "BASE_TYPE_CHOICES", "Value must be one of (1, 4, 5, 6, 7, 8, 9)."
            )
        if state.type is None:
            return
        allowed = {
            1: {1},
            2: {4, 5, 9},
            3: {4, 5, 6, 7, 9},
            4: {8},
            5: {4, 5, 6, 7},
        }.get(state.type, set())
        if response_type not in allowed:
            raise DiscordError(
                400, 40043, "Interaction response type not allowed for this interaction"
            )

    def _interaction_for_webhook(self, req: FakeRequest) -> InteractionState:
        if req.int_param("app_id") != self.application_id:
            raise _unknown("Webhook", 10015)
        state = self.interactions.get(req.params["token"])
        if state is None or not state.acknowledged:
            # The webhook token only works once the interaction has been acknowledged.
            raise _unknown("Webhook", 10015)
        return state

    def _interaction_message(self, state: InteractionState, raw_id: str) -> JSON:
        if raw_id == "@original":
            message_id = state.original_message_id
        else:
            message_id = _as_int(raw_id)
            if message_id not in (state.original_message_id, *state.followup_ids):
                message_id = None
        message = None if message_id is None else self.messages_by_id.get(message_id)
        if message is None:
            raise _unknown("Message", 10008)
        return message

    async def _webhook_execute(self, req: FakeRequest) -> web.StreamResponse:
        state = self._interaction_for_webhook(req)
        payload = req.body
        self._validate_new_message(payload, req.files)
        self._check_uploads(req.files, state.upload_limit)  # before the loading message changes
        flags = int(payload.get("flags") or 0)
        original = (
            self.messages_by_id.get(state.original_message_id)
            if state.original_message_id is not None
            else None
        )
        if state.deferred_pending and original is not None:
            # Discord: the first follow-up after a deferred response replaces the loading
            # message and keeps the deferral's visibility, whatever flags it asks for.
            state.deferred_pending = False
            original["attachments"] = []
            self._apply_edit(
                original,
                {"content": None, "embeds": [], "components": [], **payload, "flags": flags},
                req.files,
                state.upload_limit,
            )
            original["edited_timestamp"] = None
            if payload.get("nonce") is not None:
                original["nonce"] = payload["nonce"]
            message = original
        else:
            message = self._new_message(
                state.channel_id or 0,
                payload,
                files=req.files,
                flags=flags & SETTABLE_FLAGS,
                interaction=state,
            )
            state.followup_ids.append(int(message["id"]))
        if not _truthy(req.query.get("wait")):
            return _no_content()
        return _json_response(message)

    async def _webhook_get(self, req: FakeRequest) -> web.StreamResponse:
        state = self._interaction_for_webhook(req)
        return _json_response(self._interaction_message(state, req.params["message_id"]))

    async def _webhook_edit(self, req: FakeRequest) -> web.StreamResponse:
        state = self._interaction_for_webhook(req)
        message = self._interaction_message(state, req.params["message_id"])
        self._apply_edit(message, req.body, req.files, state.upload_limit)
        if int(message["id"]) == state.original_message_id:
            state.deferred_pending = False
        return _json_response(message)

    async def _webhook_delete(self, req: FakeRequest) -> web.StreamResponse:
        state = self._interaction_for_webhook(req)
        message = self._interaction_message(state, req.params["message_id"])
        self._delete_stored(int(message["id"]))
        return _no_content()

    # ------------------------------------------------------------------ channels

    def _channel_for(self, req: FakeRequest, *, sending: bool = False) -> int:
        channel_id = req.int_param("channel_id")
        if channel_id in self.missing_channels:
            raise _unknown("Channel", 10003)
        if self.strict_channels and channel_id not in self.channels:
            raise _unknown("Channel", 10003)
        if sending:
            if channel_id in self.forbidden_channels:
                raise DiscordError(403, 50013, "Missing Permissions")
            channel = self.channels.get(channel_id)
            if channel is not None and channel.get("type") == 1:
                recipient = int(channel["recipients"][0]["id"])
                if recipient in self.dm_closed_users:
                    raise DiscordError(403, 50007, "Cannot send messages to this user")
        return channel_id

    def _channel_message(self, req: FakeRequest, channel_id: int) -> JSON:
        message = self.messages_by_id.get(req.int_param("message_id"))
        if message is None or int(message["channel_id"]) != channel_id:
            raise _unknown("Message", 10008)
        return message

    async def _get_channel(self, req: FakeRequest) -> web.StreamResponse:
        channel_id = self._channel_for(req)
        channel = self.channels.get(channel_id)
        if channel is None:
            raise _unknown("Channel", 10003)
        return _json_response(channel)

    async def _create_dm(self, req: FakeRequest) -> web.StreamResponse:
        recipient = _as_int(req.body.get("recipient_id"))
        if recipient is None:
            raise _form_error("recipient_id", "BASE_TYPE_REQUIRED", "This field is required")
        return _json_response(self.dm_channel_for(recipient))

    async def _typing(self, req: FakeRequest) -> web.StreamResponse:
        self._channel_for(req, sending=True)
        return _no_content()

    async def _list_messages(self, req: FakeRequest) -> web.StreamResponse:
        channel_id = self._channel_for(req)
        limit = max(1, min(100, _as_int(req.query.get("limit")) or 50))
        before = _as_int(req.query.get("before"))
        after = _as_int(req.query.get("after"))
        messages = self.channel_messages(channel_id, include_ephemeral=False)
        if before is not None:
            messages = [m for m in messages if int(m["id"]) < before]
        if after is not None:
            messages = [m for m in messages if int(m["id"]) > after][:limit]
        # Discord lists newest first.
        return _json_response(list(reversed(messages[-limit:])))

    async def _create_message(self, req: FakeRequest) -> web.StreamResponse:
        channel_id = self._channel_for(req, sending=True)
        payload = req.body
        nonce = payload.get("nonce")
        key = (channel_id, str(nonce))
        if nonce is not None and payload.get("enforce_nonce"):
            seen = self._nonces.get(key)
            if seen is not None and time.monotonic() - seen[1] <= self.nonce_window:
                earlier = self.messages_by_id.get(seen[0])
                if earlier is not None:
                    return _json_response(earlier)
        self._validate_new_message(payload, req.files)
        message = self._new_message(
            channel_id,
            payload,
            files=req.files,
            flags=int(payload.get("flags") or 0)
            & (SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | IS_COMPONENTS_V2),
        )
        if nonce is not None and payload.get("enforce_nonce"):
            self._nonces[key] = (int(message["id"]), time.monotonic())
        return _json_response(message)

    async def _get_message(self, req: FakeRequest) -> web.StreamResponse:
        channel_id = self._channel_for(req)
        return _json_response(self._channel_message(req, channel_id))

    async def _edit_message(self, req: FakeRequest) -> web.StreamResponse:
        channel_id = self._channel_for(req)
        message = self._channel_message(req, channel_id)
        if message["author"]["id"] != self.bot_user["id"] and "content" in req.body:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        self._apply_edit(message, req.body, req.files)
        return _json_response(message)

    async def _delete_message(self, req: FakeRequest) -> web.StreamResponse:
        channel_id = self._channel_for(req)
        message = self._channel_message(req, channel_id)
        self._delete_stored(int(message["id"]))
        return _no_content()

    # ------------------------------------------------------------------ CDN

    async def _cdn_attachment(self, req: FakeRequest) -> web.StreamResponse:
        attachment_id = _as_int(req.params["attachment_id"])
        stored = None if attachment_id is None else self.attachment_bytes.get(attachment_id)
        if stored is None:
            return web.Response(status=404, text="404: Not Found")
        data, content_type = stored
        return web.Response(body=data, content_type=content_type or "application/octet-stream")

    # ------------------------------------------------------------------ gateway: world

    def _guild_ids(self) -> list[int]:
        """Every guild of the world: registered ones, then any a channel points at."""
        for channel in list(self.channels.values()):
            gid = _as_int(channel.get("guild_id"))
            if gid is not None and gid not in self.guilds:
                self.add_guild(gid)
        return list(self.guilds)

    def guild_payload(self, guild_id: int, *, join: bool = False) -> JSON:
        """The GUILD_CREATE body for one guild, built from the fake's current world.

        Channels come from ``add_channel`` (threads go to ``threads``), roles from
        ``add_guild``; the only member is the bot itself, as Discord sends it without the
        GUILD_MEMBERS intent. ``join=True`` leaves out ``unavailable`` as Discord does when
        the bot joins a guild: discord.py dispatches ``guild_join`` only then (with
        ``"unavailable": false`` it dispatches ``guild_available``).
        """
        base = self.guilds.get(guild_id) or self.add_guild(guild_id)
        channels: list[JSON] = []
        threads: list[JSON] = []
        for channel in self.channels.values():
            if _as_int(channel.get("guild_id")) != guild_id:
                continue
            entry = dict(channel)
            if int(entry.get("type", 0)) in _THREAD_TYPES:
                now = utc_iso()
                entry.setdefault("owner_id", str(self.bot_user_id))
                entry.setdefault("message_count", 0)
                entry.setdefault("member_count", 1)
                entry.setdefault(
                    "thread_metadata",
                    {
                        "archived": False,
                        "auto_archive_duration": 1440,
                        "archive_timestamp": now,
                        "locked": False,
                        "create_timestamp": now,
                    },
                )
                threads.append(entry)
                continue
            # Channels inside GUILD_CREATE carry no guild_id: the guild is implied.
            entry.pop("guild_id", None)
            if int(entry.get("type", 0)) in _VOICE_TYPES:
                entry.setdefault("bitrate", 64000)
                entry.setdefault("user_limit", 0)
                entry.setdefault("rtc_region", None)
            channels.append(entry)
        roles = [dict(role) for role in base["roles"]]
        bot_roles = [
            role["id"]
            for role in roles
            if (role.get("tags") or {}).get("bot_id") == str(self.bot_user_id)
        ]
        me = make_member(self.bot_user, roles=[int(r) for r in bot_roles])
        me["joined_at"] = base["joined_at"]
        system_channel = self.channels.get(self.channel_id)
        system_channel_id = (
            str(self.channel_id)
            if system_channel is not None and _as_int(system_channel.get("guild_id")) == guild_id
            else None
        )
        payload: JSON = {
            "id": str(guild_id),
            "name": base["name"],
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": base["owner_id"],
            "application_id": None,
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "system_channel_id": system_channel_id,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "nsfw": False,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "vanity_url_code": None,
            "max_members": 500000,
            "max_presences": None,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "incidents_data": None,
            "hub_type": None,
            "latest_onboarding_question_id": None,
            "features": [],
            "emojis": [],
            "stickers": [],
            "roles": roles,
            "joined_at": base["joined_at"],
            "large": False,
            "lazy": True,
            "unavailable": False,
            "member_count": len(self.users),
            "members": [me],
            "channels": channels,
            "threads": threads,
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "activity_instances": [],
            "version": int(time.time() * 1000),
        }
        if join:
            del payload["unavailable"]
        return payload

    def _ready_payload(self, session: GatewaySession, guild_ids: list[int]) -> JSON:
        ready: JSON = {
            "v": GATEWAY_VERSION,
            "user": {
                **self.bot_user,
                "verified": True,
                "mfa_enabled": False,
                "email": None,
                "bot": True,
            },
            "user_settings": {},
            "session_type": "normal",
            "session_id": session.session_id,
            "resume_gateway_url": self.resume_gateway_url,
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guilds": [{"id": str(gid), "unavailable": True} for gid in guild_ids],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["us-east", "us-central"],
            "auth": {},
            "application": {"id": str(self.application_id), "flags": self.application_flags},
            "_trace": ['["fake-gateway",{"micros":0}]'],
        }
        if session.shard is not None:
            ready["shard"] = list(session.shard)
        return ready

    # ------------------------------------------------------------------ gateway: public API

    async def dispatch_event(
        self, name: str, data: Mapping[str, Any] | None, *, guild_id: int | None = None
    ) -> int:
        """Send dispatch ``name`` (op 0, next ``s``) to every live bot session of its shard.

        With ``guild_id`` only the sessions whose shard holds that guild get it, by Discord's
        rule ``(guild_id >> 22) % shard_count``; an unsharded session gets everything.
        A session whose socket is down (``disconnect``) keeps it in its buffer and gets it on
        RESUME, as Discord does. Returns once it is written to the open sockets; returns how
        many sessions got it. Raises if no bot session covers the event.
        """
        sessions = [
            s
            for s in self.gateway_sessions.values()
            if not s.ended and (guild_id is None or shard_holds(s.shard, guild_id))
        ]
        if not sessions:
            raise RuntimeError(f"no bot session on the fake gateway for {name} to go to")
        # A private JSON copy: fails here if not serialisable, and later edits don't leak.
        body = json.loads(json.dumps(data))
        futures = [
            future
            for session in sessions
            if (future := self._queue_dispatch(session, name, body)) is not None
        ]
        if futures:
            await asyncio.gather(*futures)
        return len(sessions)

    async def send_interaction(self, payload: Mapping[str, Any]) -> InteractionState:
        """Deliver an INTERACTION_CREATE (e.g. from ``tests.payloads``) over the gateway.

        The interaction is registered first (unless the builder already did), so the bot's
        callback and follow-ups resolve.
        """
        state = self.interactions.get(str(payload["token"]))
        if state is None or state.id != int(payload["id"]):
            state = self.register_interaction(payload)
        # Discord sends a guild's interactions on the guild's shard, DMs on shard 0.
        guild_id = _as_int(payload.get("guild_id")) or 0
        await self.dispatch_event("INTERACTION_CREATE", payload, guild_id=guild_id)
        return state

    async def disconnect(
        self,
        code: int | None = 4000,
        *,
        reason: str | None = None,
        hold: bool = False,
        timeout: float = 5.0,  # noqa: ASYNC109 - bounds the wait for the sockets to close
    ) -> None:
        """Drop every open gateway socket and return once they are closed.

        ``code`` 4000 (or any resumable code): the bot reconnects to ``resume_gateway_url``
        and RESUMEs. ``code=None``: send op 7 RECONNECT and let the bot close and resume.
        4007/4009 also end the session (the RESUME gets INVALID_SESSION, the bot identifies
        again); 4004 and 4010-4014 make discord.py give up (``ConnectionClosed``).
        ``hold=True`` keeps new sockets waiting before HELLO until ``release_gateway()``, so
        dispatches sent meanwhile are certain to be missed, buffered and replayed.
        """
        if hold:
            self._gateway_open.clear()
        connections = [c for c in self.gateway_connections if not c.done.is_set()]
        for connection in connections:
            if code is None:
                connection.push(self._frame(OP_RECONNECT, None))
                continue
            if code in _SESSION_ENDING_CLOSES and connection.session is not None:
                connection.session.ended = True
            await connection.close(code, reason)
        if connections:
            await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in connections)), timeout)

    def release_gateway(self) -> None:
        """Let sockets held by ``disconnect(hold=True)`` proceed (HELLO, then RESUME)."""
        self._gateway_open.set()

    async def invalidate_session(self, *, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION on every open session socket.

        ``resumable=False`` ends the sessions: discord.py closes with 1000 and identifies
        again. ``resumable=True``: it closes with 4000 and resumes.
        """
        futures = []
        for connection in self.gateway_connections:
            if connection.done.is_set() or connection.session is None:
                continue
            if not resumable:
                connection.session.ended = True
            futures.append(connection.push(self._frame(OP_INVALID_SESSION, resumable)))
        if futures:
            await asyncio.gather(*futures)

    async def wait_for_gateway_closed(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 - the waiting is the point of this helper
    ) -> None:
        """Wait until every gateway socket has ended on the fake's side.

        ``bot.close()`` returns once it has sent its close frame, before the fake has read it;
        wait for this before asserting on sessions (``ended``) or ``gateway_connected``.
        """
        connections = [c for c in self.gateway_connections if not c.done.is_set()]
        if connections:
            await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in connections)), timeout)

    async def wait_for_gateway_frame(
        self,
        op: int | None = None,
        predicate: Callable[[GatewayFrame], bool] | None = None,
        *,
        since: int = 0,
        timeout: float = 5.0,  # noqa: ASYNC109 - the waiting is the point of this helper
    ) -> GatewayFrame:
        """Return the first frame the bot sent (from index ``since`` of ``gateway_frames``)
        with opcode ``op`` that satisfies ``predicate``."""

        def matches(frame: GatewayFrame) -> bool:
            return (op is None or frame.op == op) and (predicate is None or predicate(frame))

        for frame in self.gateway_frames[since:]:
            if matches(frame):
                return frame
        future: asyncio.Future[GatewayFrame] = asyncio.get_running_loop().create_future()
        waiter = (matches, future)
        self._frame_waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            seen = ", ".join(str(f.op) for f in self.gateway_frames[since:])
            raise AssertionError(
                f"no matching gateway frame (op {op}) within {timeout}s; ops seen: {seen}"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._frame_waiters.remove(waiter)

    # ------------------------------------------------------------------ gateway: protocol

    @staticmethod
    def _frame(op: int, d: Any) -> JSON:
        return {"t": None, "s": None, "op": op, "d": d}

    def _queue_dispatch(
        self, session: GatewaySession, name: str, data: Any
    ) -> asyncio.Future[bool] | None:
        session.seq += 1
        frame: JSON = {"t": name, "s": session.seq, "op": OP_DISPATCH, "d": data}
        session.buffer.append(frame)
        if session.connection is None:
            return None
        return session.connection.push(frame)

    def _mark_connected_when_sent(
        self, connection: GatewayConnection, future: asyncio.Future[bool]
    ) -> None:
        def done(sent: asyncio.Future[bool]) -> None:
            if sent.result() and connection.session is not None and not connection.closed:
                self.gateway_connected.set()

        future.add_done_callback(done)

    def _token_ok(self, token: Any) -> bool:
        if not isinstance(token, str) or not token:
            return False
        if self.token is None:
            return True
        return secrets.compare_digest(token, self.token)

    def _record_frame(self, connection: GatewayConnection, frame: Mapping[str, Any]) -> None:
        d = frame.get("d")
        if isinstance(d, dict) and "token" in d:
            d = {**d, "token": _REDACTED}
        op = frame.get("op")
        recorded = GatewayFrame(
            connection=connection.number,
            op=op if isinstance(op, int) else None,
            d=d,
            t=frame.get("t"),
            s=frame.get("s"),
            time=time.monotonic(),
        )
        self.gateway_frames.append(recorded)
        for predicate, future in list(self._frame_waiters):
            if not future.done() and predicate(recorded):
                future.set_result(recorded)

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        compression = (
            "zlib-stream"
            if self.gateway_compression and query.get("compress") == "zlib-stream"
            else None  # no compression asked, or one the fake lacks (zstd-stream): text frames
        )
        ws = web.WebSocketResponse(timeout=2.0, compress=False)
        await ws.prepare(request)
        connection = GatewayConnection(
            len(self.gateway_connections) + 1,
            ws,
            request,
            compression=compression,
            sent=self.gateway_sent,
        )
        self.gateway_connections.append(connection)
        try:
            await self._serve_gateway(connection)
        except Exception as exc:
            # A bug in the fake: keep it for the test and drop the socket.
            self.errors.append(exc)
            with contextlib.suppress(Exception):
                await connection.close(4000)
        finally:
            await connection.finish()
            self._gateway_ended(connection)
            connection.done.set()
        return ws

    async def _serve_gateway(self, connection: GatewayConnection) -> None:
        query = connection.query
        if query.get("v") != str(GATEWAY_VERSION):
            await connection.close(4012)
            return
        if query.get("encoding", "json") != "json":
            await connection.close(4002, "The fake gateway speaks JSON only.")
            return
        connection.start()
        connection.spawn(self._hello(connection))
        async for message in connection.ws:
            if message.type is WSMsgType.TEXT:
                try:
                    frame = json.loads(message.data)
                except ValueError:
                    frame = None
                if not isinstance(frame, dict):
                    await connection.close(4002)
                    break
                await self._on_gateway_frame(connection, frame)
                if connection.ws.closed:
                    break
            elif message.type is WSMsgType.BINARY:
                # discord.py only compresses what it receives; it sends JSON text.
                await connection.close(4002)
                break
            else:
                break

    async def _hello(self, connection: GatewayConnection) -> None:
        await self._gateway_open.wait()
        connection.push(
            self._frame(
                OP_HELLO,
                {
                    "heartbeat_interval": self.heartbeat_interval_ms,
                    "_trace": ['["fake-gateway",{"micros":0}]'],
                },
            )
        )

    async def _on_gateway_frame(self, connection: GatewayConnection, frame: JSON) -> None:
        self._record_frame(connection, frame)
        op = frame.get("op")
        d = frame.get("d")
        if op not in _CLIENT_OPS:
            await connection.close(4001)
        elif op == OP_HEARTBEAT:
            connection.push(self._frame(OP_HEARTBEAT_ACK, None))
        elif op == OP_IDENTIFY:
            await self._identify(connection, d)
        elif op == OP_RESUME:
            await self._resume(connection, d)
        elif connection.session is None:
            await connection.close(4003)
        elif op == OP_REQUEST_GUILD_MEMBERS and isinstance(d, dict):
            self._members_chunk(connection.session, d)
        # Presence, voice state and soundboard requests are recorded, nothing more.

    async def _identify(self, connection: GatewayConnection, d: Any) -> None:
        if connection.session is not None:
            await connection.close(4005)
            return
        if not isinstance(d, dict) or not isinstance(d.get("properties"), dict):
            await connection.close(4002)
            return
        if not self._token_ok(d.get("token")):
            await connection.close(4004)
            return
        intents = d.get("intents")
        if not isinstance(intents, int) or intents < 0:
            await connection.close(4013)
            return
        if intents & PRIVILEGED_INTENTS and not self.privileged_intents:
            await connection.close(4014)
            return
        shard: tuple[int, int] | None = None
        raw_shard = d.get("shard")
        if raw_shard is not None:
            valid = (
                isinstance(raw_shard, list)
                and len(raw_shard) == 2
                and all(isinstance(x, int) for x in raw_shard)
                and 0 <= raw_shard[0] < raw_shard[1]
            )
            if not valid:
                await connection.close(4010)
                return
            shard = (raw_shard[0], raw_shard[1])

        session = GatewaySession(
            session_id=secrets.token_hex(16), intents=intents, shard=shard, connection=connection
        )
        self.gateway_sessions[session.session_id] = session
        connection.session = session
        self.identify_count += 1
        guild_ids = [gid for gid in self._guild_ids() if shard_holds(shard, gid)]
        last = self._queue_dispatch(session, "READY", self._ready_payload(session, guild_ids))
        if intents & _GUILDS_INTENT:
            for gid in guild_ids:
                last = self._queue_dispatch(session, "GUILD_CREATE", self.guild_payload(gid))
        assert last is not None
        self._mark_connected_when_sent(connection, last)

    async def _resume(self, connection: GatewayConnection, d: Any) -> None:
        if connection.session is not None:
            await connection.close(4005)
            return
        if not isinstance(d, dict):
            await connection.close(4002)
            return
        if not self._token_ok(d.get("token")):
            await connection.close(4004)
            return
        session = self.gateway_sessions.get(str(d.get("session_id")))
        if session is None or session.ended:
            # discord.py closes with 1000, forgets the session and identifies again.
            connection.push(self._frame(OP_INVALID_SESSION, False))
            return
        seq = d.get("seq")
        if seq is not None and (not isinstance(seq, int) or seq > session.seq):
            await connection.close(4007)
            return
        previous = session.connection
        if previous is not None and previous is not connection:
            previous.session = None
        session.connection = connection
        connection.session = session
        self.resume_count += 1
        # All synchronous: nothing dispatched meanwhile can slip between replay and RESUMED.
        after = seq or 0
        for frame in session.buffer:
            if frame["s"] > after:
                connection.push(frame, replayed=True)
        resumed = self._queue_dispatch(session, "RESUMED", {"_trace": ['["fake-gateway"]']})
        assert resumed is not None
        self._mark_connected_when_sent(connection, resumed)

    def _members_chunk(self, session: GatewaySession, d: Mapping[str, Any]) -> None:
        guild_id = _as_int(d.get("guild_id"))
        if guild_id is None or guild_id not in self.guilds:
            return
        users = list(self.users.values())
        wanted = d.get("user_ids")
        not_found: list[str] = []
        if wanted:
            ids = [str(w) for w in (wanted if isinstance(wanted, list) else [wanted])]
            known = {u["id"] for u in users}
            not_found = [i for i in ids if i not in known]
            users = [u for u in users if u["id"] in ids]
        query = d.get("query")
        if isinstance(query, str) and query:
            users = [u for u in users if str(u["username"]).lower().startswith(query.lower())]
        limit = _as_int(d.get("limit")) or 0
        if limit:
            users = users[:limit]
        members = [make_member(u) for u in users]
        chunk: JSON = {
            "guild_id": str(guild_id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": not_found,
        }
        if d.get("nonce") is not None:
            chunk["nonce"] = d["nonce"]
        self._queue_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    def _gateway_ended(self, connection: GatewayConnection) -> None:
        session = connection.session
        if session is not None and session.connection is connection:
            session.connection = None
            # A client closing with 1000/1001 ends its session (discord.py: bot.close()).
            if connection.closed_by_fake is None and connection.close_code in (1000, 1001):
                session.ended = True
        if not any(s.connection is not None for s in self.gateway_sessions.values()):
            self.gateway_connected.clear()

    async def _close_gateway(self) -> None:
        self._gateway_open.set()
        connections = [c for c in self.gateway_connections if not c.done.is_set()]
        for connection in connections:
            with contextlib.suppress(Exception):
                await connection.close(1001)
        if connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in connections)), 2.0)
