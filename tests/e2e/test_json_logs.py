"""`LOG_FORMAT=json` on the real process: every line it writes is one JSON object."""

from __future__ import annotations

import json
from pathlib import Path

from provider.simulator import ProviderSimulator
from tests import payloads
from tests.e2e.live import BotProcess
from tests.fakediscord import FakeDiscord
from tests.harness import API_KEY, TOKEN


async def test_bot_py_writes_only_json_lines_including_discord_py_s(
    tmp_path: Path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    process = BotProcess(fake, simulator, tmp_path / "bot.db", env={"LOG_FORMAT": "json"})
    await process.start()
    payload = payloads.slash_command(
        fake, name="video", subcommand="generate", options={"prompt": "A fox in the snow"}
    )
    await fake.send_interaction(payload)
    await process.wait_for_state("done")
    assert await process.terminate() == 0
    entries = [json.loads(line) for line in process.output]  # raises on any other line
    loggers = {entry["logger"] for entry in entries}
    assert any(name.startswith("discord.") for name in loggers), loggers
    text = "\n".join(process.output)
    assert TOKEN not in text and API_KEY not in text
