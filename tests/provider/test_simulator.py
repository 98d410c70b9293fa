from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from provider.simulator import ProviderSimulator, load_sample_clip
from tests.provider.conftest import API_KEY, RENDER_SECONDS, FakeClock

AUTH = {"Authorization": f"Bearer {API_KEY}"}
VALID = {"prompt": "A lighthouse at dawn", "aspect_ratio": "16:9", "duration": "5"}


@pytest.fixture
async def http(sim: ProviderSimulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=sim.base_url.removesuffix("api")) as session:
        yield session


async def post_generate(
    http: aiohttp.ClientSession, body: object, headers: dict[str, str] = AUTH
) -> tuple[int, dict[str, Any]]:
    async with http.post("api/generate", json=body, headers=headers) as resp:
        return resp.status, await resp.json()


def test_sample_clip_is_a_small_mp4() -> None:
    clip = load_sample_clip()

    assert clip[4:8] == b"ftyp"
    assert 1000 < len(clip) < 20_000


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}]
)
async def test_api_needs_the_bearer_key(
    sim: ProviderSimulator, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    status, body = await post_generate(http, VALID, headers)

    assert status == 401
    assert body == {"code": 401, "message": "Unauthorized", "data": None}
    assert sim.tasks == {}


async def test_generate_creates_a_task_and_charges_its_preset(
    sim: ProviderSimulator, http: aiohttp.ClientSession
) -> None:
    before = sim.balance

    status, body = await post_generate(http, {**VALID, "duration": "10", "sound": True})

    assert status == 200
    assert body["code"] == 200 and body["message"] == "success"
    task_id = body["data"]["task_id"]
    assert re.fullmatch(r"sd15p_[0-9a-f]{15}", task_id)
    assert sim.balance == before - 260


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"prompt": "x" * 1001}, "1000 characters"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"aspect_ratio": "4:3"}, "aspect_ratio"),
        ({"duration": 5}, "duration"),
        ({"duration": "7"}, "duration"),
        ({"sound": "yes"}, "sound"),
        ({"image_urls": "https://img.example/a.png"}, "image_urls"),
        ({"image_urls": ["ftp://img.example/a.png"]}, "image_urls"),
    ],
)
async def test_generate_rejects_what_the_documentation_forbids(
    sim: ProviderSimulator, http: aiohttp.ClientSession, change: dict[str, object], complaint: str
) -> None:
    before = sim.balance

    status, body = await post_generate(http, {**VALID, **change})

    assert status == 400
    assert body["code"] == 400
    assert complaint in body["message"]
    assert sim.tasks == {}
    assert sim.balance == before


async def test_generate_accepts_the_longest_prompt_and_reference_images(
    http: aiohttp.ClientSession,
) -> None:
    status, _ = await post_generate(
        http, {**VALID, "prompt": "x" * 1000, "image_urls": ["https://img.example/a.png"]}
    )

    assert status == 200


async def test_generate_rejects_a_body_that_is_not_json(http: aiohttp.ClientSession) -> None:
    async with http.post("api/generate", data=b"{not json", headers=AUTH) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == 400


async def test_status_needs_a_known_task_id(http: aiohttp.ClientSession) -> None:
    async with http.get("api/status", headers=AUTH) as resp:
        assert resp.status == 400
    async with http.get("api/status", params={"task_id": "sd15p_nope"}, headers=AUTH) as resp:
        assert resp.status == 404
        assert (await resp.json())["message"] == "Task not found"


async def test_finished_task_links_a_clip_served_as_video(
    sim: ProviderSimulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    _, created = await post_generate(http, VALID)
    task_id = created["data"]["task_id"]
    clock.advance(RENDER_SECONDS)

    async with http.post("api/status", json={"task_id": task_id}, headers=AUTH) as resp:
        data = (await resp.json())["data"]
    assert data["status"] == "SUCCESS"
    assert data["request"] == VALID
    [url] = data["response"]
    async with http.get(url) as clip:
        assert clip.status == 200
        assert clip.content_type == "video/mp4"
        assert clip.content_length == len(sim.clip_bytes)
        assert (await clip.read())[4:8] == b"ftyp"


async def test_clip_of_an_unfinished_task_is_not_found(
    sim: ProviderSimulator, http: aiohttp.ClientSession
) -> None:
    _, created = await post_generate(http, VALID)

    async with http.get(f"files/{created['data']['task_id']}.mp4") as resp:
        assert resp.status == 404


async def test_recorded_requests_never_keep_the_key(
    sim: ProviderSimulator, http: aiohttp.ClientSession
) -> None:
    await post_generate(http, VALID)

    [recorded] = sim.requests
    assert recorded.authorized and recorded.had_auth_header
    assert API_KEY not in repr(sim.requests)


async def test_a_rate_ceiling_answers_429_with_retry_after(
    sim: ProviderSimulator, session: aiohttp.ClientSession
) -> None:
    sim.max_rps = 3
    headers = {"Authorization": f"Bearer {API_KEY}"}
    answers = []
    for _ in range(5):
        async with session.get(
            f"{sim.base_url}/status", params={"task_id": "nope"}, headers=headers
        ) as response:
            answers.append((response.status, response.headers.get("Retry-After")))
    assert [status for status, _ in answers] == [404, 404, 404, 429, 429]
    assert answers[-1][1] == "1" and sim.rate_limited == 2


async def test_the_client_never_passes_its_own_rate_ceiling(
    sim: ProviderSimulator, session: aiohttp.ClientSession
) -> None:
    from provider.client import SeedanceClient
    from provider.models import GenerationRequest

    # A little headroom: the simulator counts arrivals, whose timing jitters on a busy box.
    sim.max_rps = 10
    client = SeedanceClient(session, sim.base_url, API_KEY, max_rps=9, backoff_base=0.01)
    task_id = await client.generate(GenerationRequest("a", "16:9", 5))
    await asyncio.gather(*(client.status(task_id) for _ in range(12)))
    assert sim.rate_limited == 0
