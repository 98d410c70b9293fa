"""How tasks look in Discord: the task card and the delivery message."""

from __future__ import annotations

from datetime import datetime

import discord

from core import texts
from db.budgets import Allowance
from db.states import TaskState
from db.tasks import Task
from provider.models import PRICES

_COLOURS = {
    TaskState.SUBMITTING: discord.Colour.light_grey(),
    TaskState.RENDERING: discord.Colour.blurple(),
    TaskState.DELIVERING: discord.Colour.blurple(),
    TaskState.DONE: discord.Colour.green(),
}

# The ways a clip reaches the server's channel (the others: "dm", "none").
IN_CHANNEL = ("attachment", "link")


# Direction overrides and isolates would let member text reorder the card around it.
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))


def quote(text: str, limit: int) -> str:
    """Show member text verbatim: markdown escaped, mentions inert, cut to `limit`."""
    text = text.translate(_BIDI_CONTROLS)
    escaped = discord.utils.escape_mentions(discord.utils.escape_markdown(text))
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def progress_text(elapsed: float, typical: float | None) -> str:
    """Describe a render in progress: how long so far and, when known, how long it usually takes."""
    return texts.progress(
        elapsed=texts.time_span(seconds=elapsed),
        typical=None if typical is None else texts.time_span(seconds=typical),
    )


def task_card(
    task: Task, *, balance_left: int | None = None, progress: str | None = None
) -> discord.Embed:
    """Return the embed that follows a task from submission to its end."""
    embed = discord.Embed(
        title=texts.STATE_TITLES[task.state],
        description=quote(task.prompt, 1500),
        colour=_COLOURS.get(task.state, discord.Colour.red()),
        timestamp=datetime.fromisoformat(task.created_at),
    )
    settings = texts.card_settings(
        aspect_ratio=task.aspect_ratio,
        preset=texts.preset_name(duration=task.duration, sound=task.sound),
        images=len(task.image_urls),
    )
    embed.add_field(name=texts.CARD_SETTINGS, value=settings, inline=True)
    embed.add_field(name=texts.CARD_COST, value=texts.credit_count(amount=task.cost), inline=True)
    if balance_left is not None:
        embed.add_field(
            name=texts.CARD_BALANCE_LEFT,
            value=texts.credit_count(amount=balance_left),
            inline=True,
        )
    embed.add_field(name=texts.CARD_TASK_ID, value=f"`{task.id}`", inline=True)
    embed.add_field(name=texts.CARD_REQUESTED_BY, value=f"<@{task.user_id}>", inline=True)
    if progress is not None and task.state is TaskState.RENDERING:
        embed.add_field(name=texts.CARD_PROGRESS, value=progress, inline=False)
    if task.state.refunded and task.error:
        embed.add_field(name=texts.CARD_REASON, value=quote(task.error, 1000), inline=False)
    if task.state is TaskState.DONE:
        embed.add_field(name=texts.CARD_CLIP, value=delivery_summary(task), inline=False)
    embed.set_footer(text=texts.card_footer(task_id=task.id))
    return embed


def message_url(guild_id: int, channel_id: int | None, message_id: int | None) -> str:
    """Return the link that jumps to a message in a server's channel."""
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def posted_clip_url(task: Task) -> str | None:
    """Return the link to the clip's post in the server, if it was posted there."""
    if task.delivered_via not in IN_CHANNEL or not task.delivery_message_id:
        return None
    return message_url(task.guild_id, task.delivery_channel_id, task.delivery_message_id)


def delivery_summary(task: Task) -> str:
    """Say where the finished clip can be found."""
    links = " ".join(
        texts.clip_link(number=n, url=url) for n, url in enumerate(task.result_urls, start=1)
    )
    jump = posted_clip_url(task)
    if jump is not None:
        return texts.clip_posted(jump=jump, links=links)
    if task.delivered_via == "dm":
        return texts.clip_sent_by_dm(links=links)
    return links or texts.NO_CLIP_URL


def refill_text(allowance: Allowance, moment: datetime) -> str:
    """Say when and to what the member's credits refill, or that they do not."""
    refill = allowance.next_refill(moment)
    if refill is None:
        return texts.NO_REFILL
    return texts.refills(amount=allowance.amount, day=texts.calendar_day(refill))


def prices_text() -> str:
    """List what each preset costs."""
    return "\n".join(
        texts.price_line(preset=texts.preset_name(duration=duration, sound=sound), credits=credits)
        for (duration, sound), credits in sorted(PRICES.items(), key=lambda item: item[1])
    )


def status_line(task: Task) -> str:
    """Describe a task in one line of a list: state, preset, cost, age, and its result."""
    stamp = int(datetime.fromisoformat(task.created_at).timestamp())
    return texts.status_line(
        task_id=task.id,
        title=texts.STATE_TITLES[task.state],
        preset=texts.preset_name(duration=task.duration, sound=task.sound),
        cost=task.cost,
        stamp=stamp,
        link=_result_link(task),
        prompt=quote(task.prompt.replace(chr(10), " "), 80),
    )


def _result_link(task: Task) -> str | None:
    if task.state is not TaskState.DONE:
        return None
    jump = posted_clip_url(task)
    if jump is not None:
        return jump
    return task.result_urls[0] if task.result_urls else None
