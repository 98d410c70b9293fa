"""/metrics and /healthz of a bot started as bot.py starts it, after real commands."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core import monitoring
from db.states import TaskState
from provider.simulator import ProviderSimulator
from tests.fakediscord import FakeDiscord
from tests.harness import Harness, bot_settings, running_bot

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def served(
    tmp_path: Path, fake: FakeDiscord, simulator: ProviderSimulator
) -> AsyncIterator[Harness]:
    """The bot logged in (no gateway), serving metrics on a loopback port."""
    settings = bot_settings(tmp_path, simulator, metrics_port=free_port())
    async with running_bot(fake, simulator, settings) as harness:
        yield harness


async def scrape(harness: Harness) -> tuple[Samples, str]:
    """GET /metrics and parse it as Prometheus does."""
    url = f"http://127.0.0.1:{harness.settings.metrics_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def healthz(harness: Harness) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{harness.settings.metrics_port}/healthz"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json()


async def test_a_generated_clip_shows_in_the_metrics(
    served: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitoring, "TASKS_CACHE_SECONDS", 0.0)  # every scrape reads
    before, _ = await scrape(served)
    # One 429 from the provider and one from Discord on the way: both must be counted.
    served.simulator.fail_next("status", 429, retry_after=0.01)
    served.fake.fail_next("POST", r"^/channels/\d+/messages$", 429, retry_after=0.01)
    await served.run("generate", options={"prompt": "A lighthouse in a storm"})
    [task] = await served.tasks()
    await served.wait_for_task(task.id, "done")
    after, text = await scrape(served)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(after, "seedance_tasks", state="done") == 1
    assert {value(after, "seedance_tasks", state=s.value) for s in TaskState if s != "done"} == {0}
    requests = "seedance_provider_requests_total"
    assert grew(requests, endpoint="generate", outcome="200") == 1
    assert grew(requests, endpoint="status", outcome="429") == 1
    assert grew(requests, endpoint="status", outcome="200") >= 1
    assert grew(requests, endpoint="download", outcome="200") == 1
    assert grew("seedance_provider_rate_limited_total", endpoint="status") == 1
    assert value(after, "seedance_provider_last_success_timestamp_seconds") > 0
    assert grew("seedance_discord_rest_errors_total", status="429") == 1
    # The command's acknowledgement (its defer) was timed, and well inside Discord's 3 s.
    assert grew("seedance_ack_seconds_count") == 1
    assert 0 < grew("seedance_ack_seconds_sum") < 3
    for name in (
        "seedance_credits_charged_total",
        "seedance_credits_refunded_total",
        "seedance_delivery_delay_seconds_count",
        "seedance_poll_lateness_seconds_count",
        "seedance_uploads_in_flight",
    ):
        assert f"\n{name}" in text, name
    # No label carries a user, a guild, a prompt or a secret.
    assert str(served.fake.user_id) not in text and "lighthouse" not in text
    assert served.settings.discord_token not in text
    assert served.settings.seedance_api_key not in text


async def test_task_counts_are_cached_between_scrapes(served: Harness) -> None:
    await scrape(served)
    await served.reserve()  # a task recorded right after a scrape
    samples, _ = await scrape(served)
    assert value(samples, "seedance_tasks", state="submitting") == 0  # still the cached count


async def test_health_is_503_naming_the_gateway_when_no_shard_is_connected(
    served: Harness,
) -> None:
    status, body = await healthz(served)
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["problems"] == ["gateway: not connected yet"]
    database = body["database"]
    assert isinstance(database, dict) and database["ok"] is True
    assert isinstance(database["round_trip_ms"], float)


async def test_without_metrics_port_nothing_listens(
    tmp_path: Path, fake: FakeDiscord, simulator: ProviderSimulator
) -> None:
    port = free_port()
    async with running_bot(fake, simulator, bot_settings(tmp_path, simulator)) as harness:
        assert harness.bot.monitoring is None
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as session:
                await session.get(f"http://127.0.0.1:{port}/healthz")
