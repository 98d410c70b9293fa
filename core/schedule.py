"""When to ask the provider about a rendering task: by expectation, not by habit.

Every status call costs the provider a query upstream, and every second between a clip being
ready and our next poll is a second the member waits. The physical limit is one poll, at the
moment the clip is ready. Two pure pieces get close to it:

- `expect` learns, from finished renders kept in the database, when a preset's renders end:
  the earliest one is likely to, and the latest one did.
- `PollSchedule` waits until that earliest moment, then polls at a pace that keeps a clip's
  wait under a share of its render time (and under a fixed ceiling), never closer together
  than `POLL_INTERVAL_SECONDS`. Past every render seen so far it backs off.

Both are pure, so the poller, the tests and the benchmark's tuning all use the same rules.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Preset = tuple[int, bool]
"""A render's shape as far as its duration goes: (clip seconds, with sound)."""

# A clip may wait at most this share of its render time for the poll that finds it; the rest
# of the 10% the issue allows is left for downloading and posting it.
LATENESS_SHARE = 0.09
# ... and never more than this long, whatever the render time (the 15 s, less the
# download and post).
LONGEST_GAP_SECONDS = 14.0
# How widely one preset's renders spread, as a share of the shortest, until there are enough
# renders to see it: the simulator's slowest-spreading preset takes 30-75 s.
PRIOR_SPREAD = 1.5
# A preset's own spread is trusted over the prior from this many renders on.
OWN_SPREAD_FROM = 5
# A task is overdue (stuck, or the provider slowed down) past this multiple of the longest
# render seen; with nothing seen, past this many shortest gaps. Overdue tasks are polled less.
OVERDUE_FACTOR = 2.0
OVERDUE_WITHOUT_HISTORY = 60
OVERDUE_SHARE = 0.2
OVERDUE_GAPS = 6


@dataclass(frozen=True)
class Render:
    """When one finished render ended, as the polls bound it (seconds after submission)."""

    running: float
    """The last poll that saw it still running (0 when the first poll found it done)."""
    done: float
    """The poll that saw it done."""


@dataclass(frozen=True)
class Expectation:
    """What past renders say about a new one of a preset (seconds after submission)."""

    earliest: float
    """Renders of this preset are not expected to end before this."""
    latest: float | None
    """The longest a render of this preset took; None when none has finished yet."""
    typical: float | None
    """The median render, for the task card; None when none has finished yet."""


def expect(history: Mapping[Preset, Sequence[Render]], preset: Preset) -> Expectation | None:
    """Return when a render of `preset` is expected to end, or None when nothing is known.

    The earliest end is the shortest render seen, lowered by how far the true shortest may
    lie below it (see `_own`): the least of n draws lies above the bottom of their spread by
    about the spread over n + 1. Presets that are no longer and no louder than this one put
    a floor under it: a 10 s clip with sound is not expected before a 5 s silent one.
    """
    prior = _prior_spread(history)
    floors = [
        bound.earliest
        for other, renders in history.items()
        if other != preset and renders and _no_bigger(other, preset)
        for bound in [_own(renders, prior)]
    ]
    floor = max(floors, default=None)
    renders = history.get(preset, ())
    if not renders:
        return None if floor is None else Expectation(floor, None, None)
    own = _own(renders, prior)
    earliest = own.earliest if floor is None else max(own.earliest, floor)
    return Expectation(earliest, own.latest, own.typical)


def _no_bigger(other: Preset, preset: Preset) -> bool:
    return other[0] <= preset[0] and other[1] <= preset[1]


def _prior_spread(history: Mapping[Preset, Sequence[Render]]) -> float:
    """How widely one preset's renders spread, as a share of its shortest, before it has
    enough renders to tell: the widest spread of any preset that has, else PRIOR_SPREAD."""
    seen = [
        (max(r.done for r in renders) - low) / low
        for renders in history.values()
        if len(renders) >= OWN_SPREAD_FROM
        for low in [min(r.running for r in renders)]
        if low > 0
    ]
    return max(seen, default=PRIOR_SPREAD)


def _own(renders: Sequence[Render], prior_spread: float) -> Expectation:
    """Expect a preset from its own renders.

    With enough of them the bottom of the spread is estimated as for a uniform one: the
    shortest, less the range over n - 1. With few, the range is the prior's.
    """
    count = len(renders)
    shortest = min(r.running for r in renders)
    longest = max(r.done for r in renders)
    if count >= OWN_SPREAD_FROM:
        margin = (longest - shortest) / (count - 1)
    else:
        margin = shortest * prior_spread / (count + 1)
    typical = statistics.median((r.running + r.done) / 2 for r in renders)
    return Expectation(max(0.0, shortest - margin), longest, typical)


def learned(running: float | None, done: float, schedule: PollSchedule) -> Render | None:
    """Return what one finished render teaches, or None when its polls bound it too loosely.

    A render found done by its first poll ended at some time before it: it is taken to have
    ended within one shortest gap, so a first poll that came too late moves the next ones
    earlier. A render whose last two polls lie more than two of the widest gaps apart (found
    late, after a restart, an outage or a queue) says little about when it ended, and its
    late end would stretch the preset's spread for the next renders: it is left out.
    """
    if running is None:
        running = max(0.0, done - schedule.shortest_gap)
    if done - running > 2 * schedule.widest_gap:
        return None
    return Render(running, done)


@dataclass(frozen=True)
class PollSchedule:
    """The gaps between polls of one task."""

    shortest_gap: float
    """POLL_INTERVAL_SECONDS: two polls of one task are never closer than this."""
    longest_gap: float = LONGEST_GAP_SECONDS
    lateness_share: float = LATENESS_SHARE

    @property
    def widest_gap(self) -> float:
        """The longest gap between two polls of a render that is not overdue."""
        return max(self.shortest_gap, self.longest_gap)

    def first(self, expected: Expectation | None) -> float:
        """Return how long after submission to poll a task first."""
        if expected is None:
            return self.shortest_gap
        return max(self.shortest_gap, expected.earliest)

    def next(self, elapsed: float, expected: Expectation | None) -> float:
        """Return the gap before the next poll of a task still rendering `elapsed` seconds in.

        Before the earliest expected end, wait for it. After it, poll so that a clip that
        finished just after this poll waits at most `lateness_share` of its render time and
        at most `longest_gap`. Past the overdue mark, back off towards `OVERDUE_GAPS` gaps.
        """
        if expected is not None and elapsed < expected.earliest:
            return max(self.shortest_gap, expected.earliest - elapsed)
        gap = min(max(self.lateness_share * elapsed, self.shortest_gap), self.longest_gap)
        if elapsed <= self.overdue_after(expected):
            return max(gap, self.shortest_gap)
        backoff = min(OVERDUE_SHARE * elapsed, OVERDUE_GAPS * self.shortest_gap)
        return max(gap, backoff, self.shortest_gap)

    def after_error(self, elapsed: float, silent_for: float, expected: Expectation | None) -> float:
        """Return the gap before asking again after a poll that got no answer.

        `silent_for` is how long the provider has given no answer about the task (since its
        last answer, or its submission). Waiting that long again doubles the silence with
        each failed poll, from the usual gap up to `OVERDUE_GAPS` shortest gaps, so an outage
        is not polled at full pace while the client's own retries have already failed.
        """
        usual = self.next(elapsed, expected)
        return max(usual, min(silent_for, OVERDUE_GAPS * self.shortest_gap))

    def overdue_after(self, expected: Expectation | None) -> float:
        """Return how long a render may run before it is polled less often."""
        if expected is not None and expected.latest is not None:
            return OVERDUE_FACTOR * expected.latest
        return OVERDUE_WITHOUT_HISTORY * self.shortest_gap
