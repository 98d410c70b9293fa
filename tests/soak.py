"""The soak test: many clips, random faults on both sides, and the bot killed mid-flight.

`run_soak()` starts the provider simulator and the fake Discord with their random faults
switched on, runs the real `python bot.py` as a child process on a fresh database, sends
`/video generate` from many members at a steady pace, kills the process with SIGKILL a few
times at random moments (and starts it again), waits until every task has ended, stops the
bot with SIGTERM and then checks, from the database and from what Discord received:

- every task was either delivered exactly once (state `done`, one clip post across the
  channel and DMs, the one the database recorded) or refunded exactly once (a refunding
  state and one refund ledger row): never both, never neither;
- every member's balance equals the sum of their ledger, and equals their starting credits
  less the cost of their delivered clips;
- no clip (and no refund notice) was posted twice;
- the bot printed no traceback or unhandled exception, except kinds listed as expected
  (which the report shows separately).

    python -m tests.soak --tasks 200 --members 20 --restarts 3

prints the figures and exits non-zero when a check fails. The suite runs a small one
(tests/e2e/test_soak.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import secrets
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provider.simulator import ProviderSimulator
from tests import payloads
from tests.e2e.live import BotProcess
from tests.fakediscord import EPHEMERAL, FakeDiscord
from tests.harness import ADMIN_PERMISSIONS, API_KEY, MEMBER_PERMISSIONS

STARTING_CREDITS = 1_000_000
MAX_CONCURRENT = 20  # the most /video-admin limits allows
TASK_FAILURE_RATE = 0.1  # the share of provider tasks that end FAILED
RENDER_SECONDS = (0.2, 1.0)
UNFINISHED = ("submitting", "rendering", "delivering")
REFUNDING = ("failed", "rejected", "uncertain", "timed_out")
PROMPTS = (
    "A lighthouse in a storm at night",
    "Drone shot over a neon night market",
    "A paper boat drifting down a rainy street",
    "Slow pan across a desert at sunrise",
    "A cat chasing fireflies in tall grass",
)

# A clip post names its task as "task `<id>`" (core/delivery.py); nothing else the bot
# posts publicly does.
_CLIP_POST = re.compile(r"task `([^`]+)`")
_REFUND_NOTICE = re.compile(r"your clip `([^`]+)` could not be made")
# discord.py's log format, plain ("[date] [LEVEL] name: message") or coloured, which it
# picks in a container even when the output is a pipe.
_LOG_RECORD = re.compile(r"^\[?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]? \[?([A-Z]+)\s*\]? [\w.]+:? ")
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_UNHANDLED = re.compile(r"Traceback \(most recent call last\)|never retrieved|Unhandled exception")
# Tracebacks the bot prints on purpose for a fault the soak injects: (logger message, cause).
EXPECTED_TRACEBACKS: tuple[tuple[str, str], ...] = (
    # The first answer came after Discord's 3 s (the bot was just restarted and busy): the
    # card is lost, the task goes on and the clip is still posted.
    ("Could not show the card of task", "10062"),
)


@dataclass
class SoakReport:
    """What one soak run did and found."""

    seed: int
    members: int
    interactions: int = 0
    tasks: int = 0
    refused: int = 0
    provider_faults: Counter[str] = field(default_factory=Counter)
    discord_faults: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    kill_moments: list[str] = field(default_factory=list)
    deliveries: Counter[str] = field(default_factory=Counter)
    refunds: Counter[str] = field(default_factory=Counter)
    refund_notices: int = 0
    duplicates: int = 0
    orphans: int = 0
    unexplained_balances: int = 0
    expected_tracebacks: list[str] = field(default_factory=list)
    unexpected_tracebacks: list[str] = field(default_factory=list)
    error_lines: int = 0
    exit_status: int | None = None
    wall_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.failures

    @property
    def lost_interactions(self) -> int:
        """Commands sent just before a kill that the dead process never turned into a task."""
        return self.interactions - self.tasks - self.refused

    def rows(self) -> list[tuple[str, str]]:
        """The figures, as (name, value) rows."""
        provider_total = sum(self.provider_faults.values())
        task_failures = self.provider_faults.get("task:failed", 0)
        return [
            ("seed", str(self.seed)),
            ("members", str(self.members)),
            ("/video generate sent", str(self.interactions)),
            ("tasks", str(self.tasks)),
            ("refused (member limit)", str(self.refused)),
            ("commands lost in a kill (no task)", str(self.lost_interactions)),
            (
                "provider faults injected",
                f"{provider_total} ({task_failures} tasks set to end FAILED; "
                f"{provider_total - task_failures} on API calls)",
            ),
            ("  by kind", _counts(self.provider_faults)),
            ("Discord faults injected", str(sum(self.discord_faults.values()))),
            ("  by kind", _counts(self.discord_faults)),
            ("restarts (kill -9)", str(self.restarts)),
            ("  tasks in flight at each kill", "; ".join(self.kill_moments) or "-"),
            ("deliveries", f"{sum(self.deliveries.values())} ({_counts(self.deliveries)})"),
            ("refunds", f"{sum(self.refunds.values())} ({_counts(self.refunds)})"),
            ("refund notices posted", str(self.refund_notices)),
            ("duplicates", str(self.duplicates)),
            ("provider orphans (refunded, provider may charge)", str(self.orphans)),
            ("balances not explained by the ledger", str(self.unexplained_balances)),
            ("unexpected tracebacks", str(len(self.unexpected_tracebacks))),
            ("expected tracebacks", str(len(self.expected_tracebacks))),
            ("ERROR lines in the log", str(self.error_lines)),
            ("exit status on SIGTERM", str(self.exit_status)),
            ("wall time", f"{self.wall_seconds:.1f} s"),
            ("result", "PASS" if self.ok else f"FAIL ({len(self.failures)} checks)"),
        ]

    def table(self) -> str:
        """The figures as a two-column table, then every failed check."""
        rows = self.rows()
        width = max(len(name) for name, _ in rows)
        lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
        lines += [f"FAILED: {failure}" for failure in self.failures]
        lines += [f"unexpected traceback:\n{block}" for block in self.unexpected_tracebacks]
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: the figures that must hold and the size of the run."""
        return (
            f"{self.tasks} tasks, {sum(self.provider_faults.values())} provider and "
            f"{sum(self.discord_faults.values())} Discord faults, {self.restarts} restarts, "
            f"{sum(self.deliveries.values())} deliveries, {sum(self.refunds.values())} "
            f"refunds, {self.duplicates} duplicates, {self.wall_seconds:.1f} s"
        )


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counter.items())) or "-"


async def run_soak(
    tasks: int = 200,
    members: int = 20,
    restarts: int = 3,
    fault_rate: float = 0.33,
    seed: int | None = None,
    *,
    discord_fault_rate: float = 0.15,
    interval: float = 0.1,
    drain_timeout: float = 120.0,
) -> SoakReport:
    """Run the soak and return its report (`report.failures` lists every failed check)."""
    seed = secrets.randbelow(2**31) if seed is None else seed
    rng = random.Random(seed)
    report = SoakReport(seed=seed, members=members)
    began = time.monotonic()
    simulator = ProviderSimulator(api_key=API_KEY, render_seconds=RENDER_SECONDS[1])
    await simulator.start()
    try:
        with tempfile.TemporaryDirectory(prefix="soak-") as folder:
            async with FakeDiscord(heartbeat_interval_ms=1000) as fake:
                soak = _Soak(fake, simulator, Path(folder) / "bot.db", rng, report)
                await soak.run(
                    tasks,
                    members,
                    restarts,
                    fault_rate,
                    discord_fault_rate,
                    interval,
                    drain_timeout,
                )
    finally:
        await simulator.stop()
    report.wall_seconds = time.monotonic() - began
    return report


class _Soak:
    """One soak run: the fakes, the bot process and what was sent."""

    def __init__(
        self,
        fake: FakeDiscord,
        simulator: ProviderSimulator,
        database: Path,
        rng: random.Random,
        report: SoakReport,
    ) -> None:
        self.fake = fake
        self.simulator = simulator
        self.database = database
        self.rng = rng
        self.report = report
        self.process = BotProcess(
            fake,
            simulator,
            database,
            env={
                "DEFAULT_CREDITS": str(STARTING_CREDITS),
                # The default 5 requests a second would make the provider the bottleneck.
                "PROVIDER_MAX_RPS": "1000",
                "RENDER_TIMEOUT_SECONDS": "300",
            },
        )
        self.up = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self.member_ids: list[int] = []

    async def run(
        self,
        tasks: int,
        members: int,
        restarts: int,
        fault_rate: float,
        discord_fault_rate: float,
        interval: float,
        drain_timeout: float,
    ) -> None:
        self.member_ids = [
            int(self.fake.add_user(username=f"member{n}")["id"]) for n in range(members)
        ]
        await self.process.start()
        try:
            self.up.set()
            await self._raise_member_limit()
            self._switch_faults_on(fault_rate, discord_fault_rate)
            chaos = asyncio.create_task(self._chaos(restarts, tasks * interval))
            try:
                await self._send(tasks, interval)
                await chaos
            finally:
                chaos.cancel()
            await self._top_up(tasks, interval)
            await self._drain(drain_timeout)
        finally:
            await self._stop()
        self._check()

    async def _raise_member_limit(self) -> None:
        """`/video-admin limits max_concurrent:20`, as a server admin would."""
        admin = int(self.fake.add_user(username="admin")["id"])
        payload = payloads.slash_command(
            self.fake,
            name="video-admin",
            subcommand="limits",
            options={"max_concurrent": MAX_CONCURRENT},
            user_id=admin,
            permissions=ADMIN_PERMISSIONS,
        )
        await self.fake.send_interaction(payload)
        deadline = time.monotonic() + 15
        while await asyncio.to_thread(self._max_concurrent) != MAX_CONCURRENT:
            if time.monotonic() > deadline:
                raise AssertionError("/video-admin limits never took effect")
            await asyncio.sleep(0.05)

    def _switch_faults_on(self, fault_rate: float, discord_fault_rate: float) -> None:
        self.simulator.fault_rng.seed(self.rng.getrandbits(32))
        self.simulator.random_faults = fault_rate
        self.simulator.random_task_failures = TASK_FAILURE_RATE
        self.simulator.random_render_seconds = RENDER_SECONDS
        self.fake.random_fault_rng.seed(self.rng.getrandbits(32))
        self.fake.random_faults = discord_fault_rate

    async def _send(self, count: int, interval: float) -> None:
        """Send `count` /video generate from random members, one every `interval` seconds."""
        for _ in range(count):
            await self.up.wait()
            member = self.rng.choice(self.member_ids)
            payload = payloads.slash_command(
                self.fake,
                name="video",
                subcommand="generate",
                options={
                    "prompt": f"{self.rng.choice(PROMPTS)} #{len(self.sent) + 1}",
                    "aspect_ratio": self.rng.choice(("16:9", "9:16", "1:1")),
                    "duration": self.rng.choice((5, 10)),
                    "sound": self.rng.random() < 0.5,
                },
                user_id=member,
                permissions=MEMBER_PERMISSIONS,
            )
            await self.fake.send_interaction(payload)
            self.sent.append(payload)
            self.report.interactions += 1
            await asyncio.sleep(interval)

    async def _chaos(self, restarts: int, span: float) -> None:
        """Kill the bot with SIGKILL at `restarts` random moments of the sending, and restart it."""
        start = time.monotonic()
        for moment in sorted(self.rng.uniform(0.1, 1.0) * span for _ in range(restarts)):
            await asyncio.sleep(max(0.0, start + moment - time.monotonic()))
            self.up.clear()
            in_flight = await asyncio.to_thread(self._states)
            await self.process.kill()
            self.report.restarts += 1
            shown = {s: n for s, n in sorted(in_flight.items()) if s in UNFINISHED}
            self.report.kill_moments.append(_counts(Counter(shown)))
            await asyncio.sleep(self.rng.uniform(0.1, 1.0))
            await self.process.start()
            self.up.set()

    async def _top_up(self, tasks: int, interval: float) -> None:
        """Replace the commands a kill swallowed, so the run has `tasks` tasks."""
        for _ in range(5):
            await asyncio.sleep(1.0)  # the last commands become tasks (or refusals)
            missing = tasks - await asyncio.to_thread(self._task_count)
            if missing <= 0:
                return
            await self._send(missing, interval)

    async def _drain(self, within: float) -> None:
        """Wait until no task is still submitting, rendering or delivering."""
        deadline = time.monotonic() + within
        while True:
            states = await asyncio.to_thread(self._states)
            left = {s: n for s, n in states.items() if s in UNFINISHED}
            if not left:
                return
            if time.monotonic() > deadline:
                self.report.failures.append(f"tasks never finished within {within:g} s: {left}")
                return
            await asyncio.sleep(0.2)

    async def _stop(self) -> None:
        process = self.process.process
        if process is None or process.returncode is not None:
            return
        try:
            self.report.exit_status = await self.process.terminate()
        except TimeoutError:
            self.report.failures.append("the bot did not stop within 20 s of SIGTERM")
            await self.process.kill()

    # ------------------------------------------------------------------ reading the results

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.database, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def _max_concurrent(self) -> int | None:
        if not self.database.exists():
            return None
        with contextlib.closing(self._connect()) as conn:
            try:
                row = conn.execute("SELECT max_concurrent FROM guild_settings").fetchone()
            except sqlite3.OperationalError:
                return None  # not migrated yet
        return None if row is None else int(row[0])

    def _states(self) -> dict[str, int]:
        with contextlib.closing(self._connect()) as conn:
            rows = conn.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall()
        return {str(state): int(count) for state, count in rows}

    def _task_count(self) -> int:
        return sum(self._states().values())

    def _refused(self) -> int:
        """Commands answered with a private refusal (so they made no task)."""
        ids = {int(p["id"]) for p in self.sent}
        return sum(
            1
            for c in self.fake.callbacks
            if c.interaction_id in ids and c.type == 4 and int(c.data.get("flags") or 0) & EPHEMERAL
        )

    def _posts(self, pattern: re.Pattern[str]) -> dict[str, list[dict[str, Any]]]:
        """The bot's messages (in any channel or DM) matching `pattern`, by task id."""
        found: dict[str, list[dict[str, Any]]] = {}
        for message in self.fake.messages_by_id.values():
            if int(message["author"]["id"]) != self.fake.bot_user_id:
                continue
            if int(message.get("flags") or 0) & EPHEMERAL:
                continue  # private answers to commands, never a post
            match = pattern.search(str(message.get("content") or ""))
            if match is not None:
                found.setdefault(match.group(1), []).append(message)
        return found

    def _check(self) -> None:
        report = self.report
        failures = report.failures
        report.provider_faults = Counter(self.simulator.random_faults_injected)
        report.discord_faults = Counter(self.fake.random_faults_injected)
        report.refused = self._refused()
        if report.exit_status not in (0, None):
            failures.append(f"the bot exited {report.exit_status} on SIGTERM")
        if self.fake.errors:
            failures.append(f"the fake Discord itself failed: {self.fake.errors!r}")

        with contextlib.closing(self._connect()) as conn:
            tasks = conn.execute("SELECT * FROM tasks ORDER BY created_at").fetchall()
            ledger = conn.execute(
                "SELECT task_id, reason, COUNT(*) AS n FROM ledger "
                "WHERE task_id IS NOT NULL GROUP BY task_id, reason"
            ).fetchall()
            balances = conn.execute(
                "SELECT m.user_id, m.balance, "
                "(SELECT COALESCE(SUM(delta), 0) FROM ledger l "
                " WHERE l.guild_id = m.guild_id AND l.user_id = m.user_id) AS total, "
                "(SELECT COALESCE(SUM(cost), 0) FROM tasks t WHERE t.guild_id = m.guild_id "
                " AND t.user_id = m.user_id AND t.state = 'done') AS spent "
                "FROM members m"
            ).fetchall()
        report.tasks = len(tasks)
        rows_of: Counter[tuple[str, str]] = Counter(
            {(str(r["task_id"]), str(r["reason"])): int(r["n"]) for r in ledger}
        )
        clips = self._posts(_CLIP_POST)
        notices = self._posts(_REFUND_NOTICE)
        known = {str(t["id"]) for t in tasks}
        for task_id in sorted(set(clips) - known):
            failures.append(f"a clip was posted for task {task_id}, which the database lacks")
        report.refund_notices = sum(len(posts) for posts in notices.values())
        report.duplicates = sum(len(p) - 1 for p in clips.values() if len(p) > 1) + sum(
            len(p) - 1 for p in notices.values() if len(p) > 1
        )
        for task_id, posts in sorted(clips.items()):
            if len(posts) > 1:
                where = ", ".join(f"message {m['id']} in channel {m['channel_id']}" for m in posts)
                failures.append(f"task {task_id}: its clip was posted {len(posts)} times ({where})")
        for task_id, posts in sorted(notices.items()):
            if len(posts) > 1:
                failures.append(f"task {task_id}: its refund was announced {len(posts)} times")

        for task in tasks:
            task_id, state = str(task["id"]), str(task["state"])
            charges, refunds = rows_of[(task_id, "charge")], rows_of[(task_id, "refund")]
            posts = clips.get(task_id, [])
            if charges != 1:
                failures.append(f"task {task_id} ({state}) has {charges} charge rows")
            if state == "done":
                report.deliveries[str(task["delivered_via"])] += 1
                if refunds:
                    failures.append(f"task {task_id} was delivered and refunded ({refunds} rows)")
                if len(posts) == 0:
                    failures.append(
                        f"task {task_id} is done (via {task['delivered_via']}) "
                        "but no clip post exists"
                    )
                elif len(posts) == 1 and task["delivery_message_id"] != int(posts[0]["id"]):
                    failures.append(
                        f"task {task_id}: the database records message "
                        f"{task['delivery_message_id']}, the clip is message {posts[0]['id']}"
                    )
            elif state in REFUNDING:
                report.refunds[state] += 1
                if refunds != 1:
                    failures.append(f"task {task_id} ended {state} with {refunds} refund rows")
                if posts:
                    failures.append(f"task {task_id} was refunded ({state}) and its clip posted")
            else:
                failures.append(f"task {task_id} never finished: {state}")

        for row in balances:
            user, balance = int(row["user_id"]), int(row["balance"])
            if balance != int(row["total"]):
                report.unexplained_balances += 1
                failures.append(f"member {user}: balance {balance}, ledger sum {row['total']}")
            if balance != STARTING_CREDITS - int(row["spent"]):
                failures.append(
                    f"member {user}: balance {balance}, but {STARTING_CREDITS} less the "
                    f"{row['spent']} their delivered clips cost is "
                    f"{STARTING_CREDITS - int(row['spent'])}"
                )

        provider_ids = {str(t["provider_task_id"]) for t in tasks if t["provider_task_id"]}
        report.orphans = len(set(self.simulator.tasks) - provider_ids)
        self._check_output()

    def _check_output(self) -> None:
        """Sort every traceback in the bot's output into expected and unexpected."""
        report = self.report
        header = ""
        block: list[str] = []
        blocks: list[tuple[str, list[str]]] = []
        for line in (_COLOUR.sub("", raw) for raw in self.process.output):
            record = _LOG_RECORD.match(line)
            if record is not None:
                if block:
                    blocks.append((header, block))
                header, block = line, []
                if record.group(1) in ("ERROR", "CRITICAL"):
                    report.error_lines += 1
            elif block or _UNHANDLED.search(line):
                block.append(line)
        if block:
            blocks.append((header, block))
        for header, lines in blocks:
            text = "\n".join([header, *lines])
            expected = any(
                message in header and cause in text for message, cause in EXPECTED_TRACEBACKS
            )
            (report.expected_tracebacks if expected else report.unexpected_tracebacks).append(text)
        if report.unexpected_tracebacks:
            report.failures.append(
                f"the bot printed {len(report.unexpected_tracebacks)} unexpected tracebacks"
            )


def main(argv: list[str] | None = None) -> int:
    """Run the soak from the command line; exit 1 when a check fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--fault-rate", type=float, default=0.33, help="provider faults")
    parser.add_argument("--discord-fault-rate", type=float, default=0.15)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between commands")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    report = asyncio.run(
        run_soak(
            args.tasks,
            args.members,
            args.restarts,
            args.fault_rate,
            args.seed,
            discord_fault_rate=args.discord_fault_rate,
            interval=args.interval,
        )
    )
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
