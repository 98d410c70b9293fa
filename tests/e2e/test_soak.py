"""A small soak: `python bot.py` killed mid-flight under random provider and Discord faults.

The full-size run is `python -m tests.soak --tasks 200 --members 20 --restarts 3`.
"""

from __future__ import annotations

from tests.e2e.live import FIGURES
from tests.soak import run_soak

TASKS, MEMBERS, RESTARTS = 40, 8, 2
SEED = 20261127  # the fault and kill sequence; timing still varies from run to run


async def test_every_task_is_delivered_or_refunded_exactly_once_through_kills() -> None:
    report = await run_soak(
        tasks=TASKS, members=MEMBERS, restarts=RESTARTS, seed=SEED, drain_timeout=60
    )
    print(report.table())
    FIGURES[f"soak ({TASKS} tasks, {MEMBERS} members, {RESTARTS} kills)"] = report.summary()

    assert report.failures == [], report.table()
    assert report.tasks >= TASKS  # a command lost in a kill is replaced by another
    assert report.restarts == RESTARTS
    assert sum(report.provider_faults.values()) > 0 and sum(report.discord_faults.values()) > 0
    assert sum(report.deliveries.values()) + sum(report.refunds.values()) == report.tasks
    assert report.deliveries["none"] == 0
    assert report.duplicates == 0
    assert report.unexplained_balances == 0
    assert report.unexpected_tracebacks == []
    # Every ERROR the bot logged is one of the tracebacks known to be expected.
    assert report.error_lines == len(report.expected_tracebacks), report.table()
    assert report.exit_status == 0
