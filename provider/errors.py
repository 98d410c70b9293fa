"""Typed errors raised by the Seedance client."""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ClipTooLarge",
    "ProviderAuthError",
    "ProviderBadResponse",
    "ProviderError",
    "ProviderOutOfCredits",
    "ProviderRateLimited",
    "ProviderRejected",
    "ProviderServerError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "error_for_code",
]

MAX_MESSAGE_LENGTH = 300


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= MAX_MESSAGE_LENGTH:
        return text
    return text[: MAX_MESSAGE_LENGTH - 1] + "…"


class ProviderError(Exception):
    """Raise when the video provider did not do what was asked."""

    summary: ClassVar[str] = "The video provider returned an error"

    def __init__(
        self, message: str = "", *, status: int | None = None, code: int | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.message = _truncate(message)
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = self.summary
        if self.status is not None:
            text += f" (HTTP {self.status})"
        elif self.code is not None:
            text += f" (code {self.code})"
        if self.message and self.message.rstrip(".").lower() != self.summary.lower():
            text += f": {self.message}"
        if not text.endswith((".", "!", "?", "…")):
            text += "."
        return text


class ProviderAuthError(ProviderError):
    """Raise when the provider refuses the API key (401): a configuration error."""

    summary = "The video provider rejected the API key"


class ProviderOutOfCredits(ProviderError):
    """Raise when the provider account cannot pay for the task (402)."""

    summary = "The video provider account is out of credits"


class ProviderRateLimited(ProviderError):
    """Raise when the provider asks the client to slow down (429)."""

    summary = "The video provider is rate limiting requests"

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status, code=code)


class ProviderServerError(ProviderError):
    """Raise when the provider reports a transient fault (500 and other 5xx)."""

    summary = "The video provider had an internal error"


class ProviderRejected(ProviderError):
    """Raise when the provider refuses the request (other 4xx: validation, unknown task)."""

    summary = "The video provider rejected the request"


class ProviderBadResponse(ProviderError):
    """Raise when the provider's answer is not the documented JSON."""

    summary = "The video provider sent an answer that could not be understood"


class ProviderUnavailable(ProviderError):
    """Raise when the provider cannot be reached (refused, DNS, reset)."""

    summary = "The video provider could not be reached"

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        code: int | None = None,
        request_sent: bool = False,
    ) -> None:
        # True when the connection broke after the request went out, so the
        # provider may have acted on it (a task may exist and be charged).
        self.request_sent = request_sent
        super().__init__(message, status=status, code=code)


class ProviderTimeout(ProviderError):
    """Raise when the provider did not answer in time; the request may have taken effect."""

    summary = "The video provider did not answer in time"


class ClipTooLarge(ProviderError):
    """Raise when a clip is bigger than the download limit."""

    summary = "The generated clip is larger than allowed"

    def __init__(
        self,
        message: str = "",
        *,
        size: int | None = None,
        status: int | None = None,
        code: int | None = None,
    ) -> None:
        self.size = size
        super().__init__(message, status=status, code=code)


def error_for_code(
    code: int,
    message: str = "",
    *,
    status: int | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Return the typed error for an HTTP status or body code."""
    if code == 401:
        return ProviderAuthError(message, status=status, code=code)
    if code == 402:
        return ProviderOutOfCredits(message, status=status, code=code)
    if code == 429:
        return ProviderRateLimited(message, status=status, code=code, retry_after=retry_after)
    if 500 <= code <= 599:
        return ProviderServerError(message, status=status, code=code)
    if 400 <= code <= 499:
        return ProviderRejected(message, status=status, code=code)
    return ProviderBadResponse(message or f"unexpected code {code}", status=status, code=code)
