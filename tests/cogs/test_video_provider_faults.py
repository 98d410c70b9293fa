"""What a member sees when the provider refuses or fails a submission: a refund and a reason."""

from __future__ import annotations

import pytest

from db import credits
from tests.harness import Harness

EPHEMERAL = 64


async def submit(harness: Harness) -> dict[str, object]:
    return await harness.run("generate", options={"prompt": "Drone shot over neon night market"})


async def assert_refunded(harness: Harness, state: str) -> None:
    [task] = await harness.tasks()
    assert task.state.value == state
    assert await harness.balance() == 260
    entries = await credits.ledger_for(harness.bot.db, harness.fake.guild_id, harness.fake.user_id)
    assert [e.reason for e in entries] == ["welcome", "charge", "refund"]


@pytest.mark.parametrize(
    ("status", "says", "state"),
    [
        (402, "out of credits", "rejected"),
        (400, "refused this request", "rejected"),
        (503, "unavailable", "rejected"),
    ],
)
async def test_a_refused_submission_is_refunded_and_explained(
    harness: Harness, status: int, says: str, state: str
) -> None:
    harness.simulator.fail_next("generate", status, count=10)
    payload = await submit(harness)
    await assert_refunded(harness, state)
    [_card, notice] = harness.replies(payload)
    assert notice["flags"] & EPHEMERAL and says in notice["content"]
    edit = harness.fake.calls("PATCH", r"/messages/@original$")[-1]
    assert edit.json["embeds"][0]["title"] == "❌ Not started — credits refunded"


@pytest.mark.allow_errors
async def test_a_refused_api_key_is_blamed_on_the_setup_not_the_member(harness: Harness) -> None:
    harness.simulator.fail_next("generate", 401)
    payload = await submit(harness)
    await assert_refunded(harness, "rejected")
    notice = harness.replies(payload)[-1]
    assert "not set up correctly" in notice["content"]


async def test_a_server_error_then_success_makes_one_task(harness: Harness) -> None:
    harness.simulator.fail_next("generate", 500, count=2)
    await submit(harness)
    [task] = await harness.tasks()
    assert task.state.value in ("rendering", "delivering", "done")
    assert len(harness.simulator.requests_to("generate")) == 3
    assert len(harness.simulator.tasks) == 1
    assert await harness.balance() == 195


async def test_an_error_code_inside_an_http_200_is_a_refusal(harness: Harness) -> None:
    harness.simulator.fail_next("generate", 200, body_code=402)
    await submit(harness)
    await assert_refunded(harness, "rejected")


async def test_no_answer_in_time_refunds_and_records_the_task_as_uncertain(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.simulator.slow_seconds = 1.5  # the client gives up after 1 s
    payload = await submit(harness)
    await assert_refunded(harness, "uncertain")
    assert len(harness.simulator.requests_to("generate")) == 1  # never resent
    assert "did not answer in time" in harness.replies(payload)[-1]["content"]
    assert any("may have started" in r.getMessage() for r in caplog.records)


async def test_an_unreadable_answer_to_a_submission_is_uncertain(harness: Harness) -> None:
    harness.simulator.malformed_next("generate")
    await submit(harness)
    await assert_refunded(harness, "uncertain")


@pytest.mark.allow_errors
async def test_a_failure_after_the_charge_refunds_at_once(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from db import tasks as task_store

    async def broken_set_card(*args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(task_store, "set_card", broken_set_card)
    payload = await submit(harness)
    await assert_refunded(harness, "rejected")
    assert harness.simulator.requests_to("generate") == []
    notice = harness.replies(payload)[-1]
    assert notice["flags"] & EPHEMERAL
    assert "Your 65 credits are back (balance: 260)" in notice["content"]


async def test_a_refund_notice_discord_will_not_take_does_not_break_the_command(
    harness: Harness,
) -> None:
    """Found by the soak: the private 'credits are back' follow-up met five 429s in a row."""
    harness.simulator.malformed_next("generate")
    harness.fake.fail_next("POST", r"^/webhooks/", 429, count=5, retry_after=0.01)
    await submit(harness)
    await assert_refunded(harness, "uncertain")  # and the fixture sees no ERROR in the log


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateway_error_on_submission_is_not_resent_and_is_uncertain(
    harness: Harness, status: int
) -> None:
    """A proxy's 502/504 may hide a task the provider did create: resending could bill twice."""
    harness.simulator.fail_next("generate", status)
    await submit(harness)
    await assert_refunded(harness, "uncertain")
    assert len(harness.simulator.requests_to("generate")) == 1
