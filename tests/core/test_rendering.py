"""The poller and the delivery: clips arrive once, failures refund once, restarts lose nothing."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import timedelta
from typing import Any, cast

import pytest

from cogs.rendering import Rendering
from core.bot import VideoBot
from core.schedule import expect, learned
from db import Database, credits, iso, now
from db import tasks as task_store
from db.states import TaskState
from db.tasks import Task
from provider.models import GenerationRequest
from provider.simulator import ProviderSimulator
from tests.fakediscord import FakeDiscord
from tests.harness import (
    FOREVER,
    OWNER,
    Harness,
    assert_only_requester_can_be_pinged,
    bot_settings,
    claim,
    new_task,
    running_bot,
)

PROMPT = "Drone shot over neon night market"


def rendering(bot: VideoBot) -> Rendering:
    """The extension that polls and delivers: it built the bot's poller and delivery."""
    cog = bot.get_cog("Rendering")
    assert cog is not None
    # load_extension runs the module anew: its class is not the one imported here.
    return cast(Rendering, cog)


async def generate(harness: Harness, prompt: str = PROMPT, **context: Any) -> str:
    await harness.run("generate", options={"prompt": prompt}, **context)
    return (await harness.tasks())[0].id


async def charge_without_submitting(db: Database, fake: FakeDiscord) -> Task:
    """Leave what a crash between the charge and the provider's answer leaves: a paid task."""
    request = new_task(fake.guild_id, fake.user_id, channel_id=fake.channel_id)
    # Its lease ran out long ago: the process that charged it is gone.
    task, _ = await task_store.reserve(
        db, request, owner=OWNER, lease_until=0.0, starting_credits=260
    )
    return task


def clip_posts(fake: FakeDiscord, channel_id: int) -> list[dict[str, object]]:
    return [
        m for m in fake.channel_messages(channel_id) if "your clip is ready" in str(m["content"])
    ]


async def test_a_failed_task_is_refunded_once_and_the_member_told(harness: Harness) -> None:
    harness.simulator.fail_tasks = "Content policy violation"
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "failed")
    assert task.error == "Content policy violation"
    assert await harness.balance() == 260
    entries = await credits.ledger_for(harness.bot.db, harness.fake.guild_id, harness.fake.user_id)
    assert [e.reason for e in entries] == ["welcome", "charge", "refund"]

    fake = harness.fake
    card = await fake.wait_for_call(
        "PATCH", rf"^/channels/{fake.channel_id}/messages/{task.card_message_id}$"
    )
    embed = card.json["embeds"][0]
    assert embed["title"] == "❌ Failed — credits refunded"
    assert {f["name"]: f["value"] for f in embed["fields"]}["Reason"] == "Content policy violation"
    # The refund is written before the announcement is posted: wait for the post.
    await fake.wait_for(
        lambda r: r.method == "POST" and "could not be made" in str((r.json or {}).get("content"))
    )
    [notice] = [
        m for m in fake.channel_messages(fake.channel_id) if "could not be made" in m["content"]
    ]
    assert (
        "Content policy violation" in notice["content"]
        and "65 credits are back" in notice["content"]
    )
    assert clip_posts(fake, fake.channel_id) == []


@pytest.mark.settings(render_timeout_seconds=0.3)
async def test_a_task_rendering_too_long_is_refunded(harness: Harness) -> None:
    harness.simulator.render_seconds = 3600
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "timed_out")
    assert "still rendering" in (task.error or "")
    assert await harness.balance() == 260


def status_polls(simulator: ProviderSimulator) -> list[float]:
    return [request.received_at for request in simulator.requests_to("status")]


async def test_without_history_polls_keep_the_interval_and_find_the_clip_promptly(
    harness: Harness,
) -> None:
    simulator = harness.simulator
    simulator.render_seconds = 1.0
    task_id = await generate(harness)
    await harness.wait_for_task(task_id, "done")
    [sim_task] = simulator.tasks.values()
    polls = status_polls(simulator)
    gaps = [later - earlier for earlier, later in itertools.pairwise(polls)]
    # POLL_INTERVAL_SECONDS (0.05 here) is the shortest gap between two polls of a task.
    assert min(gaps) >= 0.045, gaps
    # The clip waited at most one gap: 9% of its render time here, plus the loop's jitter.
    lateness = polls[-1] - (sim_task.started_at + sim_task.render_seconds)
    assert 0 <= lateness <= 0.09 + 0.2, lateness


async def finished_render(
    db: Database, fake: FakeDiscord, user_id: int, running: float, ready: float
) -> None:
    """Record a render of the 5 s silent preset that was running at `running` s, done at `ready`."""
    request = new_task(fake.guild_id, user_id, channel_id=fake.channel_id)
    task, _ = await task_store.reserve(
        db, request, owner=OWNER, lease_until=FOREVER, starting_credits=260
    )
    never = 1e12
    assert await task_store.mark_rendering(
        db, task.id, f"sd15p_{user_id}", owner=OWNER, next_poll_at=never
    )
    await claim(db, task.id)
    await task_store.still_running(
        db, task.id, owner=OWNER, running_seconds=running, next_poll_at=never
    )
    clip = ("https://cdn/x.mp4",)
    await claim(db, task.id)
    assert await task_store.mark_delivering(
        db, task.id, clip, owner=OWNER, ready_seconds=ready, next_poll_at=never
    )
    assert await task_store.mark_delivered(
        db, task.id, owner=OWNER, via="attachment", message_id=1, channel_id=fake.channel_id
    )


async def test_a_preset_with_history_is_first_polled_when_its_renders_end(
    harness: Harness,
) -> None:
    # Six earlier renders of the preset, kept in the database, ended between 1.4 s and 1.65 s.
    for number, running in enumerate((1.45, 1.4, 1.55, 1.5, 1.6, 1.42)):
        await finished_render(harness.bot.db, harness.fake, 1000 + number, running, running + 0.05)
    simulator = harness.simulator
    simulator.render_seconds = 1.5
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "done")
    [sim_task] = simulator.tasks.values()
    polls = status_polls(simulator)
    # The first poll waits for the shortest render less the spread over n - 1 (1.35 s) ...
    assert polls[0] - sim_task.started_at >= 1.3
    # ... so three polls find the clip, where polling every 0.05 s from the start takes 30.
    assert len(polls) <= 4, len(polls)
    assert polls[-1] - (sim_task.started_at + 1.5) <= 0.15 + 0.2
    # Its bounds are kept for the next render to learn from.
    assert task.running_seconds is not None and task.ready_seconds is not None
    assert task.running_seconds < 1.5 <= task.ready_seconds + 0.02


async def test_a_rate_limited_status_poll_still_completes(harness: Harness) -> None:
    harness.simulator.fail_next("status", 429, retry_after=0.1, count=2)
    harness.simulator.fail_next("status", 500, count=1)
    task_id = await generate(harness)
    await harness.wait_for_task(task_id, "done")
    assert len(clip_posts(harness.fake, harness.fake.channel_id)) == 1


async def test_a_clip_over_the_upload_limit_is_posted_as_a_link(harness: Harness) -> None:
    task_id = await generate(harness, attachment_size_limit=1024)
    task = await harness.wait_for_task(task_id, "done")
    assert task.delivered_via == "link"
    [post] = clip_posts(harness.fake, harness.fake.channel_id)
    assert post["attachments"] == []
    assert task.result_urls[0] in str(post["content"]) and "too large" in str(post["content"])


async def test_a_refused_channel_sends_the_clip_by_dm(harness: Harness) -> None:
    fake = harness.fake
    fake.forbidden_channels.add(fake.channel_id)
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "done")
    assert task.delivered_via == "dm"
    [dm] = fake.dm_messages(fake.user_id)
    assert dm["attachments"][0]["filename"].endswith(".mp4")
    assert "could not post in the channel" in dm["content"]


async def test_with_dms_closed_too_the_clip_stays_reachable_by_status(harness: Harness) -> None:
    fake = harness.fake
    fake.forbidden_channels.add(fake.channel_id)
    fake.dm_closed_users.add(fake.user_id)
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "done")
    assert task.delivered_via == "none" and task.result_urls
    payload = await harness.run("status", options={"task_id": task_id})
    [reply] = harness.replies(payload)
    clip = {f["name"]: f["value"] for f in reply["embeds"][0]["fields"]}["Clip"]
    assert task.result_urls[0] in clip
    assert await harness.balance() == 195


async def test_a_repeated_delivery_posts_once(harness: Harness) -> None:
    """A post that went through just before a crash is not posted again on the retry."""
    harness.simulator.render_seconds = 3600
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "rendering")
    assert task.provider_task_id is not None
    # This test drives the delivery itself; the poller must not race it.
    await rendering(harness.bot).poller.stop()
    # Only the bot's own bookkeeping may stop the second post, not Discord's nonce check.
    harness.fake.nonce_window = 0
    harness.simulator.finish(task.provider_task_id)
    status = await harness.bot.provider.status(task.provider_task_id)
    owner = harness.bot.claims.owner  # as the bot's own poller would have claimed it
    await claim(harness.bot.db, task_id, owner)
    assert await task_store.mark_delivering(
        harness.bot.db,
        task_id,
        status.response_urls,
        owner=owner,
        ready_seconds=1.0,
        next_poll_at=1e12,
    )
    delivering = await task_store.get(harness.bot.db, task_id)
    assert delivering is not None
    # The first attempt posts; run the step again from the same (now stale) row.
    await rendering(harness.bot).delivery.deliver(delivering)
    await rendering(harness.bot).delivery.deliver(delivering)
    assert len(clip_posts(harness.fake, harness.fake.channel_id)) == 1
    done = await task_store.get(harness.bot.db, task_id)
    assert done is not None and done.state is TaskState.DONE


async def test_mass_mentions_in_a_prompt_ping_nobody(harness: Harness) -> None:
    fake = harness.fake
    task_id = await generate(harness, "@everyone @here <@&123456> look at this")
    await harness.wait_for_task(task_id, "done")
    assert_only_requester_can_be_pinged(fake, fake.user_id)
    for message in fake.channel_messages(fake.channel_id):
        assert not message["mention_everyone"] and not message["mention_roles"]


async def test_a_restart_mid_render_delivers_exactly_once(
    database_url: str, tmp_path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    settings = bot_settings(tmp_path, simulator, database_url=database_url)
    simulator.render_seconds = 0.6
    async with running_bot(fake, simulator, settings) as first:
        task_id = await generate(first)
        await first.wait_for_task(task_id, "rendering")
    # The first process is gone before the clip was ready.
    assert clip_posts(fake, fake.channel_id) == []
    async with running_bot(fake, simulator, settings) as second:
        task = await second.wait_for_task(task_id, "done")
        assert task.delivered_via == "attachment"
    assert len(clip_posts(fake, fake.channel_id)) == 1
    assert len(simulator.requests_to("generate")) == 1


async def test_a_submission_cut_off_by_a_restart_is_refunded_as_uncertain(
    database_url: str,
    tmp_path,
    fake: FakeDiscord,
    simulator: ProviderSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = bot_settings(tmp_path, simulator, database_url=database_url)
    async with running_bot(fake, simulator, settings) as first:
        stranded = await charge_without_submitting(first.bot.db, fake)
        await rendering(first.bot).poller.stop()  # the old run never gets to settle it
    async with running_bot(fake, simulator, settings) as second:
        task = await second.wait_for_task(stranded.id, "uncertain")
        assert await second.balance() == 260
        assert "interrupted" in (task.error or "")
    assert any(
        "never confirmed" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records
    )


@pytest.mark.allow_errors
async def test_the_poller_survives_a_failing_tick(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_due = task_store.claim_due
    failures: list[int] = []

    async def due_failing_once(*args: Any, **kwargs: Any) -> list[Any]:
        if not failures:
            failures.append(1)
            raise RuntimeError("database went away for a moment")
        return await real_due(*args, **kwargs)

    monkeypatch.setattr(task_store, "claim_due", due_failing_once)
    task_id = await generate(harness)
    await harness.wait_for_task(task_id, "done")
    assert failures == [1]
    assert rendering(harness.bot).poller.running
    assert any("tick failed" in r.getMessage() for r in caplog.records)


@pytest.mark.allow_errors
async def test_a_post_whose_record_was_lost_is_found_again_not_reposted(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past Discord's nonce window, the bot reads the channel back before posting again."""
    harness.fake.nonce_window = 0  # Discord no longer remembers the nonce
    real_mark = task_store.mark_delivered
    lost: list[str] = []

    async def lose_the_first_write(db: Any, task_id: str, **kwargs: Any) -> bool:
        if not lost:
            lost.append(task_id)
            raise RuntimeError("the process died right after posting")
        return await real_mark(db, task_id, **kwargs)

    monkeypatch.setattr(task_store, "mark_delivered", lose_the_first_write)
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "done")
    posts = clip_posts(harness.fake, harness.fake.channel_id)
    assert lost == [task_id] and len(posts) == 1
    assert task.delivery_message_id == int(str(posts[0]["id"]))
    assert task.delivery_attempts == 2


async def test_an_upload_refused_as_too_large_is_posted_as_a_link(harness: Harness) -> None:
    fake = harness.fake
    fake.fail_next("POST", rf"^/channels/{fake.channel_id}/messages$", 413, code=40005)
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "done")
    assert task.delivered_via == "link"
    [post] = clip_posts(fake, fake.channel_id)
    assert post["attachments"] == [] and task.result_urls[0] in str(post["content"])


@pytest.mark.settings(render_timeout_seconds=0.1, poll_interval_seconds=0.4)
async def test_a_clip_finished_by_the_first_poll_after_the_time_limit_is_still_posted(
    harness: Harness,
) -> None:
    harness.simulator.render_seconds = 0.2
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "done", "timed_out")
    assert task.state is TaskState.DONE
    assert await harness.balance() == 195


async def test_the_poller_works_on_at_most_its_concurrency_at_once(harness: Harness) -> None:
    poller = rendering(harness.bot).poller
    harness.simulator.render_seconds = 0.3
    for n in range(3 * poller.concurrency):
        await harness.run(
            "generate", options={"prompt": f"scene {n}"}, user_id=int(harness.fake.add_user()["id"])
        )
    harness.simulator.slow_seconds = 0.05  # every poll takes a while, so polls pile up
    busiest = 0
    for _ in range(60):
        busiest = max(busiest, poller.in_flight)
        await asyncio.sleep(0.01)
    assert 1 <= busiest <= poller.concurrency
    rows = await harness.bot.db.fetchall("SELECT id FROM tasks")
    for row in rows:
        await harness.wait_for_task(row["id"], "done", within=15)


async def test_a_charge_whose_submitter_died_is_refunded_without_a_restart(
    harness: Harness,
) -> None:
    rendering(harness.bot).poller.sweep_every = 0.05
    fake = harness.fake
    stranded = await charge_without_submitting(harness.bot.db, fake)
    harness.bot.timetable.wake()
    await harness.wait_for_task(stranded.id, "uncertain", within=3)
    assert await harness.balance() == 260


async def test_a_restart_while_delivering_posts_exactly_once(
    database_url: str, tmp_path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    settings = bot_settings(tmp_path, simulator, database_url=database_url)
    simulator.render_seconds = 3600
    async with running_bot(fake, simulator, settings) as first:
        task_id = await generate(first)
        task = await first.wait_for_task(task_id, "rendering")
        await rendering(first.bot).poller.stop()
        assert task.provider_task_id is not None
        simulator.finish(task.provider_task_id)
        status = await first.bot.provider.status(task.provider_task_id)
        # The run stops right after recording the clip's URLs, before posting it.
        owner = first.bot.claims.owner  # as its poller would have claimed it
        await claim(first.bot.db, task_id, owner)
        await task_store.mark_delivering(
            first.bot.db,
            task_id,
            status.response_urls,
            owner=owner,
            ready_seconds=1.0,
            next_poll_at=0,
        )
    assert clip_posts(fake, fake.channel_id) == []
    async with running_bot(fake, simulator, settings) as second:
        done = await second.wait_for_task(task_id, "done")
    assert len(clip_posts(fake, fake.channel_id)) == 1
    assert done.delivery_message_id == int(str(clip_posts(fake, fake.channel_id)[0]["id"]))


async def test_a_clip_url_that_keeps_failing_is_posted_as_a_link(harness: Harness) -> None:
    harness.simulator.clip_status = 404
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "done")
    assert task.delivered_via == "link" and task.delivery_attempts == 3
    [post] = clip_posts(harness.fake, harness.fake.channel_id)
    assert "could not be fetched" in str(post["content"]) and task.result_urls[0] in str(
        post["content"]
    )


async def test_a_deleted_channel_sends_the_clip_by_dm(harness: Harness) -> None:
    fake = harness.fake
    fake.missing_channels.add(fake.channel_id)
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "done")
    assert task.delivered_via == "dm" and len(fake.dm_messages(fake.user_id)) == 1


@pytest.mark.parametrize("kind", ["not_json", "missing_fields", "wrong_types"])
async def test_malformed_status_answers_are_retried_not_fatal(harness: Harness, kind: str) -> None:
    harness.simulator.malformed_next("status", count=2, kind=kind)  # type: ignore[arg-type]
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "done")
    assert task.delivered_via == "attachment"
    assert await harness.balance() == 195


@pytest.mark.parametrize("status", [429, 500])
async def test_discord_faults_on_the_clip_post_still_post_once(
    harness: Harness, status: int
) -> None:
    fake = harness.fake
    fake.fail_next("POST", rf"^/channels/{fake.channel_id}/messages$", status, retry_after=0.05)
    task_id = await generate(harness)
    await harness.wait_for_task(task_id, "done")
    assert len(clip_posts(fake, fake.channel_id)) == 1


async def test_a_success_without_a_clip_is_refunded(harness: Harness) -> None:
    harness.simulator.render_seconds = 3600
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "rendering")
    assert task.provider_task_id is not None
    harness.simulator.clipless.add(task.provider_task_id)
    harness.simulator.finish(task.provider_task_id)
    failed = await harness.wait_for_task(task_id, "failed")
    assert "sent no clip" in (failed.error or "")
    assert await harness.balance() == 260
    assert clip_posts(harness.fake, harness.fake.channel_id) == []


async def test_a_channel_without_attach_files_gets_the_link_there(harness: Harness) -> None:
    fake = harness.fake
    fake.fail_next("POST", rf"^/channels/{fake.channel_id}/messages$", 403, code=50013)
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "done")
    assert task.delivered_via == "link" and fake.dm_messages(fake.user_id) == []
    [post] = clip_posts(fake, fake.channel_id)
    assert post["attachments"] == [] and task.result_urls[0] in str(post["content"])


async def test_tasks_due_together_are_polled_in_turn(harness: Harness) -> None:
    """More tasks due than the poller can ask about at once: each is asked in its turn."""
    simulator = harness.simulator
    simulator.render_seconds = 3600
    simulator.slow_seconds = 0.02
    rendering(harness.bot).poller.concurrency = 2
    ours = {}
    for number in range(12):
        provider_id = await harness.bot.provider.generate(
            GenerationRequest(f"scene {number}", "16:9", 5)
        )
        task = await harness.reserve(3000 + number, prompt=f"scene {number}")
        await task_store.mark_rendering(
            harness.bot.db, task.id, provider_id, owner=OWNER, next_poll_at=1e12
        )
        ours[provider_id] = task.id
    # All due at the same moment, so no tick starts on the first ones early.
    async with harness.bot.db.transaction() as conn:
        await conn.execute("UPDATE tasks SET next_poll_at = 0 WHERE state = 'rendering'")
    harness.bot.timetable.wake()
    deadline = asyncio.get_running_loop().time() + 10
    while len(simulator.requests_to("status")) < 48:
        assert asyncio.get_running_loop().time() < deadline, "the poller stalled"
        await asyncio.sleep(0.05)
    polled = Counter(r.query["task_id"] for r in simulator.requests_to("status")[:48])
    # Four rounds of twelve: the slots go to whoever waited longest.
    assert set(polled) == set(ours)
    assert max(polled.values()) - min(polled.values()) <= 1, polled


async def test_polls_without_an_answer_back_off_and_teach_nothing(harness: Harness) -> None:
    simulator = harness.simulator
    simulator.render_seconds = 0.2
    simulator.fail_next("status", 400, count=5)
    task_id = await generate(harness)
    task = await harness.wait_for_task(task_id, "done")
    polls = status_polls(simulator)
    gaps = [later - earlier for earlier, later in itertools.pairwise(polls)]
    # Each failed poll waits as long as the provider has been silent since the first poll was
    # due: one failure costs one usual gap (0.05 s), an outage 0.05, 0.1, 0.2, 0.3 (the cap).
    assert len(polls) == 6, gaps
    assert gaps[0] < 0.15 and gaps[3] >= 0.15 and gaps[4] >= 0.25, gaps
    # The clip was found long after it was ready, and no answer said "still running" before:
    # when it ended is unknown, so nothing is learned from it.
    assert task.running_seconds is None and task.ready_seconds is None
    assert await harness.bot.timetable.expectation(5, False) is None
    assert len(clip_posts(harness.fake, harness.fake.channel_id)) == 1


async def test_a_render_found_done_after_a_restart_is_learned_once(
    database_url: str, tmp_path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    settings = bot_settings(tmp_path, simulator, database_url=database_url)
    simulator.render_seconds = 60
    async with running_bot(fake, simulator, settings) as first:
        task_id = await generate(first)
        # Stopped after a poll has seen it running, before it is done.
        deadline = asyncio.get_running_loop().time() + 5
        while (await first.wait_for_task(task_id, "rendering")).running_seconds is None:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
    # Done while the bot was down: the new run's very first poll finds it so.
    [provider_task_id] = simulator.tasks
    simulator.finish(provider_task_id)
    async with running_bot(fake, simulator, settings) as second:
        task = await second.wait_for_task(task_id, "done")
        assert task.running_seconds is not None and task.ready_seconds is not None
        # The first read of what is learned happens before this render is recorded, so it
        # is not also read back from the database.
        timetable = second.bot.timetable
        once = learned(task.running_seconds, task.ready_seconds, timetable.schedule)
        assert once is not None
        assert await timetable.expectation(5, False) == expect({(5, False): [once]}, (5, False))


async def test_a_render_first_polled_long_after_it_was_due_teaches_nothing(
    harness: Harness,
) -> None:
    """A task left by a run that stopped before polling it: when it ended is unknown."""
    db = harness.bot.db
    provider_id = await harness.bot.provider.generate(GenerationRequest("left behind", "16:9", 5))
    harness.simulator.finish(provider_id)
    task = await harness.reserve(prompt="left behind")
    assert await task_store.mark_rendering(db, task.id, provider_id, owner=OWNER, next_poll_at=1e12)
    # Submitted 100 s ago, its first poll (due after 0.05 s) never happened; due now.
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE tasks SET submitted_at = ?, next_poll_at = 0 WHERE id = ?",
            (iso(now() - timedelta(seconds=100)), task.id),
        )
    harness.bot.timetable.wake()
    done = await harness.wait_for_task(task.id, "done")
    assert done.running_seconds is None and done.ready_seconds is None
    assert await harness.bot.timetable.expectation(5, False) is None


@pytest.mark.allow_errors
@pytest.mark.settings(render_timeout_seconds=0.3)
async def test_a_task_whose_polls_keep_breaking_is_still_refunded_at_the_time_limit(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(task_id: str) -> None:
        raise RuntimeError("a bug in reading the answer")

    task_id = await generate(harness)
    await harness.wait_for_task(task_id, "rendering")
    monkeypatch.setattr(harness.bot.provider, "status", broken)
    task = await harness.wait_for_task(task_id, "timed_out", within=10)
    assert "still rendering" in (task.error or "")
    assert await harness.balance() == 260


@pytest.mark.allow_errors
async def test_when_polls_cannot_be_planned_the_provider_never_hears_of_the_task(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(duration: int, sound: bool) -> float:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(harness.bot.timetable, "first_poll_delay", broken)
    await harness.run("generate", options={"prompt": PROMPT})
    [task] = await harness.tasks()
    task = await harness.wait_for_task(task.id, "uncertain", "rejected", "failed")
    # Nothing was created at the provider, so nothing can be billed without a record.
    assert harness.simulator.requests_to("generate") == []
    assert await harness.balance() == 260


async def test_a_sweep_busy_telling_members_does_not_hold_up_clips(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a crash the sweep may have many refunds to announce; clips go on meanwhile."""
    busy, release = asyncio.Event(), asyncio.Event()

    async def long_sweep() -> None:
        busy.set()
        await release.wait()

    poller = rendering(harness.bot).poller
    monkeypatch.setattr(poller, "refund_stranded", long_sweep)
    poller.sweep_every = 0.01
    try:
        task_id = await generate(harness)
        await harness.wait_for_task(task_id, "done")
        assert busy.is_set()
        assert len(clip_posts(harness.fake, harness.fake.channel_id)) == 1
    finally:
        release.set()
