"""The ledger as files Discord accepts: one CSV, one gzip-compressed CSV, or one per month.

Rows go from the database to a temporary file a page at a time, and the upload streams
from that file, so the process never holds the whole ledger in memory.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TextIO

from core import texts
from core.errors import UserFacingError
from db import Database, reports
from db.reports import LedgerScope

# Discord's limit is on the whole request: leave room for the message text and the
# multipart headers around each file.
REQUEST_OVERHEAD = 8 * 1024
MAX_FILES_PER_MESSAGE = 10  # Discord's own limit
MAX_MONTH_FILES = 10  # more than one message's worth of months is a range to ask for
COMPRESS_LEVEL = 6  # level 9 takes twice as long for a file a few per cent smaller


@dataclass(frozen=True)
class LedgerFile:
    """One file of the export, ready to upload."""

    path: Path
    rows: int
    size: int
    month: datetime | None = None

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class LedgerDelivery:
    """The files of an export, grouped into the messages that carry them."""

    form: Literal["plain", "gzip", "months"]
    rows: int
    messages: list[list[LedgerFile]]

    @property
    def files(self) -> list[LedgerFile]:
        return [file for message in self.messages for file in message]


async def export(
    db: Database, scope: LedgerScope, folder: Path, *, name: str, limit: int
) -> LedgerDelivery:
    """Write the scope's ledger into `folder` as the fewest files that fit `limit` bytes.

    Raises UserFacingError, having sent nothing, when even one file per month would not.
    """
    extent = await reports.ledger_extent(db, scope)
    budget = limit - REQUEST_OVERHEAD
    plain = await _write(db, extent.scope, folder / f"{name}.csv", compress=False)
    if plain.size <= budget:
        return LedgerDelivery("plain", plain.rows, [[plain]])
    packed = await asyncio.to_thread(_compress, plain, folder / f"{name}.csv.gz")
    await asyncio.to_thread(plain.path.unlink)
    if packed.size <= budget:
        return LedgerDelivery("gzip", packed.rows, [[packed]])
    await asyncio.to_thread(packed.path.unlink)

    assert extent.first_at is not None and extent.last_at is not None  # it has rows
    first, last = _month_of(extent.first_at), _month_of(extent.last_at)
    spanned = (last.year - first.year) * 12 + last.month - first.month + 1
    if spanned > MAX_MONTH_FILES:
        raise UserFacingError(
            texts.ledger_too_many_months(
                months=spanned,
                first=texts.calendar_month(first),
                last=texts.calendar_month(last),
                most=MAX_MONTH_FILES,
            )
        )
    months = [first]
    while months[-1] < last:
        months.append(_next_month(months[-1]))
    files: list[LedgerFile] = []
    for month in months:
        part = await _write(
            db,
            extent.scope.between(month, _next_month(month)),
            folder / f"{name}-{month:%Y-%m}.csv.gz",
            compress=True,
            month=month,
        )
        if part.size > budget:
            raise UserFacingError(texts.ledger_month_too_large(month=texts.calendar_month(month)))
        if part.rows:
            files.append(part)
    return LedgerDelivery("months", sum(file.rows for file in files), _pack(files, budget))


async def _write(
    db: Database, scope: LedgerScope, path: Path, *, compress: bool, month: datetime | None = None
) -> LedgerFile:
    out = await asyncio.to_thread(_open, path, compress)
    try:
        rows = await reports.write_ledger_csv(db, scope, out)
    finally:
        await asyncio.to_thread(out.close)
    size = (await asyncio.to_thread(path.stat)).st_size
    return LedgerFile(path, rows, size, month)


def _open(path: Path, compress: bool) -> TextIO:
    # newline="": the csv module writes its own line endings.
    if compress:
        return gzip.open(path, "wt", encoding="utf-8", newline="", compresslevel=COMPRESS_LEVEL)
    return path.open("w", encoding="utf-8", newline="")


def _compress(plain: LedgerFile, path: Path) -> LedgerFile:
    with plain.path.open("rb") as source, gzip.open(path, "wb", COMPRESS_LEVEL) as sink:
        shutil.copyfileobj(source, sink, 1024 * 1024)
    return LedgerFile(path, plain.rows, path.stat().st_size)


def _month_of(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def _next_month(month: datetime) -> datetime:
    return datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)


def _pack(files: list[LedgerFile], budget: int) -> list[list[LedgerFile]]:
    """Group files, in order, into messages of at most 10 files and `budget` bytes."""
    messages: list[list[LedgerFile]] = []
    for file in files:
        last = messages[-1] if messages else None
        if (
            last is None
            or len(last) == MAX_FILES_PER_MESSAGE
            or sum(f.size for f in last) + file.size > budget
        ):
            messages.append([file])
        else:
            last.append(file)
    return messages
