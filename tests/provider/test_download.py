from __future__ import annotations

import pathlib

import pytest

from provider.client import SeedanceClient
from provider.errors import ClipTooLarge, ProviderBadResponse, ProviderRejected, ProviderServerError
from provider.models import GenerationRequest
from provider.simulator import ProviderSimulator


async def finished_clip_url(sim: ProviderSimulator, client: SeedanceClient) -> str:
    task_id = await client.generate(GenerationRequest("A paper boat in the rain", "1:1", 5))
    sim.finish(task_id)
    [url] = (await client.status(task_id)).response_urls
    return url


async def test_download_sends_no_api_key_to_the_clip_host(
    sim: ProviderSimulator, client: SeedanceClient, tmp_path: pathlib.Path
) -> None:
    url = await finished_clip_url(sim, client)

    await client.download(url, tmp_path / "clip.mp4", max_bytes=1_000_000)

    [fetch] = sim.requests_to("files")
    assert not fetch.had_auth_header


async def test_clip_over_the_declared_limit_is_refused_before_writing(
    sim: ProviderSimulator, client: SeedanceClient, tmp_path: pathlib.Path
) -> None:
    url = await finished_clip_url(sim, client)
    dest = tmp_path / "clip.mp4"

    with pytest.raises(ClipTooLarge) as caught:
        await client.download(url, dest, max_bytes=1000)

    assert caught.value.size == len(sim.clip_bytes)
    assert not dest.exists()


async def test_streamed_clip_over_the_limit_is_aborted_and_the_partial_file_removed(
    sim: ProviderSimulator, client: SeedanceClient, tmp_path: pathlib.Path
) -> None:
    sim.clip_bytes = b"\x00\x00\x00\x20ftypisom" + bytes(400_000)
    sim.clip_chunked = True
    url = await finished_clip_url(sim, client)
    dest = tmp_path / "clip.mp4"

    with pytest.raises(ClipTooLarge) as caught:
        await client.download(url, dest, max_bytes=150_000)

    assert caught.value.size is None
    assert not dest.exists()


async def test_streamed_clip_within_the_limit_is_written_whole(
    sim: ProviderSimulator, client: SeedanceClient, tmp_path: pathlib.Path
) -> None:
    sim.clip_bytes = b"\x00\x00\x00\x20ftypisom" + bytes(200_000)
    sim.clip_chunked = True
    url = await finished_clip_url(sim, client)
    dest = tmp_path / "clip.mp4"

    size = await client.download(url, dest, max_bytes=200_012)

    assert size == 200_012
    assert dest.read_bytes() == sim.clip_bytes


async def test_missing_clip_is_rejected_with_its_status(
    sim: ProviderSimulator, client: SeedanceClient, tmp_path: pathlib.Path
) -> None:
    url = await finished_clip_url(sim, client)
    sim.clip_status = 404
    dest = tmp_path / "clip.mp4"

    with pytest.raises(ProviderRejected) as caught:
        await client.download(url, dest, max_bytes=1_000_000)

    assert caught.value.status == 404
    assert not dest.exists()


async def test_clip_host_failure_is_a_server_error(
    sim: ProviderSimulator, client: SeedanceClient, tmp_path: pathlib.Path
) -> None:
    url = await finished_clip_url(sim, client)
    sim.clip_status = 503

    with pytest.raises(ProviderServerError) as caught:
        await client.download(url, tmp_path / "clip.mp4", max_bytes=1_000_000)

    assert caught.value.status == 503


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://cdn.example/clip.mp4", "clip.mp4"])
async def test_non_http_clip_address_is_refused_without_fetching(
    sim: ProviderSimulator, client: SeedanceClient, tmp_path: pathlib.Path, url: str
) -> None:
    dest = tmp_path / "clip.mp4"

    with pytest.raises(ProviderBadResponse):
        await client.download(url, dest, max_bytes=1_000_000)

    assert sim.requests == []
    assert not dest.exists()
