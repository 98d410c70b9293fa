from __future__ import annotations

import pytest

from provider.errors import (
    ClipTooLarge,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderOutOfCredits,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
    error_for_code,
)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (401, ProviderAuthError),
        (402, ProviderOutOfCredits),
        (429, ProviderRateLimited),
        (500, ProviderServerError),
        (503, ProviderServerError),
        (400, ProviderRejected),
        (404, ProviderRejected),
        (1001, ProviderBadResponse),
    ],
)
def test_codes_map_to_typed_errors(code: int, kind: type[ProviderError]) -> None:
    err = error_for_code(code, "boom", status=code)

    assert type(err) is kind
    assert (err.status, err.code, err.message) == (code, code, "boom")


def test_error_text_is_one_short_sentence_with_the_status() -> None:
    err = ProviderOutOfCredits("Insufficient credits", status=402, code=402)

    assert (
        str(err) == "The video provider account is out of credits (HTTP 402): Insufficient credits."
    )


def test_long_provider_messages_are_truncated() -> None:
    err = ProviderRejected("x" * 5000, status=400)

    assert len(err.message) == 300
    assert len(str(err)) < 400


def test_errors_without_a_message_still_read_as_a_sentence() -> None:
    assert str(ProviderTimeout()) == "The video provider did not answer in time."
    assert str(ProviderUnavailable()) == "The video provider could not be reached."


def test_special_errors_carry_their_details() -> None:
    assert ProviderRateLimited("slow down", status=429, retry_after=1.5).retry_after == 1.5
    assert ClipTooLarge("too big", size=123).size == 123
    assert ProviderUnavailable("reset", request_sent=True).request_sent is True
