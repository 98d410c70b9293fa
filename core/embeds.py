"""Embeds that fit Discord's limits whatever members typed: every embed the bot sends.

Builders say what goes where (`FittedEmbed`), in lines; `build()` shortens quoted member
text and then drops lines ("…and N more") until every part and the whole embed fit.
Lengths are counted in UTF-16 code units, never fewer than the code points Discord's API
counts, so a limit holds whichever way it is read.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import discord

from core import texts

TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FOOTER_LIMIT = 2048
TOTAL_LIMIT = 6000
MAX_FIELDS = 25

# A list keeps this much of each quoted text before it starts dropping whole lines.
MIN_QUOTE_IN_LIST = 20

# Direction overrides and isolates would let member text reorder the embed around it.
_BIDI_CONTROLS = dict.fromkeys(map(ord, "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
# Markdown that works anywhere in a line (and `<` starts mentions, channels and timestamps).
_ALWAYS_ESCAPED = frozenset("\\*_~|`[]<>")
# Markdown that works only at the start of a line: headings, lists, quotes, subtext.
_LINE_START_ESCAPED = frozenset("#-+")
_ZWJ = "\u200d"


def length(text: str) -> int:
    """Count `text` as the strictest reading of Discord's limits does: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def quote(text: str, room: int) -> str:
    """Show member text verbatim in at most `room` units: markdown escaped, mentions inert.

    Text that does not fit is cut between whole characters (a letter keeps its accents, an
    emoji its modifiers) before it is escaped, so no escape is ever left dangling.
    """
    inert = discord.utils.escape_mentions(text.translate(_BIDI_CONTROLS))
    pieces = _escaped_clusters(inert)
    whole = "".join(pieces)
    if length(whole) <= room:
        return whole
    budget = room - length(texts.CUT)
    kept: list[str] = []
    for piece in pieces:
        budget -= length(piece)
        if budget < 0:
            break
        kept.append(piece)
    return ("".join(kept).rstrip() + texts.CUT) if room >= length(texts.CUT) else ""


def _escaped_clusters(text: str) -> list[str]:
    """Split text into user-perceived characters, each with its markdown escaped."""
    pieces: list[str] = []
    line_start = True
    digits_only = False  # the line so far is a number: "1." would start a list
    for cluster in _clusters(text):
        first = cluster[0]
        escape = first in _ALWAYS_ESCAPED or (
            (line_start and first in _LINE_START_ESCAPED) or (digits_only and first == ".")
        )
        pieces.append("\\" + cluster if escape else cluster)
        if first == "\n":
            line_start, digits_only = True, False
        elif not first.isspace() or not line_start:
            digits_only = (line_start or digits_only) and first.isdigit()
            line_start = False
    return pieces


def _clusters(text: str) -> list[str]:
    """Group code points that display as one character (near enough to Unicode's rules)."""
    clusters: list[str] = []
    for char in text:
        if clusters and (
            _extends(char)
            # A joiner glues emoji together; markdown (all ASCII) always starts afresh.
            or (clusters[-1].endswith(_ZWJ) and ord(char) > 0x7F)
            or (_regional(char) and _regional(clusters[-1][-1]) and len(clusters[-1]) == 1)
        ):
            clusters[-1] += char
        else:
            clusters.append(char)
    return clusters


def _extends(char: str) -> bool:
    point = ord(char)
    return (
        unicodedata.category(char) in ("Mn", "Mc", "Me")
        or char == _ZWJ
        or 0xFE00 <= point <= 0xFE0F  # variation selectors
        or 0x1F3FB <= point <= 0x1F3FF  # skin tones
        or 0xE0020 <= point <= 0xE007F  # tag sequences (subdivision flags)
        or 0xE0100 <= point <= 0xE01EF
    )


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


@dataclass(frozen=True)
class Quoting:
    """A line that shows member text, which is shortened before the line is dropped."""

    text: str
    room: int
    fill: Callable[[str], str]

    def at(self, room: int) -> str:
        """Return the line with the member text quoted in at most `room` units."""
        return self.fill(quote(self.text, min(room, self.room)))


Line = str | Quoting


def _render(line: Line, room: int) -> str:
    return line.at(room) if isinstance(line, Quoting) else line


class _Part:
    """One text of an embed: its lines, the most it may hold, and how it shrinks."""

    def __init__(
        self,
        lines: Sequence[Line] | Line,
        limit: int,
        *,
        separator: str = "\n",
        blank: str | None = None,
    ) -> None:
        # A list says how many lines it dropped; a single text is cut with "…".
        self.listed = not isinstance(lines, str | Quoting)
        self.lines = tuple(lines) if not isinstance(lines, str | Quoting) else (lines,)
        self.separator = separator
        # What a field shows instead of nothing but spaces, which Discord refuses.
        self.blank = blank
        self.text = self.fit(limit)

    @property
    def floor(self) -> int:
        """The shortest this part gets: every line dropped."""
        return length(self._shown(0, 0))

    def fit(self, limit: int) -> str:
        """Return the lines in at most `limit` units (or, below `floor`, the floor).

        Quoted text is shortened first, then lines are dropped from the end, and the lines
        kept get the most room that still fits.
        """
        text = self._fit(limit)
        if text.strip() or self.blank is None:
            return text
        return self.blank if length(self.blank) <= limit else texts.CUT

    def _fit(self, limit: int) -> str:
        widest = max((line.room for line in self.lines if isinstance(line, Quoting)), default=0)
        # One text alone (a prompt, a reason) is cut as far as needed; a list keeps a
        # readable start of each and drops lines instead.
        narrowest = min(MIN_QUOTE_IN_LIST, widest) if self.listed else 0
        for kept in range(len(self.lines), 0, -1):
            if length(self._shown(kept, narrowest)) > limit:
                continue
            low, high = narrowest, widest + 1  # the widest room that fits, found by halving
            while high - low > 1:
                middle = (low + high) // 2
                if length(self._shown(kept, middle)) <= limit:
                    low = middle
                else:
                    high = middle
            return self._shown(kept, low)
        return self._shown(0, 0)

    def _shown(self, kept: int, room: int) -> str:
        """The first `kept` lines, quoting in `room`, and a count of the others."""
        if not self.listed:
            return texts.CUT if kept == 0 else _render(self.lines[0], room)
        shown = [_render(line, room) for line in self.lines[:kept]]
        if kept < len(self.lines):
            shown.append(texts.and_more(count=len(self.lines) - kept))
        return self.separator.join(shown)


class FittedEmbed:
    """An embed being assembled; `build()` returns it within every limit Discord sets."""

    def __init__(
        self,
        *,
        title: Line,
        colour: discord.Colour,
        description: Sequence[Line] | Line = (),
        empty: str | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        self._colour = colour
        self._timestamp = timestamp
        self._title = _Part(title, TITLE_LIMIT)
        self._description = (
            _Part(description or empty or texts.NONE, DESCRIPTION_LIMIT)
            if description or empty
            else None
        )
        self._fields: list[tuple[_Part, _Part, bool]] = []
        self._footer: _Part | None = None

    def field(
        self,
        name: str,
        lines: Sequence[Line] | Line,
        *,
        inline: bool = False,
        empty: str = texts.NONE,
        separator: str = "\n",
    ) -> FittedEmbed:
        """Add a field; with no lines it says `empty` (Discord refuses an empty value)."""
        if len(self._fields) == MAX_FIELDS:
            raise ValueError(f"an embed holds at most {MAX_FIELDS} fields")
        value = _Part(lines or empty, FIELD_VALUE_LIMIT, separator=separator, blank=empty)
        self._fields.append((_Part(name, FIELD_NAME_LIMIT, blank=texts.CUT), value, inline))
        return self

    def footer(self, text: str) -> FittedEmbed:
        """Set the footer."""
        self._footer = _Part(text, FOOTER_LIMIT)
        return self

    def build(self) -> discord.Embed:
        """Shrink the longest texts until the whole embed fits, and return it."""
        content = [part for _, part, _ in self._fields]
        if self._description is not None:
            content.append(self._description)
        labels = [self._title, *(name for name, _, _ in self._fields)]
        if self._footer is not None:
            labels.append(self._footer)
        parts = content + labels
        excess = sum(length(part.text) for part in parts) - TOTAL_LIMIT
        while excess > 0:
            # Lists and member text give way first, titles and names only if they must.
            shrinkable = [p for p in content if length(p.text) > p.floor] or [
                p for p in labels if length(p.text) > p.floor
            ]
            if not shrinkable:
                raise ValueError("an embed's fixed texts alone pass Discord's limits")
            longest = max(shrinkable, key=lambda part: length(part.text))
            before = length(longest.text)
            longest.text = longest.fit(before - excess)
            excess -= before - length(longest.text)
        embed = discord.Embed(
            title=self._title.text,
            description=None if self._description is None else self._description.text,
            colour=self._colour,
            timestamp=self._timestamp,
        )
        for name, value, inline in self._fields:
            embed.add_field(name=name.text, value=value.text, inline=inline)
        if self._footer is not None:
            embed.set_footer(text=self._footer.text)
        return embed
