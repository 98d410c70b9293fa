from __future__ import annotations

import pytest

from provider.models import PRICES, GenerationRequest, TaskStatus, price


@pytest.mark.parametrize(
    ("duration", "sound", "credits"),
    [(5, False, 65), (10, False, 130), (5, True, 130), (10, True, 260)],
)
def test_price_matches_the_provider_table(duration: int, sound: bool, credits: int) -> None:
    assert price(duration, sound) == credits
    assert GenerationRequest("x", "16:9", duration, sound).credits == credits


def test_price_refuses_a_preset_the_provider_does_not_sell() -> None:
    assert len(PRICES) == 4
    with pytest.raises(ValueError, match="7 s"):
        price(7, False)


def test_request_json_sends_duration_as_a_string_and_omits_empty_images() -> None:
    body = GenerationRequest("Drone shot over a night market", "16:9", 10).to_json()

    assert body == {
        "prompt": "Drone shot over a night market",
        "aspect_ratio": "16:9",
        "duration": "10",
        "sound": False,
    }


def test_request_json_lists_reference_images() -> None:
    request = GenerationRequest(
        "Make the cat wave", "1:1", 5, sound=True, image_urls=("https://img.example/cat.png",)
    )

    assert request.to_json() == {
        "prompt": "Make the cat wave",
        "aspect_ratio": "1:1",
        "duration": "5",
        "sound": True,
        "image_urls": ["https://img.example/cat.png"],
    }


@pytest.mark.parametrize(
    ("status", "success", "failed", "running"),
    [
        ("SUCCESS", True, False, False),
        ("FAILED", False, True, False),
        ("IN_PROGRESS", False, False, True),
        ("QUEUED", False, False, True),
    ],
)
def test_task_status_flags(status: str, success: bool, failed: bool, running: bool) -> None:
    task = TaskStatus("sd15p_0", status, (), None, None, None)

    assert (task.is_success, task.is_failed, task.is_running) == (success, failed, running)
