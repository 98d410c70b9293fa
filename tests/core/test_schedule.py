"""The polling schedule: how long a finished clip waits for the poll that finds it, at what cost.

The rules are pure, so besides their edges these tests run them against a stream of renders the
way the poller does (learning from each finished one) and measure what members would notice:
how late a clip is found, and how many status calls it took.
"""

from __future__ import annotations

import heapq
import random
import statistics
from collections import deque

import pytest

from core.schedule import (
    LATENESS_SHARE,
    LONGEST_GAP_SECONDS,
    OVERDUE_GAPS,
    Expectation,
    PollSchedule,
    Preset,
    Render,
    expect,
    learned,
)

SILENT_5: Preset = (5, False)
SOUND_5: Preset = (5, True)
SILENT_10: Preset = (10, False)
SOUND_10: Preset = (10, True)
# The spread the benchmark draws render times from (seconds).
SPREADS = {SILENT_5: (30, 75), SOUND_5: (50, 100), SILENT_10: (80, 140), SOUND_10: (120, 180)}
SCHEDULE = PollSchedule(shortest_gap=10.0)


def test_without_history_the_first_poll_comes_after_the_shortest_gap() -> None:
    assert SCHEDULE.first(None) == 10.0
    assert expect({}, SILENT_5) is None


def test_the_first_poll_waits_for_the_earliest_expected_end_but_never_less_than_the_gap() -> None:
    assert SCHEDULE.first(Expectation(earliest=42.0, latest=80.0, typical=60.0)) == 42.0
    assert SCHEDULE.first(Expectation(earliest=3.0, latest=5.0, typical=4.0)) == 10.0


@pytest.mark.parametrize("elapsed", [0.0, 10.0, 50.0, 111.0, 120.0, 155.0, 179.0, 300.0])
def test_gaps_stay_between_the_shortest_gap_and_the_lateness_bound(elapsed: float) -> None:
    expected = Expectation(earliest=0.0, latest=180.0, typical=150.0)
    gap = SCHEDULE.next(elapsed, expected)
    assert gap >= 10.0, "two polls of one task are never closer than POLL_INTERVAL_SECONDS"
    assert gap <= max(10.0, min(LATENESS_SHARE * elapsed, LONGEST_GAP_SECONDS)) + 1e-9


def test_a_long_render_is_polled_at_a_share_of_its_time_not_every_shortest_gap() -> None:
    expected = Expectation(earliest=0.0, latest=400.0, typical=300.0)
    assert SCHEDULE.next(130.0, expected) == pytest.approx(LATENESS_SHARE * 130.0)
    assert SCHEDULE.next(250.0, expected) == LONGEST_GAP_SECONDS


def test_a_task_polled_before_history_existed_waits_for_the_earliest_end_once_it_does() -> None:
    expected = Expectation(earliest=95.0, latest=140.0, typical=110.0)
    assert SCHEDULE.next(20.0, expected) == 75.0
    assert SCHEDULE.next(90.0, expected) == 10.0, "a wait shorter than the gap is a gap"


def test_an_overdue_render_is_polled_less_often_up_to_a_limit() -> None:
    expected = Expectation(earliest=30.0, latest=60.0, typical=45.0)
    assert SCHEDULE.next(119.0, expected) == pytest.approx(LATENESS_SHARE * 119.0)
    assert SCHEDULE.next(150.0, expected) == 30.0
    assert SCHEDULE.next(3000.0, expected) == OVERDUE_GAPS * 10.0
    # Without any history the mark is a fixed number of gaps.
    assert SCHEDULE.next(500.0, None) == LONGEST_GAP_SECONDS
    assert SCHEDULE.next(700.0, None) == OVERDUE_GAPS * 10.0


def test_a_shortest_gap_above_the_lateness_bound_still_wins() -> None:
    slow = PollSchedule(shortest_gap=30.0)
    assert slow.next(200.0, Expectation(earliest=0.0, latest=300.0, typical=200.0)) == 30.0


def test_expectation_from_a_presets_renders() -> None:
    renders = [Render(running, running + 10.0) for running in (60.0, 40.0, 70.0, 50.0, 65.0)]
    expected = expect({SILENT_5: renders}, SILENT_5)
    assert expected is not None
    # The shortest, less the spread (40 -> 80) over n - 1.
    assert expected.earliest == pytest.approx(40.0 - 40.0 / 4)
    assert expected.latest == 80.0
    assert expected.typical == 65.0


def test_the_earliest_end_is_guessed_low_from_few_renders_and_firms_up_with_more() -> None:
    one = expect({SILENT_5: [Render(60.0, 70.0)]}, SILENT_5)
    assert one is not None and one.earliest < 40.0, "one render says little about the fastest"
    many = [Render(float(s), s + 10.0) for s in range(30, 70, 2)]
    firm = expect({SILENT_5: many}, SILENT_5)
    assert firm is not None and 25.0 <= firm.earliest < 30.0


def test_a_preset_without_renders_is_not_expected_before_a_smaller_one() -> None:
    history = {SILENT_5: [Render(float(s), s + 10.0) for s in range(40, 60, 2)]}
    floor = expect(history, SILENT_5)
    bigger = expect(history, SOUND_10)
    assert floor is not None and bigger is not None
    assert bigger.earliest == floor.earliest
    assert bigger.latest is None and bigger.typical is None, "its own times are unknown"
    # A longer preset's renders say nothing about a shorter one.
    assert expect({SOUND_10: history[SILENT_5]}, SILENT_5) is None
    assert expect({SOUND_5: history[SILENT_5]}, SILENT_10) is None


def test_a_render_found_done_at_its_first_poll_is_taken_to_have_ended_one_gap_before() -> None:
    assert learned(None, 42.0, SCHEDULE) == Render(32.0, 42.0)
    assert learned(None, 4.0, SCHEDULE) == Render(0.0, 4.0)
    assert learned(50.0, 60.0, SCHEDULE) == Render(50.0, 60.0)


def test_a_render_found_long_after_it_ended_teaches_nothing() -> None:
    """Found late (a restart, an outage): its end would stretch the spread for 20 renders."""
    assert learned(40.0, 3600.0, SCHEDULE) is None
    assert learned(40.0, 40.0 + 2 * LONGEST_GAP_SECONDS, SCHEDULE) is not None
    # Had it been learned, its end would have set the spread and the overdue mark.
    good = [Render(float(s), s + 10.0) for s in range(40, 59)]
    stretched = expect({SILENT_5: [*good, Render(40.0, 3600.0)]}, SILENT_5)
    assert stretched is not None and stretched.earliest == 0.0
    assert SCHEDULE.overdue_after(stretched) == 7200.0


def test_after_a_poll_without_answer_the_gap_doubles_the_silence_up_to_a_limit() -> None:
    expected = Expectation(earliest=30.0, latest=80.0, typical=55.0)
    gaps: list[float] = []
    elapsed, last_answer = 40.0, 40.0
    for _ in range(6):
        elapsed += gaps[-1] if gaps else 10.0
        gaps.append(SCHEDULE.after_error(elapsed, elapsed - last_answer, expected))
    assert gaps == [10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    # Never closer than an answered poll would be.
    assert SCHEDULE.after_error(150.0, 1.0, expected) == SCHEDULE.next(150.0, expected)


def run_stream(
    schedule: PollSchedule, seed: int, history: dict[Preset, deque[Render]], tasks: int = 50
) -> list[tuple[float, float, int]]:
    """Submit `tasks` renders over 4 minutes and poll them as the poller does.

    Returns each one's (lateness, render time, status calls); `history` learns as it goes.
    """
    rng = random.Random(seed)
    renders = []
    events: list[tuple[float, int]] = []
    for index in range(tasks):
        preset = rng.choice(list(SPREADS))
        submitted = rng.uniform(0, 240)
        renders.append((preset, submitted, rng.uniform(*SPREADS[preset])))
        expected = expect(history, preset)
        heapq.heappush(events, (submitted + schedule.first(expected), index))
    polls = [0] * tasks
    running: list[float | None] = [None] * tasks
    results = []
    while events:
        moment, index = heapq.heappop(events)
        preset, submitted, render = renders[index]
        elapsed = moment - submitted
        polls[index] += 1
        if elapsed < render:
            running[index] = elapsed
            heapq.heappush(
                events, (moment + schedule.next(elapsed, expect(history, preset)), index)
            )
            continue
        render_seen = learned(running[index], elapsed, schedule)
        if render_seen is not None:
            history.setdefault(preset, deque(maxlen=20)).append(render_seen)
        results.append((elapsed - render, render, polls[index]))
    return results


def test_clips_are_found_within_the_bound_with_few_status_calls() -> None:
    """Day one (an empty database) and the days after, over 40 seeded runs of 50 renders."""
    first_day: list[tuple[float, float, int]] = []
    later: list[tuple[float, float, int]] = []
    for seed in range(40):
        history: dict[Preset, deque[Render]] = {}
        first_day += run_stream(SCHEDULE, seed, history)
        later += run_stream(SCHEDULE, 1000 + seed, history)
    for results in (first_day, later):
        lateness = sorted(late for late, _, _ in results)
        # A clip waits at most one longest gap, bar a render faster than every one seen.
        within = sum(late <= LONGEST_GAP_SECONDS for late in lateness) / len(lateness)
        assert within >= 0.995, lateness[-10:]
        assert statistics.median(lateness) <= 6.0
    assert statistics.mean(calls for _, _, calls in later) <= 5.0
    # Before anything is known the bound costs calls, and learning pays them back.
    assert statistics.mean(calls for _, _, calls in first_day) > statistics.mean(
        calls for _, _, calls in later
    )
    # Renders of 120 s and more (where POLL_INTERVAL_SECONDS allows it) wait at most 10% of
    # their time, bar one faster than every one seen.
    shares = sorted(late / render for late, render, _ in later if render >= 120)
    assert shares[int(0.99 * len(shares))] <= 0.1


def test_polling_every_shortest_gap_would_cost_far_more_calls() -> None:
    """What the schedule saves against polling on a fixed 10 s habit with the same lateness."""
    history: dict[Preset, deque[Render]] = {}
    run_stream(SCHEDULE, 7, history)
    later = run_stream(SCHEDULE, 8, history)
    habit = statistics.mean(int(render // 10.0) + 1 for _, render, _ in later)
    assert statistics.mean(calls for _, _, calls in later) < habit / 2
