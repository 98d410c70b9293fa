"""`/video-admin ledger` at any size: one CSV, one gzip-compressed CSV, or one file per month.

Ledger rows are written straight into the real SQLite file (thousands at once with
executemany) and the export runs as a real interaction against the fake Discord, which
refuses any reply whose files pass the interaction's `attachment_size_limit` (413, 40005).
"""

from __future__ import annotations

import csv
import gzip
import io
import random
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.ledger_export import REQUEST_OVERHEAD
from db import credits, iso, reports
from tests.e2e.live import FIGURES
from tests.fakediscord import EPHEMERAL, RecordedFile, new_snowflake
from tests.harness import Harness

LEDGER_HEADER = [
    "created_at",
    "guild_id",
    "user_id",
    "delta",
    "balance_after",
    "reason",
    "task_id",
    "actor_id",
]
NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)


def grants(members: list[int], count: int, start: datetime, step: timedelta) -> Iterator[Row]:
    """`count` grants spread over the members from `start`, one every `step`."""
    rng = random.Random(count)
    for n in range(count):
        yield Row(members[n % len(members)], start + n * step, rng.randint(1, 5000))


class Row:
    """One ledger row to insert: who, when, how much."""

    __slots__ = ("at", "delta", "user_id")

    def __init__(self, user_id: int, at: datetime, delta: int) -> None:
        self.user_id, self.at, self.delta = user_id, at, delta


async def insert_ledger(harness: Harness, rows: Iterable[Row]) -> dict[int, int]:
    """Write the rows (and their members) as grants by the admin; return each balance."""
    guild, actor = harness.fake.guild_id, harness.fake.user_id
    balances: dict[int, int] = defaultdict(int)
    values = []
    for row in rows:
        balances[row.user_id] += row.delta
        values.append((guild, row.user_id, row.delta, balances[row.user_id], actor, iso(row.at)))
    async with harness.bot.db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO members (guild_id, user_id, balance, created_at) VALUES (?, ?, ?, ?)",
            [(guild, user, balance, iso(NOVEMBER)) for user, balance in balances.items()],
        )
        await conn.executemany(
            "INSERT INTO ledger (guild_id, user_id, delta, balance_after, reason, actor_id, "
            "created_at) VALUES (?, ?, ?, ?, 'grant', ?, ?)",
            values,
        )
    assert await credits.unexplained_balances(harness.bot.db) == []
    return dict(balances)


async def ledger(harness: Harness, *, limit: int | None = None, **options: Any) -> dict[str, Any]:
    context = {} if limit is None else {"attachment_size_limit": limit}
    return await harness.run("ledger", group="video-admin", options=options, admin=True, **context)


def uploads(harness: Harness, payload: dict[str, Any]) -> list[RecordedFile]:
    """Every file the bot's accepted follow-ups to this interaction carried, in order."""
    calls = harness.fake.calls("POST", rf"^/webhooks/\d+/{payload['token']}$")
    assert all(call.status == 200 for call in calls), [call.status for call in calls]
    return [file for call in calls for file in call.files]


def rows_of(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode())))


def unzipped(upload: RecordedFile) -> list[list[str]]:
    assert upload.filename.endswith(".csv.gz")
    return rows_of(gzip.decompress(upload.data))


def contents(harness: Harness, payload: dict[str, Any]) -> list[str]:
    replies = harness.replies(payload)
    assert all(reply["flags"] & EPHEMERAL for reply in replies)
    return [reply["content"] for reply in replies]


def refused(harness: Harness, payload: dict[str, Any]) -> str:
    """The one private answer, with no file."""
    assert uploads(harness, payload) == []
    [content] = contents(harness, payload)
    return content


def assert_explains(rows: list[list[str]], balances: dict[int, int]) -> None:
    """The CSV's rows sum, member by member, to the balances, with balance_after running."""
    running: dict[int, int] = defaultdict(int)
    for row in rows:
        user, delta, after = int(row[2]), int(row[3]), int(row[4])
        running[user] += delta
        assert after == running[user]
    assert dict(running) == balances


def members(count: int) -> list[int]:
    return [new_snowflake() for _ in range(count)]


# --------------------------------------------------------------------------- by size


async def test_a_ledger_that_fits_is_one_plain_csv(harness: Harness) -> None:
    balances = await insert_ledger(harness, grants(members(2), 40, NOVEMBER, timedelta(hours=1)))
    payload = await ledger(harness)
    [upload] = uploads(harness, payload)
    assert upload.filename == f"ledger-{harness.fake.guild_id}.csv"
    rows = rows_of(upload.data)
    assert rows[0] == LEDGER_HEADER
    assert_explains(rows[1:], balances)
    assert contents(harness, payload) == ["40 ledger rows."]


async def test_a_ledger_too_large_as_plain_csv_comes_gzip_compressed(harness: Harness) -> None:
    balances = await insert_ledger(harness, grants(members(3), 600, NOVEMBER, timedelta(hours=1)))
    plain = await reports.ledger_csv(harness.bot.db, harness.fake.guild_id)
    packed = len(gzip.compress(plain))
    assert packed < len(plain) // 2
    limit = REQUEST_OVERHEAD + (packed + len(plain)) // 2  # the CSV does not fit, the gzip does

    payload = await ledger(harness, limit=limit)
    [upload] = uploads(harness, payload)
    assert upload.filename == f"ledger-{harness.fake.guild_id}.csv.gz"
    assert upload.size <= limit
    rows = unzipped(upload)
    assert rows[0] == LEDGER_HEADER
    assert len(rows) == 601
    assert_explains(rows[1:], balances)
    assert gzip.decompress(upload.data) == plain
    [says] = contents(harness, payload)
    assert says.startswith("600 ledger rows. Too large for Discord as plain CSV")
    assert "gzip-compressed (`.csv.gz`)" in says


async def test_a_ledger_too_large_even_compressed_comes_by_month(harness: Harness) -> None:
    people = members(3)
    three_months = [
        *grants(people, 500, datetime(2026, 9, 3, tzinfo=UTC), timedelta(hours=1)),
        *grants(people, 500, datetime(2026, 10, 2, tzinfo=UTC), timedelta(hours=1)),
        *grants(people, 500, datetime(2026, 11, 1, tzinfo=UTC), timedelta(hours=1)),
    ]
    balances = await insert_ledger(harness, three_months)
    plain = await reports.ledger_csv(harness.bot.db, harness.fake.guild_id)
    header, *lines = plain.decode().splitlines(keepends=True)
    by_month: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        by_month[line[:7]].append(line)
    largest_month = max(
        len(gzip.compress((header + "".join(m)).encode())) for m in by_month.values()
    )
    # Room for another compression level and the name and time in each gzip header.
    budget = largest_month * 5 // 4
    assert len(gzip.compress(plain)) > budget

    payload = await ledger(harness, limit=REQUEST_OVERHEAD + budget)
    files = uploads(harness, payload)
    guild = harness.fake.guild_id
    assert [f.filename for f in files] == [
        f"ledger-{guild}-2026-09.csv.gz",
        f"ledger-{guild}-2026-10.csv.gz",
        f"ledger-{guild}-2026-11.csv.gz",
    ]
    months = [unzipped(f) for f in files]
    assert all(rows[0] == LEDGER_HEADER for rows in months)
    assert [{row[0][:7] for row in rows[1:]} for rows in months] == [
        {"2026-09"},
        {"2026-10"},
        {"2026-11"},
    ]
    assert_explains([row for rows in months for row in rows[1:]], balances)
    # Each month fits alone, no two together: one message each.
    assert contents(harness, payload) == [
        "1500 ledger rows. Too large for Discord as one file even compressed, so it comes by "
        "calendar month (UTC), gzip-compressed (`.csv.gz`): 3 files, Sep 2026 to Nov 2026, "
        "in 3 messages.",
        "Ledger, part 2 of 3.",
        "Ledger, part 3 of 3.",
    ]


async def test_a_month_too_large_even_compressed_asks_for_fewer_days(harness: Harness) -> None:
    await insert_ledger(harness, grants(members(3), 600, NOVEMBER, timedelta(minutes=5)))
    payload = await ledger(harness, limit=REQUEST_OVERHEAD + 1000)
    says = refused(harness, payload)
    assert says.startswith("The ledger of Nov 2026 alone is too large for Discord, even")
    assert "`since` and `until`" in says


async def test_too_many_months_to_send_ask_for_a_shorter_range(harness: Harness) -> None:
    await insert_ledger(harness, grants(members(2), 400, NOVEMBER, timedelta(days=1)))
    payload = await ledger(harness, limit=REQUEST_OVERHEAD + 1000)
    says = refused(harness, payload)
    assert says.startswith("The ledger spans 14 months (Nov 2026 to Dec 2027)")
    assert "at most 10 months at a time with `since` and `until`" in says


async def test_a_ledger_of_130000_rows_is_delivered_without_holding_it_in_memory(
    harness: Harness,
) -> None:
    count = 130_000
    balances = await insert_ledger(
        harness, grants(members(50), count, NOVEMBER, timedelta(seconds=15))
    )
    plain_size = len(await reports.ledger_csv(harness.bot.db, harness.fake.guild_id))
    assert plain_size > 10 * 1024 * 1024  # past Discord's default limit as plain CSV

    tracemalloc.start()
    started = time.monotonic()
    try:
        payload = await ledger(harness)  # Discord's default attachment_size_limit, 10 MiB
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.monotonic() - started

    [upload] = uploads(harness, payload)
    FIGURES[f"ledger export of {count} rows"] = (
        f"{plain_size} bytes as CSV, {upload.size} gzipped, peak traced memory {peak} bytes "
        f"(the fake Discord's copy of the upload included), {seconds:.1f} s under tracemalloc"
    )
    # Holding the ledger in memory even once, as rows or as text, would pass this.
    assert peak < plain_size // 3
    rows = unzipped(upload)
    assert rows[0] == LEDGER_HEADER
    assert len(rows) == count + 1
    assert_explains(rows[1:], balances)
    [says] = contents(harness, payload)
    assert says.startswith(f"{count} ledger rows. Too large for Discord as plain CSV")


# --------------------------------------------------------------------------- since and until


async def test_since_and_until_take_days_or_months(harness: Harness) -> None:
    people = members(2)
    balances = await insert_ledger(
        harness, grants(people, 120, datetime(2026, 10, 1, tzinfo=UTC), timedelta(days=1))
    )
    assert balances

    payload = await ledger(harness, since="2026-11", until="2026-11")
    [upload] = uploads(harness, payload)
    rows = rows_of(upload.data)[1:]
    assert {row[0][:7] for row in rows} == {"2026-11"}
    assert len(rows) == 30
    assert contents(harness, payload) == ["30 ledger rows from 2026-11 through 2026-11."]

    payload = await ledger(harness, since="2026-11-10", until="2026-11-20")
    rows = rows_of(uploads(harness, payload)[0].data)[1:]
    assert [row[0][:10] for row in rows] == [f"2026-11-{day}" for day in range(10, 21)]

    payload = await ledger(harness, since="2027-01-15")
    rows = rows_of(uploads(harness, payload)[0].data)[1:]
    assert rows[0][0].startswith("2027-01-15") and rows[-1][0].startswith("2027-01-28")
    assert contents(harness, payload) == ["14 ledger rows from 2027-01-15."]


async def test_one_members_ledger_in_a_range(harness: Harness) -> None:
    painter = harness.fake.add_user(new_snowflake(), username="painter")
    painter_id = int(painter["id"])
    await insert_ledger(
        harness, grants([painter_id, new_snowflake()], 60, NOVEMBER, timedelta(days=1))
    )
    payload = await ledger(harness, member=painter, until="2026-11-30")
    [upload] = uploads(harness, payload)
    assert upload.filename == f"ledger-{harness.fake.guild_id}-{painter_id}.csv"
    rows = rows_of(upload.data)[1:]
    assert {row[2] for row in rows} == {str(painter_id)}
    assert len(rows) == 15
    assert contents(harness, payload) == [f"15 ledger rows for <@{painter_id}> through 2026-11-30."]


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"since": "2026-13"}, "since"),
        ({"since": "2026-02-30"}, "since"),
        ({"until": "last week"}, "until"),
        ({"until": "2026-11-05T10"}, "until"),  # a crafted call, past Discord's max_length
        ({"since": "26-11-05"}, "since"),
    ],
)
async def test_a_bad_since_or_until_is_refused_privately(
    harness: Harness, options: dict[str, Any], option: str
) -> None:
    await insert_ledger(harness, grants(members(1), 5, NOVEMBER, timedelta(days=1)))
    payload = await ledger(harness, **options)
    callback = harness.callback(payload)
    assert callback.json["type"] == 4
    assert callback.json["data"]["flags"] & EPHEMERAL
    assert callback.json["data"]["content"] == (
        f"`{option}` must be a day like `2026-11-05` or a month like `2026-11` (UTC). "
        "Nothing was exported."
    )
    assert uploads(harness, payload) == []


async def test_since_after_until_is_refused_privately(harness: Harness) -> None:
    payload = await ledger(harness, since="2026-12", until="2026-11-30")
    callback = harness.callback(payload)
    assert callback.json["data"]["flags"] & EPHEMERAL
    assert callback.json["data"]["content"] == (
        "`since` (2026-12) comes after `until` (2026-11-30), so there is nothing to export."
    )
    assert uploads(harness, payload) == []


def test_a_cell_that_a_spreadsheet_would_run_is_written_as_text() -> None:
    assert [reports.csv_cell(v) for v in ("=1+1", "+A1", "-2", "@SUM(A1)", "grant")] == [
        "'=1+1",
        "'+A1",
        "'-2",
        "'@SUM(A1)",
        "grant",
    ]
    assert [reports.csv_cell(v) for v in (-20, 0, None)] == ["-20", "0", ""]
