from __future__ import annotations

import asyncio
import itertools
import logging
import re

import pytest

from provider.client import SeedanceClient
from provider.errors import (
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderOutOfCredits,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)
from provider.models import GenerationRequest
from provider.simulator import ProviderSimulator
from tests.provider.conftest import API_KEY, RENDER_SECONDS, FakeClock, MakeClient

FIVE_SILENT = GenerationRequest("Drone shot over a neon night market", "16:9", 5)
# A well-formed id the simulator has never issued.
UNKNOWN_TASK = "sd15p_000000000000000"


async def call(client: SeedanceClient, endpoint: str) -> object:
    """Make one call of the named endpoint, as a test parametrized over both does."""
    if endpoint == "generate":
        return await client.generate(FIVE_SILENT)
    return await client.status(UNKNOWN_TASK)


async def test_generate_returns_the_task_id_and_sends_the_documented_json(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    request = GenerationRequest(
        "Make the cat wave", "9:16", 10, sound=True, image_urls=("https://img.example/cat.png",)
    )
    balance = sim.balance

    task_id = await client.generate(request)

    assert re.fullmatch(r"sd15p_[0-9a-f]{15}", task_id)
    [sent] = sim.requests_to("generate")
    assert sent.method == "POST"
    assert sent.authorized
    assert sent.json == {
        "prompt": "Make the cat wave",
        "aspect_ratio": "9:16",
        "duration": "10",
        "sound": True,
        "image_urls": ["https://img.example/cat.png"],
    }
    assert sim.balance == balance - 260


async def test_status_by_get_sends_the_task_id_in_the_query(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    task_id = await client.generate(FIVE_SILENT)

    task = await client.status(task_id)

    assert task.task_id == task_id
    assert task.is_running and task.status == "IN_PROGRESS"
    assert task.response_urls == ()
    assert task.consumed_credits == 65
    assert task.created_at is not None
    [sent] = sim.requests_to("status")
    assert (sent.method, sent.query, sent.json) == ("GET", {"task_id": task_id}, None)


async def test_status_by_post_sends_the_task_id_in_the_body(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    task_id = await client.generate(FIVE_SILENT)

    task = await client.status(task_id, use_post=True)

    assert task.is_running
    [sent] = sim.requests_to("status")
    assert (sent.method, sent.query, sent.json) == ("POST", {}, {"task_id": task_id})


async def test_task_renders_then_its_clip_downloads_as_an_mp4(
    sim: ProviderSimulator, client: SeedanceClient, clock: FakeClock, tmp_path
) -> None:
    task_id = await client.generate(FIVE_SILENT)
    assert (await client.status(task_id)).is_running

    clock.advance(RENDER_SECONDS)
    done = await client.status(task_id)

    assert done.is_success
    assert done.consumed_credits == 65
    assert done.error_message is None
    [url] = done.response_urls
    assert url.startswith(sim.base_url.removesuffix("/api") + "/files/")
    dest = tmp_path / "clip.mp4"
    size = await client.download(url, dest, max_bytes=1_000_000)
    clip = dest.read_bytes()
    assert size == len(clip) == len(sim.clip_bytes)
    assert clip[4:8] == b"ftyp"


async def test_task_renders_on_the_real_clock(session, tmp_path) -> None:
    simulator = ProviderSimulator(api_key=API_KEY, render_seconds=0.05)
    await simulator.start()
    try:
        client = SeedanceClient(session, simulator.base_url, API_KEY, max_rps=0)
        task_id = await client.generate(FIVE_SILENT)
        assert (await client.status(task_id)).is_running
        await asyncio.sleep(0.06)
        assert (await client.status(task_id)).is_success
    finally:
        await simulator.stop()


async def test_failed_task_reports_the_message_and_refunds_the_account_once(
    sim: ProviderSimulator, client: SeedanceClient, clock: FakeClock
) -> None:
    balance = sim.balance
    sim.fail_tasks = "Content policy violation"
    task_id = await client.generate(FIVE_SILENT)
    assert sim.balance == balance - 65

    clock.advance(RENDER_SECONDS)
    first = await client.status(task_id)
    second = await client.status(task_id, use_post=True)

    assert first.is_failed and second.is_failed
    assert first.error_message == "Content policy violation"
    assert first.consumed_credits == 0
    assert first.response_urls == ()
    assert sim.balance == balance


async def test_one_task_can_be_failed_while_others_succeed(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    doomed = await client.generate(FIVE_SILENT)
    fine = await client.generate(FIVE_SILENT)
    sim.fail_task(doomed, "Upstream render error")
    sim.finish(doomed)
    sim.finish(fine)

    assert (await client.status(doomed)).error_message == "Upstream render error"
    assert (await client.status(fine)).is_success


async def test_unknown_status_value_counts_as_still_running(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    task_id = await client.generate(FIVE_SILENT)
    sim.statuses_override[task_id] = "QUEUED"

    task = await client.status(task_id)

    assert task.status == "QUEUED"
    assert task.is_running


async def test_wrong_key_raises_auth_error_without_retrying(
    sim: ProviderSimulator, make_client: MakeClient
) -> None:
    client = make_client(api_key="sk-wrong")

    with pytest.raises(ProviderAuthError) as caught:
        await client.generate(FIVE_SILENT)

    assert caught.value.status == 401
    assert caught.value.message == "Unauthorized"
    assert len(sim.requests) == 1
    assert not sim.requests[0].authorized
    assert sim.tasks == {}


async def test_out_of_credits_raises_and_creates_no_task(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    sim.balance = 100

    with pytest.raises(ProviderOutOfCredits) as caught:
        await client.generate(GenerationRequest("A long scene", "1:1", 10))

    assert (caught.value.status, caught.value.code) == (402, 402)
    assert "Insufficient credits" in str(caught.value)
    assert sim.balance == 100
    assert sim.tasks == {}
    assert len(sim.requests_to("generate")) == 1


async def test_validation_error_is_rejected_with_the_providers_reason(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await client.generate(GenerationRequest("x" * 1001, "16:9", 5))

    assert caught.value.status == 400
    assert "1000 characters" in caught.value.message
    assert len(sim.requests) == 1


async def test_unknown_task_is_rejected_as_not_found(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        await client.status(UNKNOWN_TASK)

    assert caught.value.status == 404
    assert caught.value.message == "Task not found"
    assert len(sim.requests) == 1


async def test_server_error_twice_then_success_is_retried(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    sim.fail_next("generate", 500, count=2)

    task_id = await client.generate(FIVE_SILENT)

    assert task_id in sim.tasks
    assert len(sim.requests_to("generate")) == 3


async def test_server_error_that_persists_raises_after_max_attempts(
    sim: ProviderSimulator, make_client: MakeClient
) -> None:
    client = make_client(max_attempts=3)
    sim.fail_next("status", 503, count=100)

    with pytest.raises(ProviderServerError) as caught:
        await client.status(UNKNOWN_TASK)

    assert caught.value.status == 503
    assert len(sim.requests_to("status")) == 3


async def test_error_code_in_an_http_200_body_is_raised_as_that_error(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    sim.fail_next("generate", 200, body_code=402)

    with pytest.raises(ProviderOutOfCredits) as caught:
        await client.generate(FIVE_SILENT)

    assert (caught.value.status, caught.value.code) == (200, 402)
    assert sim.tasks == {}


async def test_server_error_code_in_an_http_200_body_is_retried(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    task_id = await client.generate(FIVE_SILENT)
    sim.fail_next("status", 200, body_code=500)

    assert (await client.status(task_id)).is_running
    assert len(sim.requests_to("status")) == 2


@pytest.mark.parametrize("endpoint", ["generate", "status"])
async def test_non_json_answer_is_a_bad_response_and_not_retried(
    sim: ProviderSimulator, client: SeedanceClient, endpoint: str
) -> None:
    sim.malformed_next("any", kind="not_json")

    with pytest.raises(ProviderBadResponse):
        await call(client, endpoint)

    assert len(sim.requests) == 1


async def test_answer_without_task_id_is_a_bad_response(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    sim.malformed_next("generate", kind="missing_fields")

    with pytest.raises(ProviderBadResponse, match="task_id"):
        await client.generate(FIVE_SILENT)


async def test_status_without_status_field_is_a_bad_response(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    task_id = await client.generate(FIVE_SILENT)
    sim.malformed_next("status", kind="missing_fields")

    with pytest.raises(ProviderBadResponse, match="status"):
        await client.status(task_id)


@pytest.mark.parametrize("endpoint", ["generate", "status"])
async def test_fields_of_the_wrong_type_are_a_bad_response(
    sim: ProviderSimulator, client: SeedanceClient, endpoint: str
) -> None:
    sim.malformed_next("any", kind="wrong_types")

    with pytest.raises(ProviderBadResponse):
        await call(client, endpoint)


async def test_closed_port_raises_unavailable_after_retrying(
    make_client: MakeClient, closed_port: int
) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{closed_port}/api", max_attempts=3)

    with pytest.raises(ProviderUnavailable) as caught:
        await client.generate(FIVE_SILENT)

    assert not caught.value.request_sent
    assert "could not be reached" in str(caught.value)


async def test_slow_status_times_out_after_retrying(
    sim: ProviderSimulator, make_client: MakeClient
) -> None:
    client = make_client(request_timeout=0.1, max_attempts=2)
    sim.slow_seconds = 0.3

    with pytest.raises(ProviderTimeout):
        await client.status(UNKNOWN_TASK)

    assert len(sim.requests_to("status")) == 2


async def test_slow_generate_times_out_without_a_second_attempt(
    sim: ProviderSimulator, make_client: MakeClient
) -> None:
    client = make_client(request_timeout=0.1, max_attempts=4)
    sim.slow_seconds = 0.3

    with pytest.raises(ProviderTimeout):
        await client.generate(FIVE_SILENT)

    assert len(sim.requests_to("generate")) == 1


async def test_rate_limit_with_retry_after_is_waited_out_then_succeeds(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    sim.fail_next("generate", 429, retry_after=0.1)

    task_id = await client.generate(FIVE_SILENT)

    first, second = sim.requests_to("generate")
    assert second.received_at - first.received_at >= 0.09
    assert task_id in sim.tasks


async def test_rate_limit_that_persists_raises_rate_limited(
    sim: ProviderSimulator, make_client: MakeClient
) -> None:
    client = make_client(max_attempts=2)
    sim.fail_next("status", 429, count=5, retry_after=0.01)

    with pytest.raises(ProviderRateLimited) as caught:
        await client.status(UNKNOWN_TASK)

    assert caught.value.retry_after == 0.01
    assert len(sim.requests_to("status")) == 2


async def test_rate_limit_slows_every_request_of_the_client(
    sim: ProviderSimulator, client: SeedanceClient
) -> None:
    task_id = await client.generate(FIVE_SILENT)
    sim.fail_next("status", 429, retry_after=0.5)

    polling = asyncio.create_task(client.status(task_id))
    while not sim.requests_to("status"):  # noqa: ASYNC110 - the simulator has no event for it
        await asyncio.sleep(0.005)
    # Well inside the 0.5 s pause: the poll has had its 429, the pause is still on.
    await asyncio.sleep(0.05)
    [limited] = sim.requests_to("status")
    other = await client.generate(FIVE_SILENT)
    await polling

    [_, second_generate] = sim.requests_to("generate")
    assert other in sim.tasks
    assert second_generate.received_at - limited.received_at >= 0.49


async def test_max_rps_spaces_out_request_starts(
    sim: ProviderSimulator, make_client: MakeClient
) -> None:
    client = make_client(max_rps=20)
    task_id = await client.generate(FIVE_SILENT)

    await asyncio.gather(*(client.status(task_id) for _ in range(4)))

    times = sorted(r.received_at for r in sim.requests)
    # Four gaps of 1/20 s at the client; arrival times jitter, so allow one gap of slack.
    assert times[-1] - times[0] >= 3 * 0.05


async def test_a_rate_limit_halves_the_rate_and_spaces_later_requests_twice_as_far(
    sim: ProviderSimulator, make_client: MakeClient
) -> None:
    client = make_client(max_rps=50)
    task_id = await client.generate(FIVE_SILENT)
    sim.fail_next("status", 429, retry_after=0.05)

    # Seven polls: the first is refused once; eight successes would start the climb back.
    await asyncio.gather(*(client.status(task_id) for _ in range(7)))

    assert client.current_rps == 25
    _, *later = sim.requests_to("status")
    assert len(later) == 7
    # Six gaps of 1.02/25 s at the client (at the old rate, 0.12 s in all); arrival times
    # jitter, so allow one gap of slack.
    assert later[-1].received_at - later[0].received_at >= 5 * 1.02 / 25


async def test_rate_limits_on_requests_in_flight_together_halve_the_rate_once(
    sim: ProviderSimulator, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="provider.client")
    client = make_client(max_rps=50)
    task_id = await client.generate(FIVE_SILENT)
    # Answers held 0.2 s: all five polls, 20 ms apart, are sent before the first 429 is back.
    sim.slow_seconds = 0.2
    sim.fail_next("status", 429, retry_after=0.05, count=5)

    await asyncio.gather(*(client.status(task_id) for _ in range(5)))

    assert len(sim.requests_to("status")) == 10
    # One congestion signal: 25, not five halvings down to the floor of 50/16.
    assert client.current_rps == 25
    changes = [r.getMessage() for r in caplog.records if "request rate" in r.getMessage()]
    assert changes == ["Seedance request rate lowered to 25.00/s (ceiling 50.00/s)"]
    assert API_KEY not in caplog.text


async def test_the_rate_climbs_back_to_the_ceiling_in_steps_and_never_above(
    sim: ProviderSimulator, make_client: MakeClient
) -> None:
    client = make_client(max_rps=100)
    task_id = await client.generate(FIVE_SILENT)
    sim.fail_next("status", 429, retry_after=0.01)
    rates: list[float] = []

    for _ in range(60):
        await client.status(task_id)
        rates.append(client.current_rps)

    assert rates[0] == 50
    assert rates == sorted(rates)
    assert rates[-1] == 100 and max(rates) <= 100
    # Gradual: several steps on the way, none more than a quarter of the ceiling.
    steps = sorted(set(rates))
    assert len(steps) >= 4
    assert all(high - low <= 25 for low, high in itertools.pairwise(steps))
    # Back at the ceiling the client still paces itself to it: 19 gaps of 1.02/100 s, with
    # one gap of slack for arrival jitter.
    last = [r.received_at for r in sim.requests_to("status")[-20:]]
    assert last[-1] - last[0] >= 18 * 1.02 / 100


async def test_after_a_decrease_the_very_next_request_waits_the_new_interval(
    sim: ProviderSimulator, make_client: MakeClient
) -> None:
    client = make_client(max_rps=8)
    task_id = await client.generate(FIVE_SILENT)
    # A Retry-After shorter than either interval, so the pacing alone decides the gap.
    sim.fail_next("status", 429, retry_after=0.01)

    await client.status(task_id)

    assert client.current_rps == 4
    refused, retried = sim.requests_to("status")
    # The retry is due 1.02/4 s after the refused request, not the 1.02/8 s the old rate
    # had booked; a tenth of slack for arrival jitter.
    assert retried.received_at - refused.received_at >= 0.9 * 1.02 / 4


async def test_separate_rate_limits_never_take_the_rate_below_a_sixteenth_of_the_ceiling(
    sim: ProviderSimulator, make_client: MakeClient
) -> None:
    client = make_client(max_rps=320)
    task_id = await client.generate(FIVE_SILENT)
    rates: list[float] = []

    # Six bursts of congestion, one after another: each 429 answers a request sent after
    # the previous decrease, so each counts.
    for _ in range(6):
        sim.fail_next("status", 429, retry_after=0.001)
        await client.status(task_id)
        rates.append(client.current_rps)

    assert rates == [160, 80, 40, 20, 20, 20]
    assert len(sim.requests_to("status")) == 12


async def test_answers_to_requests_sent_before_a_decrease_do_not_win_the_rate_back(
    sim: ProviderSimulator, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="provider.client")
    client = make_client(max_rps=100)
    task_id = await client.generate(FIVE_SILENT)
    # Answers held 0.3 s: the nine polls, 10 ms apart, are all sent before the 429 on the
    # first one is back, so the other eight succeed only after the rate was halved.
    sim.slow_seconds = 0.3
    sim.fail_next("status", 429, retry_after=0.01)

    await asyncio.gather(*(client.status(task_id) for _ in range(9)))

    # Eight successes would earn a step, but those eight were paced at the old rate and
    # show nothing about the new one; only the retry was sent at 50 requests/s.
    assert len(sim.requests_to("status")) == 10
    assert client.current_rps == 50
    changes = [r.getMessage() for r in caplog.records if "request rate" in r.getMessage()]
    assert changes == ["Seedance request rate lowered to 50.00/s (ceiling 100.00/s)"]


async def test_a_rate_limit_holds_back_a_request_already_waiting_for_its_slot(
    sim: ProviderSimulator, make_client: MakeClient
) -> None:
    client = make_client(max_rps=5)
    task_id = await client.generate(FIVE_SILENT)
    sim.fail_next("status", 429, retry_after=0.35)

    # The second poll waits 1.02/5 s for its slot; the 429 on the first one is back long
    # before that and pauses requests for 0.35 s.
    await asyncio.gather(client.status(task_id), client.status(task_id))

    refused, waiting, _ = sim.requests_to("status")
    assert waiting.received_at - refused.received_at >= 0.33


async def test_a_generate_takes_the_next_turn_before_polls_already_waiting(
    sim: ProviderSimulator, client: SeedanceClient, make_client: MakeClient
) -> None:
    task_id = await client.generate(FIVE_SILENT)
    paced = make_client(max_rps=10)

    # All join the line in this order before any turn is due: the first poll goes at once,
    # four wait 1.02/10 s apart, and the generate comes last.
    polls = [asyncio.create_task(paced.status(task_id)) for _ in range(5)]
    generate = asyncio.create_task(paced.generate(FIVE_SILENT))
    await asyncio.gather(*polls, generate)

    sent = sim.requests[1:]
    assert [r.path for r in sent] == ["/api/status", "/api/generate"] + ["/api/status"] * 4
    assert generate.result() in sim.tasks
    # Going first does not mean going faster: five gaps of 1.02/10 s, one of slack.
    assert sent[-1].received_at - sent[0].received_at >= 4 * 1.02 / 10


async def test_generates_pass_a_waiting_poll_only_four_in_a_row(
    sim: ProviderSimulator, client: SeedanceClient, make_client: MakeClient
) -> None:
    task_id = await client.generate(FIVE_SILENT)
    paced = make_client(max_rps=20)

    # A poll goes at once, a second waits, then six generates join behind it.
    polls = [asyncio.create_task(paced.status(task_id)) for _ in range(2)]
    generates = [asyncio.create_task(paced.generate(FIVE_SILENT)) for _ in range(6)]
    await asyncio.gather(*polls, *generates)

    order = [r.path.removeprefix("/api/") for r in sim.requests[1:]]
    assert order == ["status"] + ["generate"] * 4 + ["status"] + ["generate"] * 2


async def test_a_poll_cancelled_while_waiting_does_not_hold_up_the_ones_behind_it(
    sim: ProviderSimulator, client: SeedanceClient, make_client: MakeClient
) -> None:
    task_id = await client.generate(FIVE_SILENT)
    paced = make_client(max_rps=10)
    polls = [asyncio.create_task(paced.status(task_id)) for _ in range(3)]
    await asyncio.sleep(0)

    # The second poll is first in line, watching the clock; the third waits to be told.
    polls[1].cancel()
    async with asyncio.timeout(2):
        await asyncio.gather(polls[0], polls[2])

    assert polls[1].cancelled()
    assert len(sim.requests_to("status")) == 2


async def test_api_key_never_appears_in_errors_or_debug_logs(
    sim: ProviderSimulator,
    make_client: MakeClient,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(max_attempts=2)
    errors: list[ProviderError] = []

    task_id = await client.generate(FIVE_SILENT)
    await client.status(task_id)
    await client.status(task_id, use_post=True)
    # A provider that echoes the key back in its message must not leak it either.
    sim.fail_next("generate", 401, message=f"Invalid API key {API_KEY}")
    sim.fail_next("status", 500, count=2, message=f"upstream refused Bearer {API_KEY}")
    for call in (client.generate(FIVE_SILENT), client.status(task_id)):
        with pytest.raises(ProviderError) as caught:
            await call
        errors.append(caught.value)
    sim.slow_seconds = 0.3
    with pytest.raises(ProviderTimeout) as timed_out:
        await make_client(request_timeout=0.05, max_attempts=1).status(task_id)
    errors.append(timed_out.value)
    sim.slow_seconds = 0
    unreachable = make_client(base_url=f"http://127.0.0.1:{closed_port}/api", max_attempts=1)
    with pytest.raises(ProviderUnavailable) as refused:
        await unreachable.generate(FIVE_SILENT)
    errors.append(refused.value)

    assert [type(e) for e in errors] == [
        ProviderAuthError,
        ProviderServerError,
        ProviderTimeout,
        ProviderUnavailable,
    ]
    for err in errors:
        assert API_KEY not in str(err)
        assert API_KEY not in repr(err)
        assert API_KEY not in err.message
    assert "[redacted]" in errors[0].message
    assert "Seedance POST /generate -> HTTP 200" in caplog.text
    assert API_KEY not in caplog.text
    assert all(API_KEY not in r.getMessage() for r in caplog.records)
    assert all(API_KEY not in str(r.query) for r in sim.requests)


async def test_generates_that_passed_a_poll_since_cancelled_do_not_count_against_the_next(
    sim: ProviderSimulator, client: SeedanceClient, make_client: MakeClient
) -> None:
    task_id = await client.generate(FIVE_SILENT)
    paced = make_client(max_rps=20)
    first_poll = asyncio.create_task(paced.status(task_id))
    waiting_poll = asyncio.create_task(paced.status(task_id))
    await asyncio.gather(*(paced.generate(FIVE_SILENT) for _ in range(3)), first_poll)
    # Three generates passed the waiting poll; it gives up before its turn.
    waiting_poll.cancel()
    await asyncio.gather(waiting_poll, return_exceptions=True)
    mark = len(sim.requests)

    later_poll = asyncio.create_task(paced.status(task_id))
    await asyncio.sleep(0)
    await asyncio.gather(*(paced.generate(FIVE_SILENT) for _ in range(4)), later_poll)

    order = [r.path.removeprefix("/api/") for r in sim.requests[mark:]]
    assert order == ["generate"] * 4 + ["status"]


async def test_a_raised_rate_applies_to_the_request_already_waiting(
    sim: ProviderSimulator, make_client: MakeClient
) -> None:
    client = make_client(max_rps=80)
    task_id = await client.generate(FIVE_SILENT)
    # Four separate rate limits bring the rate to its floor, 5/s (0.204 s apart).
    for _ in range(4):
        sim.fail_next("status", 429, retry_after=0.01)
        await client.status(task_id)
    assert client.current_rps == 5

    async def poll_until_raised() -> None:
        while client.current_rps == 5:
            await client.status(task_id)

    # Two pollers: when the eighth answer raises the rate, the other one is already waiting.
    await asyncio.gather(poll_until_raised(), poll_until_raised())
    assert client.current_rps == 15
    times = [r.received_at for r in sim.requests_to("status")]
    # The last request waited for its turn when the rate rose: it goes one new interval
    # (0.068 s) after the one before, not one old interval (0.204 s).
    assert times[-1] - times[-2] < 0.15, times[-3:]
