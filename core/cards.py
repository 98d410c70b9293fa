"""How the bot's answers look in Discord: the task card and every other embed.

Each builder goes through `core.embeds.FittedEmbed`, so no embed passes Discord's limits
whatever members typed or however many tasks there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import discord

from core import texts
from core.embeds import FittedEmbed, Line, Quoting
from db.budgets import Allowance, SettingsChange
from db.reports import Usage
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

# How much of member text each place shows when there is room (embeds.py cuts further).
PROMPT_ON_CARD = 1500
REASON_ON_CARD = 1000
PROMPT_IN_LIST = 80
CLIP_SEPARATOR = " · "


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
    prompt = Quoting(task.prompt, PROMPT_ON_CARD, lambda quoted: quoted)
    embed = FittedEmbed(
        title=texts.STATE_TITLES[task.state],
        description=prompt,
        colour=_COLOURS.get(task.state, discord.Colour.red()),
        timestamp=datetime.fromisoformat(task.created_at),
    )
    settings = texts.card_settings(
        aspect_ratio=task.aspect_ratio,
        preset=texts.preset_name(duration=task.duration, sound=task.sound),
        images=len(task.image_urls),
    )
    embed.field(texts.CARD_SETTINGS, settings, inline=True)
    embed.field(texts.CARD_COST, texts.credit_count(amount=task.cost), inline=True)
    if balance_left is not None:
        embed.field(texts.CARD_BALANCE_LEFT, texts.credit_count(amount=balance_left), inline=True)
    embed.field(texts.CARD_TASK_ID, f"`{task.id}`", inline=True)
    embed.field(texts.CARD_REQUESTED_BY, f"<@{task.user_id}>", inline=True)
    if progress is not None and task.state is TaskState.RENDERING:
        embed.field(texts.CARD_PROGRESS, progress)
    if task.state.refunded and task.error:
        embed.field(texts.CARD_REASON, Quoting(task.error, REASON_ON_CARD, lambda quoted: quoted))
    if task.state is TaskState.DONE:
        embed.field(texts.CARD_CLIP, delivery_items(task), separator=CLIP_SEPARATOR)
    embed.footer(texts.card_footer(task_id=task.id))
    return embed.build()


def message_url(guild_id: int, channel_id: int | None, message_id: int | None) -> str:
    """Return the link that jumps to a message in a server's channel."""
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def posted_clip_url(task: Task) -> str | None:
    """Return the link to the clip's post in the server, if it was posted there."""
    if task.delivered_via not in IN_CHANNEL or not task.delivery_message_id:
        return None
    return message_url(task.guild_id, task.delivery_channel_id, task.delivery_message_id)


def delivery_items(task: Task) -> list[str]:
    """Say where the finished clip can be found: where it went, then its links."""
    links = [texts.clip_link(number=n, url=url) for n, url in enumerate(task.result_urls, 1)]
    jump = posted_clip_url(task)
    if jump is not None:
        return [texts.clip_posted(jump=jump), *links]
    if task.delivered_via == "dm":
        return [texts.CLIP_SENT_BY_DM, *links]
    return links or [texts.NO_CLIP_URL]


def refill_text(allowance: Allowance, moment: datetime) -> str:
    """Say when and to what the member's credits refill, or that they do not."""
    refill = allowance.next_refill(moment)
    if refill is None:
        return texts.NO_REFILL
    return texts.refills(amount=allowance.amount, day=texts.calendar_day(refill))


def price_lines() -> list[str]:
    """List what each preset costs, cheapest first."""
    return [
        texts.price_line(preset=texts.preset_name(duration=duration, sound=sound), credits=credits)
        for (duration, sound), credits in sorted(PRICES.items(), key=lambda item: item[1])
    ]


def status_line(task: Task) -> Quoting:
    """Describe a task in one line of a list: state, preset, cost, age, its result, its prompt."""
    stamp = int(datetime.fromisoformat(task.created_at).timestamp())

    def fill(prompt: str) -> str:
        return texts.status_line(
            task_id=task.id,
            title=texts.STATE_TITLES[task.state],
            preset=texts.preset_name(duration=task.duration, sound=task.sound),
            cost=task.cost,
            stamp=stamp,
            link=_result_link(task),
            prompt=prompt,
        )

    return Quoting(task.prompt.replace("\n", " "), PROMPT_IN_LIST, fill)


def balance_card(*, credits: int, refill: str) -> discord.Embed:
    """Return a member's own credits, the prices and the next refill (`/video balance`)."""
    embed = FittedEmbed(
        title=texts.BALANCE_TITLE,
        description=texts.balance(credits=credits),
        colour=discord.Colour.blurple(),
    )
    embed.field(texts.BALANCE_PRICES, price_lines())
    embed.field(texts.BALANCE_REFILL, refill)
    return embed.build()


def history_card(tasks: Sequence[Task], *, page: int, pages: int, total: int) -> discord.Embed:
    """Return one page of a member's tasks, newest first (`/video history`)."""
    embed = FittedEmbed(
        title=texts.HISTORY_TITLE,
        description=[status_line(task) for task in tasks],
        empty=texts.HISTORY_EMPTY,
        colour=discord.Colour.blurple(),
    )
    embed.footer(texts.history_footer(page=page, pages=pages, total=total))
    return embed.build()


def member_card(
    *, name: str, mention: str, credits: int, refill: str, recent: Sequence[Task]
) -> discord.Embed:
    """Return any member's credits and recent tasks, for an admin (`/video-admin balance`)."""
    embed = FittedEmbed(
        title=texts.member_credits_title(name=name),
        description=texts.member_credits(member=mention, credits=credits, refill=refill),
        colour=discord.Colour.blurple(),
    )
    embed.field(
        texts.MEMBER_RECENT_TASKS, [status_line(task) for task in recent], empty=texts.NONE_YET
    )
    return embed.build()


def usage_card(
    *,
    period: str,
    since: datetime,
    report: Usage,
    cap: str,
    allowance: str,
    max_concurrent: int,
    changes: Sequence[SettingsChange],
) -> discord.Embed:
    """Return a server's spending, tasks, top members and settings (`/video-admin usage`)."""
    embed = FittedEmbed(
        title=texts.usage_title(period=period),
        description=texts.usage_summary(
            since=texts.calendar_day(since),
            spent=report.spent,
            charged=report.charged,
            refunded=report.refunded,
        ),
        colour=discord.Colour.blurple(),
    )
    outcomes: list[Line] = [
        texts.outcome_line(
            preset=texts.preset_name(duration=duration, sound=sound), state=state, count=count
        )
        for (duration, sound, state), count in sorted(report.tasks_by_outcome.items())
    ]
    embed.field(texts.USAGE_TASKS, outcomes)
    top = [texts.top_member(user_id=user, spent=spent) for user, spent in report.top_members]
    embed.field(texts.USAGE_TOP_MEMBERS, top, empty=texts.NOBODY_YET)
    embed.field(texts.USAGE_CAP, cap, inline=True)
    embed.field(texts.USAGE_ALLOWANCE, allowance, inline=True)
    embed.field(texts.USAGE_MAX_CONCURRENT, str(max_concurrent), inline=True)
    embed.field(
        texts.USAGE_CHANGES,
        [
            texts.settings_change(
                stamp=int(datetime.fromisoformat(change.created_at).timestamp()),
                actor_id=change.actor_id,
                setting=change.setting,
                old=change.old_value,
                new=change.new_value,
            )
            for change in changes
        ],
    )
    return embed.build()


def _result_link(task: Task) -> str | None:
    if task.state is not TaskState.DONE:
        return None
    jump = posted_clip_url(task)
    if jump is not None:
        return jump
    return task.result_urls[0] if task.result_urls else None
