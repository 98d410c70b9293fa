"""Run the benchmark of issue 7, print one table, and record it in bench/RESULTS.md.

    .venv/bin/python -m bench.run                   # full run (about two minutes), "After" section
    .venv/bin/python -m bench.run --section before  # full run, recorded as "Before"
    .venv/bin/python -m bench.run --quick           # smaller sizes, a smoke run; writes nothing

Everything runs on 127.0.0.1: the fake Discord (REST and gateway) and the provider simulator
from the test suite, the bot as bot.py builds it. The bot's log goes to a file (its path is
printed), never to the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import scenarios
from bench.scenarios import LogTally, Row

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTIONS = ("before", "after")


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is."""

    ack_levels: tuple[int, ...]
    one_at_a_time: int
    delivery_tasks: int
    scale: float
    arrival_window: float  # unscaled seconds over which the delivery tasks arrive
    in_flight: int
    ticks: int
    limited_window: float  # seconds the restart at PROVIDER_MAX_RPS is watched
    lifted_window: float  # at most this long for the restart with the ceiling lifted
    throttled_window: float  # seconds each run against the slower provider polls


FULL = Sizes((1, 50, 200), 20, 50, 20.0, 240.0, 10_000, 200, 10.0, 45.0, 15.0)
QUICK = Sizes((1, 10, 20), 5, 10, 20.0, 120.0, 1_000, 50, 5.0, 15.0, 8.0)


def machine() -> dict[str, str]:
    """The machine and the code the figures come from."""
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "uname": _run("uname", "-a") or " ".join(platform.uname()).strip(),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": sys.version.split()[0],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git("rev-parse", "--short", "HEAD") or "unknown",
        "changes": _changed_files(),
    }


def _git(*args: str) -> str:
    return _run("git", *args)


def _run(*command: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - fixed arguments
            list(command),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def _changed_files() -> str:
    """Files that differ from the commit (bench/ itself aside): the figures are of those too."""
    lines = _git("status", "--porcelain", "--", ".", ":(exclude)bench").splitlines()
    # Each line is a status code and a path; the output was stripped, so the first line may
    # have lost its leading space.
    return ", ".join(line.split(maxsplit=1)[1] for line in lines if line.strip()) or "none"


def table(rows: Sequence[Row]) -> str:
    """The rows as an aligned plain-text table."""
    header = ("scenario", "metric", "result", "target", "")
    cells = [header, *((r.scenario, r.metric, r.value, r.target, r.verdict) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = []
    for n, cell in enumerate(cells):
        lines.append("  ".join(v.ljust(w) for v, w in zip(cell, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: Sequence[Row]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").strip() or " "

    lines = ["| scenario | metric | result | target | |", "|---|---|---|---|---|"]
    for r in rows:
        verdict = {"pass": "pass", "FAIL": "**FAIL**", "info": ""}[r.verdict]
        metric = r.metric.strip()
        if r.metric.startswith("  "):
            metric = "↳ " + metric
        lines.append(
            f"| {cell(r.scenario)} | {cell(metric)} | {cell(r.value)} | {cell(r.target)} "
            f"| {verdict} |"
        )
    return "\n".join(lines)


HEADER = """# Benchmark: issue 7 (fast and frugal at scale)

Reproduce from the repository root:

    .venv/bin/python -m bench.run                   # full run, recorded under "After"
    .venv/bin/python -m bench.run --section before  # full run, recorded under "Before"
    .venv/bin/python -m bench.run --quick           # smaller sizes, prints only
    .venv/bin/python -m bench.schedule_sim          # the poll schedule alone, simulated (7 s)

Each run replaces only its own section below. It is not a test: it asserts nothing.

## How it measures

Everything runs on 127.0.0.1 in one process, except the restarts: the fake Discord
(`tests/fakediscord.py`, REST and gateway), the provider simulator (`provider/simulator.py`) and
the bot as `bot.py` builds it (`open_bot`), started over the fake gateway as
`tests/e2e/live.py` does. Unlike the tests, the provider client keeps its production defaults
(rate limit from `PROVIDER_MAX_RPS`, retries, backoff); only its request timeout is shorter (5 s).

- **acknowledgement**: `/video generate` from distinct members, sent over the gateway; the time
  from sending the INTERACTION_CREATE to the fake receiving the interaction callback. "1 at a
  time" is 20 commands one after another (each one's submission finished before the next);
  50 and 200 are sent at once. Production settings (`PROVIDER_MAX_RPS=5`, poll every 10 s), a
  fresh bot and database per level; the submissions still queued behind the provider's rate
  limit when the last acknowledgement arrives are cancelled (they are not acknowledgement).
- **delivery**: two batches of 50 tasks from distinct members on one bot and database: the
  first on an empty database (the day the bot is installed: nothing learned yet), the second
  after it (every day after: the first batch's renders learned). In each, tasks arrive at
  random over 4 minutes with presets drawn at random; the simulator draws each render time from
  its preset: 5 s 30-75 s, 5 s with sound 50-100 s, 10 s 80-140 s, 10 s with sound 120-180 s.
  The world runs 20x faster: the simulator's clock, `POLL_INTERVAL_SECONDS` (10 s → 0.5 s),
  `PROVIDER_MAX_RPS` (5 → 100, and the simulator answers 429 above it), `RENDER_TIMEOUT_SECONDS`,
  the longest gap between polls (14 s), the client's backoff and the cards' 15 s progress
  period are all scaled; all figures are converted back to unscaled seconds. (At 60x, 0.1 s of
  event-loop delay in this one process read as 6 s of lateness; at 20x it reads as 2 s.)
  Delivery delay = polling lateness (SUCCESS moment, i.e. creation + render time on the
  simulator's clock → the status request that saw it, scaled back) + download and post (that
  request → the clip message reaching the fake Discord, real time, not scaled: it would take at
  least as long in production). Requests per second: every `/api/` request the simulator
  received, in sliding 1 s (unscaled) windows.
- **slower provider**: the provider client alone (production settings, `PROVIDER_MAX_RPS=5`)
  against a simulator that answers 429 (Retry-After: 1) above 3 requests per second; 8 status
  polls always waiting, as the poller's 8 slots are when many tasks are due, for 15 s of real
  time. Once with the rate never lowered (the client before this issue only paused for
  Retry-After), once as it is now (a 429 halves the rate; accepted requests win it back).
- **10,000 in flight**: 10,000 `rendering` tasks written into a fresh database (5,000 members,
  two tasks each, with their welcome and charge ledger rows, shaped as `reserve` + `set_card`
  + `mark_rendering` leave them), the simulator answering IN_PROGRESS for all.
  *Tick*: a logged-in bot (`open_bot` + `login`, as `tests/harness.py` does), its loop stopped,
  `poller.tick()` called 200 times with every task due in a day; CPU is `time.process_time()`
  (all threads, so the SQLite thread too). *Memory* and *restart*: `python bot.py` as a child
  process (`tests/e2e/launch.py` via `BotProcess`) on that database with every task due now;
  memory is its VmRSS with the tasks in flight and its VmHWM (peak). "Picked up" counts tasks
  the bot has polled or rescheduled (the database shows a changed `next_poll_at` or
  `poll_attempts`), timed from the process start; "polled" counts distinct tasks in the
  simulator's status requests. At `PROVIDER_MAX_RPS=5` polling 10,000 tasks cannot take less
  than 2,000 s, so the 3 s target is read as "picked up and scheduled"; the run is watched for
  10 s and the polling rate projected. A second restart with the ceiling lifted shows how fast
  the bot itself gets through them.
- **peak requests per second** counts requests in any 1 s span (sliding windows, at the
  simulator's arrival times). A limiter that spaces requests 1/`PROVIDER_MAX_RPS` apart shows
  one request more than the ceiling as soon as one gap comes out a little short (timer and
  loop jitter), so "≤ 5" is a strict reading of "never more than the ceiling per second".
- **429s**: in the delivery and slower-provider scenarios the simulator answers 429 (with
  Retry-After) to any request beyond its requests-per-second ceiling (`PROVIDER_MAX_RPS`, resp.
  3/s); the figure is its count of those, and the bot's own count of 429s received. The
  acknowledgement and 10,000-in-flight scenarios run without a ceiling at the simulator.

## Why two targets stay unmet

- **Delivery delay ≤ 10% of the render time, with ≤ 5 status requests per task on average.**
  To find every clip within 10% of its render time, a poll at t must be followed by the next
  by 1.1 t at the latest. If each preset's fastest render a were known exactly, and
  downloading and posting took no time, polls at 1.1 a, 1.21 a, ... would find a render of T
  with ⌈ln(T/a) / ln 1.1⌉ polls: 6.0, 4.6, 3.7 and 2.8 for the four presets here, 4.3 on
  average. Learning a from the last 20 renders instead costs more. Simulated
  (`python -m bench.schedule_sim`: the schedule's rules over 150 seeded days of 50 renders,
  after a day of learning), with gaps allowed down to 1 s this schedule finds all but 0.8% of
  clips within 10% with 6.7 polls per task; polling first one gap after the earliest expected
  end instead of at it takes 5.3 polls, with 2.3% of clips over 10% and 0.6% waiting more than
  14.5 s (0.17% now). At the 10 s floor it takes 4.6 polls, and 19% of clips wait more than
  10%. The two targets can both hold only with exact knowledge; in practice one gives.
- **... and `POLL_INTERVAL_SECONDS` (PRODUCT: "the shortest gap between two status polls of
  one task", 10 s).** With that floor a render ending just after a poll waits up to 10 s, more
  than 10% of any render under 100 s (58% of this spread). Only renders of 100 s and more can
  always be found within 10%; the table shows them on their own line.
- **Day one.** With nothing learned, the only way to keep the 15 s ceiling is to poll every
  10-14 s from the start; the first tasks on an empty database pay that in status requests
  until renders of their preset (or a smaller one) have finished. The schedule learns from
  then on, and the database keeps what it learned across restarts.
"""


def section(name: str, rows: Sequence[Row], facts: dict[str, str], extra: str) -> str:
    title = "Before" if name == "before" else "After"
    return "\n".join(
        [
            f"<!-- bench:{name} -->",
            f"## {title} (commit {facts['commit']})",
            "",
            f"- command: `{facts['command']}` ({facts['runtime']})",
            f"- date: {facts['date']}",
            f"- machine: `{facts['uname']}`",
            f"- CPU: {facts['cpu']}, {facts['cores']} cores; Python {facts['python']}",
            f"- files changed from the commit when run (bench/ aside): {facts['changes']}",
            "",
            markdown(rows),
            "",
            extra,
            f"<!-- /bench:{name} -->",
        ]
    )


def write_results(name: str, rows: Sequence[Row], facts: dict[str, str], extra: str) -> None:
    """Replace this run's section of RESULTS.md, keeping the other one."""
    kept: dict[str, str] = {}
    if RESULTS.exists():
        text = RESULTS.read_text(encoding="utf-8")
        for other in SECTIONS:
            found = re.search(rf"<!-- bench:{other} -->.*?<!-- /bench:{other} -->", text, re.S)
            if found:
                kept[other] = found.group(0)
    kept[name] = section(name, rows, facts, extra)
    for other in SECTIONS:
        kept.setdefault(
            other,
            f"<!-- bench:{other} -->\n## {other.title()}\n\n"
            f"_Not recorded yet: run `.venv/bin/python -m bench.run --section {other}`._\n"
            f"<!-- /bench:{other} -->",
        )
    body = "\n\n".join(kept[s] for s in SECTIONS)
    RESULTS.write_text(f"{HEADER}\n{body}\n", encoding="utf-8")


def quiet_logging() -> tuple[Path, LogTally]:
    """Send every log record to a file; count warnings and errors per scenario."""
    handle, name = tempfile.mkstemp(prefix="bench-", suffix=".log")
    os.close(handle)
    to_file = logging.FileHandler(name, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    tally = LogTally()
    root = logging.getLogger()
    root.handlers[:] = [to_file, tally]
    root.setLevel(logging.INFO)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    return Path(name), tally


async def run(sizes: Sizes, only: set[str], tally: LogTally) -> tuple[list[Row], list[str]]:
    plan: list[tuple[str, Callable[[], Awaitable[list[Row]]]]] = [
        ("ack", lambda: scenarios.acknowledgements(sizes.ack_levels, sizes.one_at_a_time)),
        (
            "delivery",
            lambda: scenarios.delivery(sizes.delivery_tasks, sizes.scale, sizes.arrival_window),
        ),
        ("throttled", lambda: scenarios.throttled(sizes.throttled_window)),
        (
            "scale",
            lambda: scenarios.ten_thousand(
                sizes.in_flight, sizes.ticks, sizes.limited_window, sizes.lifted_window
            ),
        ),
    ]
    rows: list[Row] = []
    notes: list[str] = []
    for name, scenario in plan:
        if name not in only:
            continue
        started = time.monotonic()
        print(f"running {name} …", file=sys.stderr, flush=True)
        try:
            async with asyncio.timeout(120):
                rows += await scenario()
        except Exception as error:  # a broken scenario must not hide the others' figures
            logging.getLogger("bench").exception("scenario %s failed", name)
            rows.append(Row(name, "scenario failed", f"{type(error).__name__}: {error}"[:160]))
        logged: Counter[str] = tally.reset()
        notes.append(
            f"{name}: {time.monotonic() - started:.0f} s; bot log (in process): "
            + (", ".join(f"{n} {level}" for level, n in sorted(logged.items())) or "no warnings")
        )
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes; writes nothing")
    parser.add_argument(
        "--section",
        choices=SECTIONS,
        default="after",
        help="the section of bench/RESULTS.md this run replaces (default: after)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--only",
        default="ack,delivery,throttled,scale",
        help="comma-separated scenarios to run: ack, delivery, throttled, scale (default: all)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    log_path, tally = quiet_logging()
    facts = machine()
    started = time.monotonic()
    rows, notes = asyncio.run(run(sizes, set(args.only.split(",")), tally))
    runtime = time.monotonic() - started
    command = "python -m bench.run" + (" --quick" if args.quick else "")
    if args.section != "after":
        command += f" --section {args.section}"
    if args.only != parser.get_default("only"):
        command += f" --only {args.only}"
    facts.update(command=command, runtime=f"{runtime:.0f} s in all")
    print(table(rows))
    print()
    for note in notes:
        print(note)
    print(f"{command}: {runtime:.0f} s; bot log: {log_path}")
    failed = [r for r in rows if r.ok is False]
    if failed:
        print(f"{len(failed)} figure(s) miss their target")
    if args.quick or args.no_write or args.only != parser.get_default("only"):
        print("(not written to bench/RESULTS.md)")
    else:
        extra = "Time per scenario:\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
        write_results(args.section, rows, facts, extra)
        print(f"written to {RESULTS.relative_to(ROOT)} ({args.section})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
