"""What the poll schedule costs and achieves, simulated: `python -m bench.schedule_sim`.

No bot, no clock: the schedule's pure rules (`core/schedule.py`) are run against seeded streams
of renders the way the poller runs them (`run_stream` in tests/core/test_schedule.py, which
learns from each finished render). Each run is a day on an empty database followed by a day
with what it learned; the table is of the second days. It shows what shorter gaps than
POLL_INTERVAL_SECONDS' 10 s would buy, and at what cost, for the decision bench/RESULTS.md asks.
"""

from __future__ import annotations

import statistics
from collections import deque

from core.schedule import Expectation, PollSchedule, Preset, Render
from tests.core.test_schedule import run_stream

RUNS = 150


class FirstPollOneGapLater(PollSchedule):
    """Polls first one gap after the earliest expected end rather than at it."""

    def first(self, expected: Expectation | None) -> float:
        if expected is None:
            return self.shortest_gap
        gap = min(max(self.lateness_share * expected.earliest, self.shortest_gap), self.longest_gap)
        return max(self.shortest_gap, expected.earliest + gap)


def main() -> None:
    print(
        f"{'shortest gap':>12}  {'first poll':<22}{'polls/task':>10}  {'late > 14.5 s':>13}"
        f"  {'share > 10%':>11}  {'median share':>12}"
    )
    for gap in (10.0, 2.0, 1.0):
        for label, kind in (
            ("at the earliest end", PollSchedule),
            ("one gap after it", FirstPollOneGapLater),
        ):
            schedule = kind(shortest_gap=gap)
            results = []
            for seed in range(RUNS):
                history: dict[Preset, deque[Render]] = {}
                run_stream(schedule, seed, history)
                results += run_stream(schedule, 1000 + seed, history)
            polls = statistics.fmean(calls for _, _, calls in results)
            late = sum(lateness > 14.5 for lateness, _, _ in results) / len(results)
            shares = [lateness / render for lateness, render, _ in results]
            over = sum(share > 0.1 for share in shares) / len(shares)
            print(
                f"{gap:>10g} s  {label:<22}{polls:>10.1f}  {late:>13.2%}  {over:>11.1%}"
                f"  {statistics.median(shares):>12.0%}"
            )


if __name__ == "__main__":
    main()
