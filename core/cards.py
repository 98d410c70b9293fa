"""How tasks look in Discord: the task card and the delivery message."""

from __future__ import annotations

from datetime import datetime

import discord

from db.budgets import Allowance, describe_day
from db.tasks import Task, TaskState
from provider.models import PRICES

_TITLES = {
    TaskState.SUBMITTING: "⏳ Submitting…",
    TaskState.RENDERING: "🎬 Rendering…",
    TaskState.DELIVERING: "📤 Posting the clip…",
    TaskState.DONE: "✅ Done",
    TaskState.FAILED: "❌ Failed — credits refunded",
    TaskState.REJECTED: "❌ Not started — credits refunded",
    TaskState.UNCERTAIN: "⚠️ No answer from the provider — credits refunded",
    TaskState.TIMED_OUT: "⌛ Timed out — credits refunded",
}
_COLOURS = {
    TaskState.SUBMITTING: discord.Colour.light_grey(),
    TaskState.RENDERING: discord.Colour.blurple(),
    TaskState.DELIVERING: discord.Colour.blurple(),
    TaskState.DONE: discord.Colour.green(),
}


# Direction overrides and isolates would let member text reorder the card around it.
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))


def quote(text: str, limit: int) -> str:
    """Show member text verbatim: markdown escaped, mentions inert, cut to `limit`."""
    text = text.translate(_BIDI_CONTROLS)
    escaped = discord.utils.escape_mentions(discord.utils.escape_markdown(text))
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def preset_label(duration: int, sound: bool) -> str:
    """Name a preset the way members read it: `5 s, silent`."""
    return f"{duration} s, {'with sound' if sound else 'silent'}"


def duration_text(seconds: float) -> str:
    """Say a length of time the way people do: `45 s`, `2 min 5 s`."""
    whole = max(0, round(seconds))
    minutes, rest = divmod(whole, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def progress_text(elapsed: float, typical: float | None) -> str:
    """Describe a render in progress: how long so far and, when known, how long it usually takes."""
    text = f"Rendering for {duration_text(elapsed)}"
    if typical is not None:
        text += f" · usually about {duration_text(typical)}"
    return text


def task_card(
    task: Task, *, balance_left: int | None = None, progress: str | None = None
) -> discord.Embed:
    """Return the embed that follows a task from submission to its end."""
    embed = discord.Embed(
        title=_TITLES[task.state],
        description=quote(task.prompt, 1500),
        colour=_COLOURS.get(task.state, discord.Colour.red()),
        timestamp=datetime.fromisoformat(task.created_at),
    )
    settings = f"{task.aspect_ratio} · {preset_label(task.duration, task.sound)}"
    if task.image_urls:
        settings += f" · from {len(task.image_urls)} image{'s' if len(task.image_urls) > 1 else ''}"
    embed.add_field(name="Settings", value=settings, inline=True)
    embed.add_field(name="Cost", value=f"{task.cost} credits", inline=True)
    if balance_left is not None:
        embed.add_field(name="Balance left", value=f"{balance_left} credits", inline=True)
    embed.add_field(name="Task id", value=f"`{task.id}`", inline=True)
    embed.add_field(name="Requested by", value=f"<@{task.user_id}>", inline=True)
    if progress is not None and task.state is TaskState.RENDERING:
        embed.add_field(name="Progress", value=progress, inline=False)
    if task.state.refunded and task.error:
        embed.add_field(name="Reason", value=quote(task.error, 1000), inline=False)
    if task.state is TaskState.DONE:
        embed.add_field(name="Clip", value=delivery_summary(task), inline=False)
    embed.set_footer(text="Seedance 1.5 Pro · /video status " + task.id)
    return embed


def delivery_summary(task: Task) -> str:
    """Say where the finished clip can be found."""
    links = " ".join(f"[link {n}]({url})" for n, url in enumerate(task.result_urls, start=1))
    if task.delivered_via in ("attachment", "link") and task.delivery_message_id:
        jump = (
            f"https://discord.com/channels/{task.guild_id}/"
            f"{task.delivery_channel_id}/{task.delivery_message_id}"
        )
        return f"[Posted here]({jump}) · {links}" if links else f"[Posted here]({jump})"
    if task.delivered_via == "dm":
        return f"Sent by direct message · {links}"
    return links or "No clip URL was returned."


def refill_text(allowance: Allowance, moment: datetime) -> str:
    """Say when and to what the member's credits refill, or that they do not."""
    refill = allowance.next_refill(moment)
    if refill is None:
        return "This server has no automatic refill: ask a server admin for more credits."
    return f"Refills to **{allowance.amount}** on {describe_day(refill)} (00:00 UTC)."


def prices_text() -> str:
    """List what each preset costs."""
    return "\n".join(
        f"{preset_label(duration, sound)}: **{credits}** credits"
        for (duration, sound), credits in sorted(PRICES.items(), key=lambda item: item[1])
    )


def status_line(task: Task) -> str:
    """Describe a task in one line of a list: state, preset, cost, age, and its result."""
    stamp = int(datetime.fromisoformat(task.created_at).timestamp())
    line = (
        f"`{task.id}` · {_TITLES[task.state]} · {preset_label(task.duration, task.sound)} · "
        f"{task.cost} credits · <t:{stamp}:R>"
    )
    link = _result_link(task)
    if link:
        line += f" · [clip]({link})"
    return f"{line}\n> {quote(task.prompt.replace(chr(10), ' '), 80)}"


def _result_link(task: Task) -> str | None:
    if task.state is not TaskState.DONE:
        return None
    if task.delivery_message_id and task.delivered_via in ("attachment", "link"):
        return (
            f"https://discord.com/channels/{task.guild_id}/"
            f"{task.delivery_channel_id}/{task.delivery_message_id}"
        )
    return task.result_urls[0] if task.result_urls else None
