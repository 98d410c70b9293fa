"""Requests to and results from the Seedance 1.5 Pro video API."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ASPECT_RATIOS",
    "DURATIONS",
    "MAX_PROMPT_LENGTH",
    "PRICES",
    "GenerationRequest",
    "TaskStatus",
    "price",
]

# Credits the provider charges per preset, keyed by (duration in seconds, sound).
PRICES: dict[tuple[int, bool], int] = {
    (5, False): 65,
    (10, False): 130,
    (5, True): 130,
    (10, True): 260,
}
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
DURATIONS = (5, 10)
MAX_PROMPT_LENGTH = 1000


def price(duration: int, sound: bool) -> int:
    """Return the credits the provider charges for a preset."""
    try:
        return PRICES[(duration, sound)]
    except KeyError:
        raise ValueError(f"no preset for a {duration} s clip (sound={sound})") from None


@dataclass(frozen=True)
class GenerationRequest:
    """A text-to-video or image-to-video task to create."""

    prompt: str
    aspect_ratio: str
    duration: int
    sound: bool = False
    image_urls: tuple[str, ...] = ()

    @property
    def credits(self) -> int:
        """Return the credits the provider will charge for this request."""
        return price(self.duration, self.sound)

    def to_json(self) -> dict[str, object]:
        """Return the JSON body for POST /generate."""
        body: dict[str, object] = {
            "prompt": self.prompt,
            "aspect_ratio": self.aspect_ratio,
            # The API wants the duration as a string; a number is rejected.
            "duration": str(self.duration),
            "sound": self.sound,
        }
        if self.image_urls:
            body["image_urls"] = list(self.image_urls)
        return body


@dataclass(frozen=True)
class TaskStatus:
    """A task's state as the provider reported it."""

    task_id: str
    status: str
    response_urls: tuple[str, ...]
    consumed_credits: int | None
    error_message: str | None
    created_at: str | None

    @property
    def is_success(self) -> bool:
        """Return whether the clip is ready."""
        return self.status == "SUCCESS"

    @property
    def is_failed(self) -> bool:
        """Return whether the provider gave up on the task."""
        return self.status == "FAILED"

    @property
    def is_running(self) -> bool:
        """Return whether the task is still rendering (any unknown status counts)."""
        return not (self.is_success or self.is_failed)
