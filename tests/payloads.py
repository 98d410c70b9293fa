"""Builders for gateway INTERACTION_CREATE payloads, shaped as Discord sends them.

Each builder takes the app first: a ``FakeDiscord`` (ids, users and channels default to the
fake's world and the payload is registered with it, so its callback and webhooks resolve) or a
bare application id (then pass ``channel_id``, ``user_id`` and ``guild_id`` or ``dm=True``).
Every payload gets a fresh snowflake id and a random token. Nothing here knows the bot's
commands: names, options and custom ids all come from the caller.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

import discord

from tests.fakediscord import BOT_PERMISSIONS, FakeDiscord, make_member, make_user, new_snowflake

if TYPE_CHECKING:
    from discord.types.gateway import InteractionCreateEvent

__all__ = [
    "DEFAULT_APP_PERMISSIONS",
    "DEFAULT_MEMBER_PERMISSIONS",
    "OPTION_ATTACHMENT",
    "OPTION_BOOLEAN",
    "OPTION_CHANNEL",
    "OPTION_INTEGER",
    "OPTION_NUMBER",
    "OPTION_STRING",
    "OPTION_USER",
    "autocomplete",
    "component_click",
    "dispatch",
    "interaction",
    "modal_submit",
    "slash_command",
]

JSON = dict[str, Any]
App = FakeDiscord | int

OPTION_SUB_COMMAND = 1
OPTION_SUB_COMMAND_GROUP = 2
OPTION_STRING = 3
OPTION_INTEGER = 4
OPTION_BOOLEAN = 5
OPTION_USER = 6
OPTION_CHANNEL = 7
OPTION_NUMBER = 10
OPTION_ATTACHMENT = 11

INTERACTION_APPLICATION_COMMAND = 2
INTERACTION_MESSAGE_COMPONENT = 3
INTERACTION_AUTOCOMPLETE = 4
INTERACTION_MODAL_SUBMIT = 5

DEFAULT_MEMBER_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    read_message_history=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_application_commands=True,
).value
# What the fake's guild grants the bot is what interactions report as its permissions.
DEFAULT_APP_PERMISSIONS = BOT_PERMISSIONS
DEFAULT_ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024


def _token() -> str:
    # Real tokens are long base64-ish strings starting with "aW50ZXJhY3Rpb246" ("interaction:").
    return "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)


def _app_id(app: App) -> int:
    return app.application_id if isinstance(app, FakeDiscord) else app


def _user_object(app: App, user_id: int, extra_users: Mapping[int, Mapping[str, Any]]) -> JSON:
    if user_id in extra_users:
        return dict(extra_users[user_id])
    if isinstance(app, FakeDiscord) and user_id in app.users:
        return dict(app.users[user_id])
    return make_user(user_id)


def _guild_channel(app: App, channel_id: int, guild_id: int, permissions: int) -> JSON:
    known = app.channels.get(channel_id) if isinstance(app, FakeDiscord) else None
    channel: JSON = (
        dict(known)
        if known is not None
        else {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(guild_id),
            "name": "general",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
    )
    channel["permissions"] = str(permissions)
    return channel


def interaction(
    app: App,
    type: int,
    data: Mapping[str, Any] | None = None,
    *,
    guild_id: int | None = None,
    channel_id: int | None = None,
    user_id: int | None = None,
    user: Mapping[str, Any] | None = None,
    dm: bool = False,
    permissions: int = DEFAULT_MEMBER_PERMISSIONS,
    app_permissions: int = DEFAULT_APP_PERMISSIONS,
    roles: Iterable[int] = (),
    nick: str | None = None,
    locale: str = "en-US",
    guild_locale: str = "en-US",
    attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT,
    message: Mapping[str, Any] | None = None,
    register: bool = True,
) -> JSON:
    """Build any INTERACTION_CREATE payload around ``data``; the other builders use this."""
    fake = app if isinstance(app, FakeDiscord) else None
    if user is not None:
        user_id = int(user["id"])
    if user_id is None:
        if fake is None:
            raise ValueError("user_id is required without a FakeDiscord")
        user_id = fake.user_id
    user_obj = dict(user) if user is not None else _user_object(app, user_id, {})

    if not dm and guild_id is None:
        if fake is None:
            raise ValueError("guild_id is required without a FakeDiscord (or pass dm=True)")
        guild_id = fake.guild_id
    if channel_id is None and message is not None:
        channel_id = int(message["channel_id"])
    if channel_id is None:
        if fake is None:
            raise ValueError("channel_id is required without a FakeDiscord")
        channel_id = int(fake.dm_channel_for(user_id)["id"]) if dm else fake.channel_id

    payload: JSON = {
        "id": str(new_snowflake()),
        "application_id": str(_app_id(app)),
        "type": type,
        "token": _token(),
        "version": 1,
        "locale": locale,
        "app_permissions": str(app_permissions),
        "entitlements": [],
        "entitlement_sku_ids": [],
        "attachment_size_limit": attachment_size_limit,
        "channel_id": str(channel_id),
    }
    if data is not None:
        payload["data"] = dict(data)
    if dm or guild_id is None:
        payload["context"] = 1  # BOT_DM
        payload["authorizing_integration_owners"] = {"0": "0"}
        payload["user"] = user_obj
        payload["channel"] = {
            "id": str(channel_id),
            "type": 1,
            "last_message_id": None,
            "flags": 0,
            "recipients": [user_obj],
        }
    else:
        payload["context"] = 0  # GUILD
        payload["authorizing_integration_owners"] = {"0": str(guild_id)}
        payload["guild_id"] = str(guild_id)
        payload["guild_locale"] = guild_locale
        payload["guild"] = {"id": str(guild_id), "locale": guild_locale, "features": []}
        payload["member"] = make_member(user_obj, permissions=permissions, roles=roles, nick=nick)
        payload["channel"] = _guild_channel(app, channel_id, guild_id, permissions)
    if message is not None:
        payload["message"] = dict(message)
    if fake is not None and register:
        fake.register_interaction(payload)
    return payload


def _infer_option_type(name: str, value: Any) -> int:
    if isinstance(value, bool):
        return OPTION_BOOLEAN
    if isinstance(value, int):
        return OPTION_INTEGER
    if isinstance(value, float):
        return OPTION_NUMBER
    if isinstance(value, str):
        return OPTION_STRING
    if isinstance(value, Mapping) and "filename" in value:
        return OPTION_ATTACHMENT
    if isinstance(value, Mapping) and "username" in value:
        return OPTION_USER
    raise TypeError(f"cannot infer the option type of {name}={value!r}; pass option_types")


class _Resolver:
    """Collects ``data.resolved`` while options are converted."""

    def __init__(
        self,
        app: App,
        guild: bool,
        users: Iterable[Mapping[str, Any]],
        attachments: Iterable[Mapping[str, Any]],
    ) -> None:
        self.app = app
        self.guild = guild
        self.known_users = {int(u["id"]): u for u in users}
        self.known_attachments = {int(a["id"]): a for a in attachments}
        self.resolved: JSON = {}
        for user in self.known_users.values():
            self.add_user(user)
        for attachment in self.known_attachments.values():
            self.resolved.setdefault("attachments", {})[str(attachment["id"])] = dict(attachment)

    def add_user(self, user: Mapping[str, Any]) -> str:
        key = str(user["id"])
        self.resolved.setdefault("users", {})[key] = dict(user)
        if self.guild:
            member = make_member(None, permissions=DEFAULT_MEMBER_PERMISSIONS)
            self.resolved.setdefault("members", {})[key] = member
        return key

    def option(self, name: str, value: Any, option_type: int | None) -> JSON:
        kind = option_type or _infer_option_type(name, value)
        if kind == OPTION_USER:
            if isinstance(value, Mapping):
                user = dict(value)
            else:
                user = _user_object(self.app, int(value), self.known_users)
            return {"name": name, "type": kind, "value": self.add_user(user)}
        if kind == OPTION_ATTACHMENT:
            if isinstance(value, Mapping):
                attachment = dict(value)
            elif int(value) in self.known_attachments:
                attachment = dict(self.known_attachments[int(value)])
            else:
                raise ValueError(f"attachment {value} for option {name} is not in attachments=")
            key = str(attachment["id"])
            self.resolved.setdefault("attachments", {})[key] = attachment
            return {"name": name, "type": kind, "value": key}
        if kind == OPTION_CHANNEL:
            channel_id = int(value["id"]) if isinstance(value, Mapping) else int(value)
            fake = self.app if isinstance(self.app, FakeDiscord) else None
            known = fake.channels.get(channel_id) if fake is not None else None
            channel = dict(value) if isinstance(value, Mapping) else dict(known or {})
            channel.setdefault("id", str(channel_id))
            channel.setdefault("type", 0)
            channel.setdefault("name", f"channel-{channel_id % 10000}")
            channel.setdefault("permissions", str(DEFAULT_APP_PERMISSIONS))
            self.resolved.setdefault("channels", {})[str(channel_id)] = channel
            return {"name": name, "type": kind, "value": str(channel_id)}
        if kind in (OPTION_STRING, OPTION_INTEGER, OPTION_BOOLEAN, OPTION_NUMBER):
            return {"name": name, "type": kind, "value": value}
        raise ValueError(f"option type {kind} for {name} is not supported by this builder")


def _command_data(
    app: App,
    *,
    name: str,
    subcommand: str | None,
    options: Mapping[str, Any],
    option_types: Mapping[str, int],
    focused: str | None,
    guild_id: int | None,
    users: Iterable[Mapping[str, Any]],
    attachments: Iterable[Mapping[str, Any]],
    command_id: int | None,
    command_guild_id: int | None,
) -> JSON:
    resolver = _Resolver(app, guild_id is not None, users, attachments)
    converted: list[JSON] = []
    for option_name, value in options.items():
        option = resolver.option(option_name, value, option_types.get(option_name))
        if option_name == focused:
            option["focused"] = True
        converted.append(option)
    if focused is not None and focused not in options:
        converted.append({"name": focused, "type": OPTION_STRING, "value": "", "focused": True})

    # "group sub" nests a subcommand (type 1) inside a subcommand group (type 2).
    for level, part in enumerate(reversed((subcommand or "").split())):
        kind = OPTION_SUB_COMMAND if level == 0 else OPTION_SUB_COMMAND_GROUP
        converted = [{"name": part, "type": kind, "options": converted}]

    if isinstance(app, FakeDiscord):
        guild_commands = app.guild_commands.get(guild_id or 0, [])
        synced = next((c for c in guild_commands if c["name"] == name), None)
        if synced is not None and command_guild_id is None:
            command_guild_id = int(synced["guild_id"])
        synced = synced or next((c for c in app.global_commands if c["name"] == name), None)
        if synced is not None and command_id is None:
            command_id = int(synced["id"])
    data: JSON = {
        "id": str(command_id or new_snowflake()),
        "name": name,
        "type": 1,
        "options": converted,
    }
    if resolver.resolved:
        data["resolved"] = resolver.resolved
    if command_guild_id is not None:
        data["guild_id"] = str(command_guild_id)
    return data


def slash_command(
    app: App,
    *,
    name: str,
    subcommand: str | None = None,
    options: Mapping[str, Any] | None = None,
    option_types: Mapping[str, int] | None = None,
    guild_id: int | None = None,
    channel_id: int | None = None,
    user_id: int | None = None,
    user: Mapping[str, Any] | None = None,
    dm: bool = False,
    permissions: int = DEFAULT_MEMBER_PERMISSIONS,
    app_permissions: int = DEFAULT_APP_PERMISSIONS,
    roles: Iterable[int] = (),
    attachments: Iterable[Mapping[str, Any]] = (),
    resolved_users: Iterable[Mapping[str, Any]] = (),
    command_id: int | None = None,
    command_guild_id: int | None = None,
    locale: str = "en-US",
    attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT,
) -> JSON:
    """A chat-input command (type 2) invocation.

    ``options`` maps option names to values; the type comes from ``option_types[name]`` or the
    value: bool 5, int 4, float 10, str 3, an attachment dict 11, a user dict 6. A user option
    given as an id is looked up in ``resolved_users`` then the fake's users; an attachment
    option given as an id is looked up in ``attachments``. ``subcommand`` is "sub" or
    "group sub". The command id (and guild_id of a guild command) come from what the bot
    synced to the fake, when it did.
    """
    if not dm and guild_id is None and isinstance(app, FakeDiscord):
        guild_id = app.guild_id
    data = _command_data(
        app,
        name=name,
        subcommand=subcommand,
        options=options or {},
        option_types=option_types or {},
        focused=None,
        guild_id=None if dm else guild_id,
        users=resolved_users,
        attachments=attachments,
        command_id=command_id,
        command_guild_id=command_guild_id,
    )
    return interaction(
        app,
        INTERACTION_APPLICATION_COMMAND,
        data,
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=user_id,
        user=user,
        dm=dm,
        permissions=permissions,
        app_permissions=app_permissions,
        roles=roles,
        locale=locale,
        attachment_size_limit=attachment_size_limit,
    )


def autocomplete(
    app: App,
    *,
    name: str,
    focused: str,
    options: Mapping[str, Any] | None = None,
    subcommand: str | None = None,
    option_types: Mapping[str, int] | None = None,
    command_id: int | None = None,
    command_guild_id: int | None = None,
    **context: Any,
) -> JSON:
    """An autocomplete request (type 4): ``focused`` names the option being typed.

    The focused option's value is what the user has typed so far (pass it in ``options``;
    missing means an empty string). ``context`` takes ``interaction()``'s keyword arguments.
    """
    dm = bool(context.get("dm", False))
    guild_id = context.get("guild_id")
    if not dm and guild_id is None and isinstance(app, FakeDiscord):
        guild_id = app.guild_id
    data = _command_data(
        app,
        name=name,
        subcommand=subcommand,
        options=options or {},
        option_types=option_types or {},
        focused=focused,
        guild_id=None if dm else guild_id,
        users=(),
        attachments=(),
        command_id=command_id,
        command_guild_id=command_guild_id,
    )
    return interaction(app, INTERACTION_AUTOCOMPLETE, data, **context)


def component_click(
    app: App,
    custom_id: str,
    message: Mapping[str, Any],
    *,
    component_type: int = 2,
    values: Iterable[str] | None = None,
    **context: Any,
) -> JSON:
    """A component interaction (type 3) on ``message``: a button, or a select with ``values``.

    ``context`` takes ``interaction()``'s keyword arguments; the channel defaults to the
    message's.
    """
    data: JSON = {"custom_id": custom_id, "component_type": component_type}
    if values is not None or component_type != 2:
        data["values"] = list(values or [])
    return interaction(app, INTERACTION_MESSAGE_COMPONENT, data, message=message, **context)


def modal_submit(
    app: App,
    custom_id: str,
    values: Mapping[str, str],
    *,
    message: Mapping[str, Any] | None = None,
    **context: Any,
) -> JSON:
    """A modal submission (type 5) with one text input per ``values`` item (custom_id: text)."""
    data: JSON = {
        "custom_id": custom_id,
        "components": [
            {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
            for key, value in values.items()
        ],
    }
    return interaction(app, INTERACTION_MODAL_SUBMIT, data, message=message, **context)


def dispatch(client: discord.Client, payload: Mapping[str, Any]) -> None:
    """Hand ``payload`` to the client as if the gateway had sent INTERACTION_CREATE."""
    client._connection.parse_interaction_create(cast("InteractionCreateEvent", payload))
