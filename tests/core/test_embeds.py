"""Property: no embed the bot builds passes Discord's limits, whatever members typed.

Hypothesis feeds every builder (task card, status, history, both balances, usage) random
tasks and texts full of astral emoji, combining marks, flags, markdown and mentions, and
checks each limit counted in UTF-16 code units (never fewer than the code points Discord
counts). It also checks that quoted member text stays escaped when it is cut, and that a
list which lost lines says how many.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import discord
from hypothesis import given, settings
from hypothesis import strategies as st

from core import texts
from core.cards import balance_card, history_card, member_card, task_card, usage_card
from core.embeds import FittedEmbed, Quoting, quote
from db.budgets import SettingsChange
from db.reports import Usage
from db.states import TaskState
from db.tasks import Task
from provider.models import PRICES

PROPERTY = settings(max_examples=150, deadline=None)
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

# Pieces Discord renders specially or that span several code points or UTF-16 units.
TRICKY = [
    "😀",
    "👩‍👩‍👧‍👦",
    "👍🏽",
    "🇫🇷",
    "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "❤️",
    "e\u0301",
    "\u0301\u0308\u0323",
    "Z\u0337\u0322\u031b\u0353",
    "\U0001d54f",  # a letter outside the BMP
    "\u200d",
    "\\",
    "*",
    "**",
    "_",
    "__",
    "~~",
    "||",
    "`",
    "```",
    "[x](https://evil.example)",
    "<@123456789012345678>",
    "<@&123456789012345678>",
    "@everyone",
    "@here",
    "<t:1:R>",
    "> ",
    ">>> ",
    "# ",
    "-# ",
    "- ",
    "1. ",
    "\n",
    " ",
    "\u202e",
    "\u2066",
]
piece = st.one_of(st.characters(blacklist_categories=["Cs"]), st.sampled_from(TRICKY))
member_text = st.one_of(
    st.lists(piece, max_size=200).map("".join),
    st.builds(lambda part, times: part * times, st.sampled_from(TRICKY), st.integers(0, 1500)),
)
snowflake = st.integers(10**17, 2**63 - 1)
url = st.integers(0, 2100).map(lambda size: "https://cdn.example/" + "a" * size)
# Hypothesis wants naive bounds; the values it draws are in UTC.
EARLIEST, LATEST = datetime(2015, 1, 1), datetime(2100, 1, 1)  # noqa: DTZ001
moment = st.datetimes(min_value=EARLIEST, max_value=LATEST, timezones=st.just(UTC))


@st.composite
def tasks(draw: st.DrawFn) -> Task:
    """Any task the database could hold, its prompt and reason written by a hostile member."""
    (duration, sound), cost = draw(st.sampled_from(sorted(PRICES.items())))
    state = draw(st.sampled_from(TaskState))
    stamp = draw(moment).isoformat()
    return Task(
        id=draw(st.text("0123456789abcdef", min_size=10, max_size=10)),
        guild_id=draw(snowflake),
        channel_id=draw(snowflake),
        user_id=draw(snowflake),
        card_message_id=draw(st.none() | snowflake),
        prompt=draw(member_text),
        aspect_ratio=draw(st.sampled_from(["16:9", "9:16", "1:1"])),
        duration=duration,
        sound=sound,
        image_urls=tuple(draw(st.lists(url, max_size=2))),
        cost=cost,
        upload_limit=10 * 1024 * 1024,
        provider_task_id=None,
        state=state,
        next_poll_at=None,
        poll_attempts=0,
        delivery_attempts=0,
        result_urls=tuple(draw(st.lists(url, max_size=8))),
        error=draw(st.none() | member_text.map(lambda text: text[:500])),
        delivery_message_id=draw(st.none() | snowflake),
        delivery_channel_id=draw(st.none() | snowflake),
        delivered_via=draw(st.sampled_from([None, "attachment", "link", "dm", "none"])),
        created_at=stamp,
        submitted_at=stamp,
        finished_at=None,
        updated_at=stamp,
        running_seconds=None,
        ready_seconds=None,
        lease_owner=None,
        lease_expires_at=None,
    )


def units(text: str) -> int:
    """UTF-16 code units: what a JavaScript client counts, never fewer than code points."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def assert_fits(embed: discord.Embed) -> dict[str, Any]:
    """Check the embed as discord.py sends it against every limit Discord sets."""
    sent: dict[str, Any] = dict(embed.to_dict())
    fields = sent.get("fields", [])
    assert len(fields) <= 25
    parts = {
        "title": (sent.get("title", ""), 256),
        "description": (sent.get("description", ""), 4096),
        "footer": (sent.get("footer", {}).get("text", ""), 2048),
        "author": (sent.get("author", {}).get("name", ""), 256),
    }
    for number, field in enumerate(fields):
        assert field["name"].strip() and field["value"].strip(), field
        parts[f"field {number} name"] = (field["name"], 256)
        parts[f"field {number} value"] = (field["value"], 1024)
    for where, (text, limit) in parts.items():
        assert units(text) <= limit, (where, units(text))
    assert sum(units(text) for text, _ in parts.values()) <= 6000
    return sent


def unescaped(text: str) -> str:
    """What Discord shows for text escaped with backslashes."""
    shown, escaping = [], False
    for char in text:
        if escaping or char != "\\":
            shown.append(char)
        escaping = not escaping and char == "\\"
    return "".join(shown)


def markdown_left_live(text: str) -> list[str]:
    """The markdown characters in `text` that no backslash escapes, and a dangling one."""
    live, escaping = [], False
    for char in text:
        if not escaping and char in "*_~|`[]<>":
            live.append(char)
        escaping = not escaping and char == "\\"
    return [*live, "\\"] if escaping else live


def joins_the_previous(char: str) -> bool:
    """A code point that belongs with the one before it (accent, joiner, modifier)."""
    point = ord(char)
    return (
        unicodedata.category(char) in ("Mn", "Mc", "Me")
        or char == "\u200d"
        or 0xFE00 <= point <= 0xFE0F
        or 0x1F3FB <= point <= 0x1F3FF
        or 0xE0020 <= point <= 0xE007F
    )


# --------------------------------------------------------------------------- quote


@PROPERTY
@given(text=member_text, room=st.integers(0, 2000))
def test_quoted_text_fits_stays_escaped_and_is_cut_between_characters(text: str, room: int) -> None:
    quoted = quote(text, room)
    assert units(quoted) <= room
    assert markdown_left_live(quoted.removesuffix(texts.CUT)) == []
    # What members see is their text (direction controls gone, mentions inert), or its start.
    visible = discord.utils.escape_mentions("".join(c for c in text if c not in BIDI_CONTROLS))
    if unescaped(quoted) == visible:
        return
    assert quoted.endswith(texts.CUT) or quoted == ""
    start = unescaped(quoted.removesuffix(texts.CUT))
    assert visible.startswith(start)
    rest = visible[len(start) :]
    # A cut at the very start is always between characters (text may open with an accent).
    assert rest and (not start or not joins_the_previous(rest[0]))
    assert not start.endswith("\u200d")


def test_a_quote_that_fits_shows_the_text_escaped() -> None:
    assert quote("a *bold* <@123> [x](y) \\", 100) == "a \\*bold\\* \\<@123\\> \\[x\\](y) \\\\"
    assert quote("# title\n- item\n1. first", 100) == "\\# title\n\\- item\n1\\. first"
    assert quote("e\u0301e\u0301e\u0301", 3) == "e\u0301…"  # never an accent without its letter
    assert quote("😀😀😀", 5) == "😀😀…"  # two UTF-16 units each


# --------------------------------------------------------------------------- FittedEmbed

plain_line = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\n"), max_size=400
)


@PROPERTY
@given(
    title=plain_line,
    description=st.lists(plain_line, max_size=40),
    fields=st.lists(
        st.tuples(plain_line.filter(str.strip), st.lists(plain_line, max_size=30)), max_size=25
    ),
    footer=st.text(max_size=2100),
)
def test_any_embed_fits_and_a_shortened_list_counts_what_it_left_out(
    title: str, description: list[str], fields: list[tuple[str, list[str]]], footer: str
) -> None:
    builder = FittedEmbed(title=title or "t", description=description, colour=discord.Colour.red())
    for name, lines in fields:
        builder.field(name, [line for line in lines if line.strip()], empty="-")
    sent = assert_fits(builder.footer(footer or "f").build())
    for (_, lines), field in zip(fields, sent.get("fields", []), strict=True):
        lines = [line for line in lines if line.strip()] or ["-"]
        shown = field["value"].split("\n")
        if shown != lines:
            kept = len(shown) - 1
            assert shown == [*lines[:kept], texts.and_more(count=len(lines) - kept)]


def quoted_lines(count: int) -> list[Quoting]:
    def numbered(number: int) -> Callable[[str], str]:
        return lambda quoted: f"{number:02}: {quoted}"

    return [Quoting("x" * 200, 80, numbered(n)) for n in range(count)]


def test_a_list_shortens_quoted_text_before_it_drops_lines() -> None:
    embed = FittedEmbed(title="t", colour=discord.Colour.red())
    embed.field("twenty", quoted_lines(20)).field("sixty", quoted_lines(60))
    twenty, sixty = (field.value or "" for field in embed.build().fields)
    # Twenty lines of 84 do not fit in 1,024: each keeps a shorter start of its text.
    rows = twenty.split("\n")
    assert len(rows) == 20 and all(row.endswith("x…") for row in rows)
    assert min(len(row) for row in rows) >= 20 and len(twenty) <= 1024
    # Sixty do not fit even so: each kept line keeps 20 units of text, the rest are counted.
    rows = sixty.split("\n")
    assert rows[-1] == texts.and_more(count=60 - (len(rows) - 1))
    assert all(row == f"{n:02}: " + "x" * 19 + "…" for n, row in enumerate(rows[:-1]))


# --------------------------------------------------------------------------- every builder


@PROPERTY
@given(
    task=tasks(),
    balance_left=st.none() | st.integers(0, 10**12),
    progress=st.none() | st.text(max_size=100),
)
def test_every_task_card_fits(task: Task, balance_left: int | None, progress: str | None) -> None:
    assert_fits(task_card(task, balance_left=balance_left, progress=progress or None))


@PROPERTY
@given(found=st.lists(tasks(), max_size=10), total=st.integers(0, 10**6))
def test_every_history_page_fits_and_lists_or_counts_each_task(
    found: list[Task], total: int
) -> None:
    sent = assert_fits(history_card(found, page=1, pages=max(1, total // 10), total=total))
    listed = sent["description"].count(" · <t:")
    if not found:
        assert sent["description"] == texts.HISTORY_EMPTY
    elif listed < len(found):
        assert sent["description"].endswith(texts.and_more(count=len(found) - listed))
    else:
        assert listed == len(found)


@PROPERTY
@given(
    name=st.text(max_size=32),
    recent=st.lists(tasks(), max_size=5),
    credits=st.integers(0, 10**12),
)
def test_every_member_balance_fits_and_lists_or_counts_each_task(
    name: str, recent: list[Task], credits: int
) -> None:
    sent = assert_fits(
        member_card(
            name=name or "x",
            mention="<@123456789012345678>",
            credits=credits,
            refill=texts.refills(amount=credits, day="Mon 30 Nov"),
            recent=recent,
        )
    )
    [field] = sent["fields"]
    listed = field["value"].count(" · <t:")
    assert listed == len(recent) or field["value"].endswith(
        texts.and_more(count=len(recent) - listed)
    )


def test_five_posted_clips_are_all_listed_with_shorter_prompts() -> None:
    # Issue 16: the longest ids and links Discord has, five times, with long prompts.
    prompt = "a slow dolly shot through a rain-soaked neon night market, steam rising" * 2
    posted = replace(
        done_task(),
        prompt=prompt,
        delivered_via="attachment",
        delivery_message_id=2**63 - 1,
        delivery_channel_id=2**63 - 1,
    )
    sent = assert_fits(
        member_card(name="n", mention="<@1>", credits=1, refill="r", recent=[posted] * 5)
    )
    value = sent["fields"][0]["value"]
    assert value.count("[clip](") == 5 and "more" not in value
    assert value.count("> a slow dolly") == 5


@PROPERTY
@given(credits=st.integers(0, 10**18), refill=st.text(max_size=300))
def test_every_own_balance_fits(credits: int, refill: str) -> None:
    assert_fits(balance_card(credits=credits, refill=refill or texts.NO_REFILL))


@PROPERTY
@given(
    outcomes=st.dictionaries(
        st.tuples(st.sampled_from([5, 10]), st.booleans(), st.sampled_from(TaskState)),
        st.integers(1, 10**9),
    ),
    top=st.lists(st.tuples(snowflake, st.integers(0, 10**12)), max_size=5),
    changes=st.lists(
        st.builds(
            SettingsChange,
            actor_id=snowflake,
            setting=st.text(max_size=60),
            old_value=st.none() | st.text(max_size=60),
            new_value=st.none() | st.text(max_size=60),
            created_at=moment.map(datetime.isoformat),
        ),
        max_size=5,
    ),
    amounts=st.tuples(st.integers(0, 10**12), st.integers(0, 10**12)),
    since=moment,
)
def test_every_usage_report_fits(
    outcomes: dict[tuple[int, bool, str], int],
    top: list[tuple[int, int]],
    changes: list[SettingsChange],
    amounts: tuple[int, int],
    since: datetime,
) -> None:
    charged, refunded = amounts
    report = Usage(charged=charged, refunded=refunded, tasks_by_outcome=outcomes, top_members=top)
    assert_fits(
        usage_card(
            period="month",
            since=since,
            report=report,
            cap=texts.cap_rule(cap=charged, period="month", left=refunded),
            allowance=texts.allowance_rule(amount=charged, period="week"),
            max_concurrent=20,
            changes=changes,
        )
    )


def done_task() -> Task:
    """A done task with one clip, as the database returns it."""
    stamp = "2026-11-25T12:00:00+00:00"
    return Task(
        id="1a34992c05",
        guild_id=2**63 - 1,
        channel_id=2**63 - 1,
        user_id=2**63 - 1,
        card_message_id=None,
        prompt="",
        aspect_ratio="16:9",
        duration=5,
        sound=False,
        image_urls=(),
        cost=65,
        upload_limit=10 * 1024 * 1024,
        provider_task_id=None,
        state=TaskState.DONE,
        next_poll_at=None,
        poll_attempts=0,
        delivery_attempts=0,
        result_urls=("https://cdn.example/clip.mp4",),
        error=None,
        delivery_message_id=None,
        delivery_channel_id=None,
        delivered_via=None,
        created_at=stamp,
        submitted_at=stamp,
        finished_at=None,
        updated_at=stamp,
        running_seconds=None,
        ready_seconds=None,
        lease_owner=None,
        lease_expires_at=None,
    )
