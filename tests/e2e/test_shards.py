"""End to end: the bot on several gateway shards, as Discord requires past 2,500 servers.

Guilds are spread over shards by `(guild_id >> 22) % shard_count`; each shard is its own
gateway session, and a guild's interactions arrive on its shard only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from db.tasks import Task
from provider.simulator import ProviderSimulator
from tests import payloads
from tests.e2e.live import IDENTIFY_GAP, BotProcess, LiveHarness, live_bot
from tests.fakediscord import FakeDiscord, new_snowflake
from tests.harness import MEMBER_PERMISSIONS, bot_settings

IDENTIFY = 2


def guild_on_shard(fake: FakeDiscord, shard_id: int, shard_count: int) -> tuple[int, int]:
    """Register a guild whose events go to `shard_id`; return it and a channel in it."""
    stamp = new_snowflake() >> 22
    stamp += (shard_id - stamp) % shard_count
    guild_id = stamp << 22 | 1
    fake.add_guild(guild_id)
    channel_id = int(fake.add_channel(name="studio", guild_id=guild_id)["id"])
    return guild_id, channel_id


async def generate_in(live: LiveHarness, guild_id: int, channel_id: int) -> dict[str, Any]:
    payload = payloads.slash_command(
        live.fake,
        name="video",
        subcommand="generate",
        options={"prompt": f"a kite over guild {guild_id}"},
        permissions=MEMBER_PERMISSIONS,
        guild_id=guild_id,
        channel_id=channel_id,
    )
    await live.dispatch(payload)
    return payload


def clips_in(fake: FakeDiscord, channel_id: int) -> list[dict[str, Any]]:
    return [m for m in fake.channel_messages(channel_id) if "your clip is ready" in m["content"]]


def identified_shards(fake: FakeDiscord) -> list[tuple[list[int], float]]:
    return [(frame.d["shard"], frame.time) for frame in fake.gateway_frames if frame.op == IDENTIFY]


async def test_the_recommended_shards_connect_and_each_serves_its_guilds(
    tmp_path: Path, simulator: ProviderSimulator
) -> None:
    async with FakeDiscord(heartbeat_interval_ms=200, shard_count=2) as fake:
        places = [guild_on_shard(fake, shard, 2) for shard in (0, 1)]
        async with live_bot(fake, simulator, bot_settings(tmp_path, simulator)) as live:
            shards = identified_shards(fake)
            assert sorted(shard for shard, _ in shards) == [[0, 2], [1, 2]]
            # One IDENTIFY per slot, as Discord demands (5 s in production).
            assert shards[1][1] - shards[0][1] >= IDENTIFY_GAP * 0.9
            assert all(live.bot.get_guild(guild) is not None for guild, _ in places)
            for guild, channel in places:
                await generate_in(live, guild, channel)
            for guild, channel in places:
                [task] = [t for t in await all_tasks(live) if t.guild_id == guild]
                await live.wait_for_task(task.id, "done")
                assert len(clips_in(fake, channel)) == 1
        assert not fake.errors


async def all_tasks(live: LiveHarness) -> list[Task]:
    rows = await live.bot.db.fetchall("SELECT * FROM tasks ORDER BY created_at")
    return [Task.from_row(row) for row in rows]


async def test_a_process_with_some_shards_connects_only_those_and_does_not_sync(
    tmp_path: Path, simulator: ProviderSimulator
) -> None:
    async with FakeDiscord(heartbeat_interval_ms=200, shard_count=3) as fake:
        guild, channel = guild_on_shard(fake, 2, 3)
        settings = bot_settings(tmp_path, simulator, shard_count=3, shard_ids=(2,))
        async with live_bot(fake, simulator, settings) as live:
            assert [shard for shard, _ in identified_shards(fake)] == [[2, 3]]
            assert live.bot.get_guild(guild) is not None
            assert live.bot.get_guild(fake.guild_id) is None or (fake.guild_id >> 22) % 3 == 2
            await generate_in(live, guild, channel)
            [task] = await all_tasks(live)
            await live.wait_for_task(task.id, "done")
            assert len(clips_in(fake, channel)) == 1
        # Only the process holding shard 0 syncs the commands, so several never race.
        assert fake.calls("PUT", r"^/applications/\d+/commands$") == []


async def test_a_process_without_a_gateway_delivers_what_another_started(
    tmp_path: Path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    simulator.render_seconds = 3600  # rendering until the test says otherwise
    gateway = BotProcess(fake, simulator, tmp_path / "bot.db")
    await gateway.start()
    payload = payloads.slash_command(
        fake, name="video", subcommand="generate", options={"prompt": "a paper boat"}
    )
    await fake.send_interaction(payload)
    await gateway.wait_for_state("rendering")
    assert await gateway.terminate() == 0
    identified = fake.identify_count

    worker = BotProcess(fake, simulator, tmp_path / "bot.db", env={"SHARD_IDS": "none"})
    await worker.start()
    [provider_task] = simulator.tasks
    simulator.finish(provider_task)
    row = await worker.wait_for_state("done")
    assert len(clips_in(fake, fake.channel_id)) == 1 and row["delivery_message_id"] is not None
    assert fake.identify_count == identified  # it never opened a gateway session
    assert await worker.terminate() == 0
    assert not any("Traceback" in line for line in worker.output), worker.output


async def test_a_second_process_that_would_serve_the_same_shards_refuses_to_start(
    tmp_path: Path, database_url: str, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    first = BotProcess(fake, simulator, tmp_path / "bot.db", database_url=database_url)
    await first.start()
    # Same database, every shard again: on SQLite any second process, on PostgreSQL the
    # overlap with the live process's shards.
    second = BotProcess(fake, simulator, tmp_path / "bot.db", database_url=database_url)
    with pytest.raises(AssertionError, match="never connected"):
        await second.start()
    assert second.process is not None and second.process.returncode == 2
    [refusal] = [line for line in second.output if line.startswith("error:")]
    expected = "is running on" if database_url.startswith("sqlite") else "every shard"
    assert expected in refusal and not any("Traceback" in line for line in second.output)
    assert fake.identify_count == 1, "the refused process never reached the gateway"
    assert await first.terminate() == 0
