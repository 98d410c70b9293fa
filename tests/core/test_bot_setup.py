"""Start-up as an operator sees it: invite link, command sync only when needed, sandbox mode."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import discord
import pytest

from provider.simulator import ProviderSimulator
from tests.fakediscord import FakeDiscord
from tests.harness import API_KEY, TOKEN, Harness, bot_settings, running_bot

SYNC_GLOBAL = r"^/applications/\d+/commands$"


def options_of(command: dict[str, Any], sub: str) -> dict[str, dict[str, Any]]:
    [subcommand] = [o for o in command["options"] if o["name"] == sub]
    return {o["name"]: o for o in subcommand.get("options", [])}


async def test_the_invite_link_asks_for_exactly_the_needed_permissions(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    started = caplog.get_records("setup")
    [line] = [r.getMessage() for r in started if r.getMessage().startswith("Invite link:")]
    query = parse_qs(urlsplit(line.split(": ", 1)[1]).query)
    assert query["client_id"] == [str(harness.fake.application_id)]
    assert query["scope"] == ["bot applications.commands"]
    expected = discord.Permissions(
        view_channel=True,
        send_messages=True,
        embed_links=True,
        attach_files=True,
        read_message_history=True,
    )
    assert query["permissions"] == [str(expected.value)] == ["117760"]


async def test_commands_are_synced_as_the_product_defines_them(harness: Harness) -> None:
    commands = {c["name"]: c for c in harness.fake.global_commands}
    assert set(commands) == {"video", "video-admin", "Animate image"}
    assert commands["Animate image"]["type"] == 3  # a message context menu
    video = commands["video"]
    assert {o["name"] for o in video["options"]} == {
        "generate",
        "status",
        "balance",
        "history",
        "notify",
    }
    generate = options_of(video, "generate")
    assert [o["name"] for o in generate.values() if o.get("required")] == ["prompt"]
    assert (generate["prompt"]["min_length"], generate["prompt"]["max_length"]) == (1, 1000)
    assert [c["value"] for c in generate["aspect_ratio"]["choices"]] == ["16:9", "9:16", "1:1"]
    assert [c["value"] for c in generate["duration"]["choices"]] == [5, 10]
    assert generate["sound"]["type"] == 5 and generate["image"]["type"] == 11
    assert generate["image_url"]["type"] == 3
    assert all(o["description"] for o in generate.values())
    assert options_of(video, "status")["task_id"]["autocomplete"] is True
    grant = options_of(commands["video-admin"], "grant")
    assert grant["member"]["required"] and grant["amount"]["type"] == 4
    assert not grant["reason"].get("required", False)


async def test_a_second_start_with_the_same_commands_does_not_sync(
    database_url: str, tmp_path: Path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    settings = bot_settings(tmp_path, simulator, database_url=database_url)
    async with running_bot(fake, simulator, settings):
        pass
    assert len(fake.calls("PUT", SYNC_GLOBAL)) == 1
    async with running_bot(fake, simulator, settings):
        pass
    assert len(fake.calls("PUT", SYNC_GLOBAL)) == 1


async def test_a_dev_guild_gets_its_commands_on_every_start(
    database_url: str, tmp_path: Path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    settings = bot_settings(
        tmp_path, simulator, database_url=database_url, dev_guild_id=fake.guild_id
    )
    for _ in range(2):
        async with running_bot(fake, simulator, settings):
            pass
    assert len(fake.calls("PUT", rf"^/applications/\d+/guilds/{fake.guild_id}/commands$")) == 2
    assert fake.calls("PUT", SYNC_GLOBAL) == []
    assert {c["name"] for c in fake.guild_commands[fake.guild_id]} == {
        "video",
        "video-admin",
        "Animate image",
    }


async def test_sandbox_mode_runs_the_whole_flow_on_the_built_in_simulator(
    tmp_path: Path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    settings = bot_settings(
        tmp_path,
        simulator,
        seedance_api_key="sandbox",
        seedance_api_base="https://seedance1-5pro.com/api",  # never contacted
        sandbox_render_seconds=0.1,
    )
    async with running_bot(fake, simulator, settings) as harness:
        await harness.run("generate", options={"prompt": "a paper boat in the rain"})
        [task] = await harness.tasks()
        done = await harness.wait_for_task(task.id, "done")
        assert done.delivered_via == "attachment"
        assert done.result_urls[0].startswith("http://127.0.0.1:")
    assert simulator.requests == []  # the test's own simulator was not the one used


async def test_no_secret_reaches_the_logs_or_the_database_at_debug(
    tmp_path: Path,
    fake: FakeDiscord,
    simulator: ProviderSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = bot_settings(tmp_path, simulator)
    simulator.fail_next("generate", 500)
    simulator.fail_next("status", 429, retry_after=0.05)
    async with running_bot(fake, simulator, settings) as harness:
        await harness.run("generate", options={"prompt": "a fox in the snow"})
        [task] = await harness.tasks()
        await harness.wait_for_task(task.id, "done")
        simulator.fail_next("generate", 401)
        await harness.run("generate", options={"prompt": "another fox"})
    assert len(caplog.records) > 50  # DEBUG really was on
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("bot.db*"))
    sent = repr([(r.path, r.query, r.json) for r in fake.requests])
    for secret in (TOKEN, API_KEY):
        assert secret not in logged
        assert secret.encode() not in stored
        assert secret not in sent  # nothing the bot told Discord carries either secret
