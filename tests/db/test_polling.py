"""What the poller reads and writes: render bounds it learns from, fair turns after a restart."""

from __future__ import annotations

from core.schedule import expect, learned
from core.timetable import Timetable
from db import Database
from db import tasks as task_store
from db.backends import open_database
from tests import postgres
from tests.harness import FOREVER, OWNER, claim, new_task

GUILD = 10
NEVER = 1e12


async def rendering(
    db: Database, user: int, next_poll_at: float, *, duration: int = 5, sound: bool = False
) -> str:
    preset = new_task(GUILD, user, duration=duration, sound=sound, cost=65)
    task, _ = await task_store.reserve(
        db, preset, owner=OWNER, lease_until=FOREVER, starting_credits=1000
    )
    assert await task_store.mark_rendering(
        db, task.id, f"sd15p_{user}", owner=OWNER, next_poll_at=next_poll_at
    )
    return task.id


async def test_a_poll_that_finds_the_task_running_is_counted_and_kept_as_its_lower_bound(
    db: Database,
) -> None:
    task_id = await rendering(db, 1, NEVER)
    await claim(db, task_id)
    await task_store.still_running(
        db, task_id, owner=OWNER, running_seconds=31.5, next_poll_at=NEVER + 1
    )
    await claim(db, task_id)
    await task_store.still_running(
        db, task_id, owner=OWNER, running_seconds=41.5, next_poll_at=NEVER + 2
    )
    task = await task_store.get(db, task_id)
    assert task is not None
    assert (task.poll_attempts, task.running_seconds, task.next_poll_at) == (2, 41.5, NEVER + 2)


async def test_recent_renders_are_each_presets_latest_with_their_bounds(db: Database) -> None:
    for user in range(25):
        task_id = await rendering(db, user, NEVER)
        await claim(db, task_id)
        await task_store.still_running(
            db, task_id, owner=OWNER, running_seconds=user, next_poll_at=NEVER
        )
        await claim(db, task_id)
        assert await task_store.mark_delivering(
            db,
            task_id,
            ("https://cdn/x.mp4",),
            owner=OWNER,
            ready_seconds=user + 10.0,
            next_poll_at=NEVER,
        )
    loud = await rendering(db, 99, NEVER, duration=10, sound=True)
    await claim(db, loud)
    assert await task_store.mark_delivering(
        db, loud, ("https://cdn/y.mp4",), owner=OWNER, ready_seconds=150.0, next_poll_at=NEVER
    )
    # Still rendering: nothing to learn yet.
    await rendering(db, 100, NEVER)

    found = await task_store.recent_renders(db, per_preset=20)
    silent = [
        (r.running_seconds, r.ready_seconds) for r in found if (r.duration, r.sound) == (5, False)
    ]
    assert len(silent) == 20, "only the latest 20 of a preset"
    assert {running for running, _ in silent} == {float(user) for user in range(5, 25)}
    assert all(ready == running + 10.0 for running, ready in silent if running is not None)
    [with_sound] = [r for r in found if (r.duration, r.sound) == (10, True)]
    assert (with_sound.running_seconds, with_sound.ready_seconds) == (None, 150.0)


async def test_overdue_tasks_get_turns_oldest_first_at_the_given_pace(db: Database) -> None:
    now = 1000.0
    late = {user: await rendering(db, user, now - 100 + user) for user in (3, 1, 2, 0)}
    not_yet = await rendering(db, 9, now + 50)

    assert await task_store.spread_overdue(db, now, per_second=4.0) == 4

    async def due_at(task_id: str) -> float | None:
        task = await task_store.get(db, task_id)
        assert task is not None
        return task.next_poll_at

    # The one overdue longest goes first; each next one a quarter second later.
    assert [await due_at(late[user]) for user in range(4)] == [1000.0, 1000.25, 1000.5, 1000.75]
    assert await due_at(not_yet) == now + 50
    due = await task_store.claim_due(db, owner=OWNER, now=now + 0.5, lease_until=FOREVER, limit=10)
    assert [task.id for task in due] == [late[0], late[1], late[2]]


async def test_renders_another_process_finishes_are_learned_here_at_the_next_reload(
    postgres_server: str,
) -> None:
    async with postgres.fresh_database() as url:
        mine, theirs = await open_database(url), await open_database(url)
        try:
            timetable = Timetable(mine, poll_interval_seconds=5.0)
            assert timetable.reload_seconds is not None, "PostgreSQL may have other writers"
            timetable.reload_seconds = 3600.0
            assert await timetable.expectation(5, False) is None
            # The other process polls a render of the same preset and finds it done.
            task_id = await rendering(theirs, 1, NEVER)
            await claim(theirs, task_id)
            await task_store.still_running(
                theirs, task_id, owner=OWNER, running_seconds=30.0, next_poll_at=NEVER
            )
            await claim(theirs, task_id)
            assert await task_store.mark_delivering(
                theirs,
                task_id,
                ("https://cdn/x.mp4",),
                owner=OWNER,
                ready_seconds=40.0,
                next_poll_at=NEVER,
            )
            assert await timetable.expectation(5, False) is None, "not reloaded yet"

            timetable.reload_seconds = 0.0
            render = learned(30.0, 40.0, timetable.schedule)
            assert render is not None
            assert await timetable.expectation(5, False) == expect(
                {(5, False): [render]}, (5, False)
            )
        finally:
            await mine.close()
            await theirs.close()
