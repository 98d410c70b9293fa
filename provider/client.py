"""Client for the Seedance 1.5 Pro asynchronous video API."""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import logging
import math
import pathlib
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import IO, Any, Protocol

import aiohttp
import yarl

from provider.errors import (
    ClipTooLarge,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
    error_for_code,
)
from provider.models import GenerationRequest, TaskStatus

__all__ = ["SeedanceClient", "SharedPace"]

log = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
USER_AGENT = "seedance-video-bot"
MAX_RETRY_AFTER = 60.0
# A clip of a few MB from the provider's CDN; a stalled download is retried by the poller.
DOWNLOAD_TIMEOUT_SECONDS = 120.0
GATEWAY_ERRORS = frozenset({502, 504})
# Adaptive pacing (AIMD): a 429 halves the rate, accepted requests win it back step by step.
# The floor is four halvings below the ceiling (0.31 requests/s at the default 5): a provider
# that refuses even that is down or the ceiling is set wrong, and Retry-After pauses cover it;
# a lower floor would only make the climb back longer.
RATE_FLOOR_FRACTION = 1 / 16
# Each step gives back an eighth of the ceiling, so a halved rate is whole again after four
# steps. A step is earned by RATE_STEP_SUCCESSES requests accepted at the current rate: a
# count rather than a time, so an idle client does not drift back to a rate nobody tried.
RATE_STEP_FRACTION = 1 / 8
RATE_STEP_SUCCESSES = 8
# A generate has a member waiting on it, a status poll only a render that is not due yet, so
# a waiting generate takes the next turn before waiting polls. Generates are rare (each one
# costs credits), so this cap almost never bites; it is there so that a flood of them can
# delay deliveries by a few turns but never hold the polls back for good.
MAX_GENERATES_AHEAD_OF_A_POLL = 4


class SharedPace(Protocol):
    """Request turns shared with every other process that calls the provider with this key.

    Times are wall-clock seconds (time.time()), the one clock processes on different
    machines agree on.
    """

    async def take(self, gap: float) -> float:
        """Take the next turn and hold the one after it `gap` seconds away; return its time."""
        ...

    async def hold_off(self, until: float) -> None:
        """Let no process send a request before `until` (the provider asked to slow down)."""
        ...


class SeedanceClient:
    """Talk to the Seedance API over one shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: str,
        *,
        request_timeout: float = 30.0,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        max_rps: float = 5.0,
        rng: random.Random | None = None,
        on_answer: Callable[[str, str], None] | None = None,
        shared_pace: SharedPace | None = None,
    ) -> None:
        self._session = session
        # With several processes on one key, PROVIDER_MAX_RPS holds for all of them together:
        # each request also takes a turn from the shared pace after this client's own.
        self._shared_pace = shared_pace
        # Told (endpoint, outcome) after every attempt: the code answered, or "error".
        self._on_answer = on_answer
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._max_attempts = max(1, max_attempts)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_rps = max(0.0, max_rps)
        self._rate = self._max_rps
        self._min_interval = _interval(self._rate)
        # Jitter only spreads retries out; it needs no cryptographic strength.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        # Requests waiting for a turn, each line in arrival order. A waiter's event is set
        # when it may have become first in line; only the first one watches the clock.
        self._waiting_generates: deque[asyncio.Event] = deque()
        self._waiting_polls: deque[asyncio.Event] = deque()
        # Generates that took a turn while a poll was waiting, since the last poll's turn.
        self._generates_ahead = 0
        self._next_slot = 0.0
        # A 429 pushes this forward so that every request of this client waits.
        self._not_before = 0.0
        # Every turn _wait_turn grants gets a ticket number, so that an answer can be told
        # apart by whether its request was paced at the current rate or an older one. The
        # two marks hold the last ticket granted before the latest rate change and the latest
        # decrease; `_accepted` counts successes at the current rate towards the next step.
        self._tickets = 0
        self._rate_set_after = 0
        self._lowered_after = 0
        self._accepted = 0

    @property
    def base_url(self) -> str:
        """Return the API base URL without a trailing slash."""
        return self._base_url

    @property
    def current_rps(self) -> float:
        """Return the request rate the client paces itself to now (0 when unlimited)."""
        return self._rate

    async def generate(self, request: GenerationRequest) -> str:
        """Create a task and return the provider's task id."""
        # No idempotency key exists, so a timed-out generate is never resent:
        # the first attempt may have created (and charged) a task.
        data = await self.request(
            "POST", "/generate", json=request.to_json(), idempotent=False, urgent=True
        )
        task_id = data.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise ProviderBadResponse("the answer to generate has no task_id", status=200)
        log.info("Created Seedance task %s", task_id)
        return task_id

    async def status(self, task_id: str, *, use_post: bool = False) -> TaskStatus:
        """Read a task's state (GET with a query string, or POST with a JSON body)."""
        if use_post:
            data = await self.request("POST", "/status", json={"task_id": task_id}, idempotent=True)
        else:
            data = await self.request(
                "GET", "/status", params={"task_id": task_id}, idempotent=True
            )
        return _parse_status(task_id, data)

    async def download(
        self,
        url: str,
        dest: pathlib.Path,
        *,
        max_bytes: int,
    ) -> int:
        """Stream a clip to dest and return its size in bytes."""
        target = yarl.URL(url)
        if target.scheme not in ("http", "https") or not target.host:
            raise ProviderBadResponse("the clip address is not an http(s) URL")
        # No Authorization header: clip URLs live on a CDN host, not the API.
        try:
            async with self._session.get(
                target, timeout=aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_SECONDS)
            ) as resp:
                log.debug("GET clip %s -> HTTP %s", target.path, resp.status)
                if resp.status != 200:
                    raise _download_error(resp.status)
                declared = resp.content_length
                if declared is not None and declared > max_bytes:
                    raise ClipTooLarge(
                        f"the clip is {declared} bytes, the limit is {max_bytes}", size=declared
                    )
                size = await self._write_stream(resp, dest, max_bytes, declared)
        except ProviderError as exc:
            self._observe("download", exc)
            raise
        except TimeoutError as exc:
            self._observe("download", None, failed=True)
            raise ProviderTimeout("the clip download took too long") from exc
        except aiohttp.ClientError as exc:
            self._observe("download", None, failed=True)
            raise ProviderUnavailable(
                self._scrub(f"the clip download failed: {exc}"), request_sent=True
            ) from exc
        self._observe("download", None)
        return size

    async def _write_stream(
        self,
        resp: aiohttp.ClientResponse,
        dest: pathlib.Path,
        max_bytes: int,
        declared: int | None,
    ) -> int:
        fh: IO[bytes] = await asyncio.to_thread(dest.open, "wb")
        written = 0
        try:
            async for chunk in resp.content.iter_chunked(CHUNK_SIZE):
                written += len(chunk)
                if written > max_bytes:
                    raise ClipTooLarge(f"the clip is more than {max_bytes} bytes", size=declared)
                await asyncio.to_thread(fh.write, chunk)
            await asyncio.to_thread(fh.close)
        except BaseException:
            # Clean up synchronously: this also runs while the task is being cancelled.
            fh.close()
            with contextlib.suppress(OSError):
                dest.unlink()  # noqa: ASYNC240
            raise
        log.debug("Downloaded %d bytes to %s", written, dest)
        return written

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Mapping[str, object] | None = None,
        idempotent: bool,
        urgent: bool = False,
    ) -> dict[str, object]:
        """Send one API call with rate limiting and retries; return its data object.

        An urgent call (a member's generate) takes its turns before waiting non-urgent ones.
        """
        url = f"{self._base_url}/{path.lstrip('/')}"
        attempt = 1
        while True:
            ticket = await self._wait_turn(urgent=urgent)
            await self._wait_shared_turn()
            try:
                data = await self._send(method, url, path, params, json, attempt, ticket)
            except ProviderError as exc:
                self._observe(path.strip("/"), exc)
                if attempt >= self._max_attempts or not self._should_retry(exc, idempotent):
                    raise
                delay = self._retry_delay(exc, attempt)
                log.warning(
                    "Seedance %s %s failed (%s); retrying in %.2fs (attempt %d of %d)",
                    method,
                    path,
                    exc,
                    delay,
                    attempt + 1,
                    self._max_attempts,
                )
                if not isinstance(exc, ProviderRateLimited):
                    await asyncio.sleep(delay)
                elif self._shared_pace is not None:
                    # The other processes hold off too: the provider counts the key, not us.
                    await self._shared_pace.hold_off(time.time() + delay)
                # A 429 already moved the shared "not before" mark; _wait_turn honours it.
                attempt += 1
            else:
                self._observe(path.strip("/"), None)
                self._raise_rate(ticket)
                return data

    async def _send(
        self,
        method: str,
        url: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, object] | None,
        attempt: int,
        ticket: int,
    ) -> dict[str, object]:
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                json=body,
                headers=headers,
                timeout=self._timeout,
            ) as resp:
                raw = await resp.read()
                log.debug(
                    "Seedance %s %s -> HTTP %s (attempt %d of %d)",
                    method,
                    path,
                    resp.status,
                    attempt,
                    self._max_attempts,
                )
                return self._parse(resp.status, resp.headers.get("Retry-After"), raw)
        except ProviderError as exc:
            if isinstance(exc, ProviderRateLimited):
                self._slow_down(exc, attempt)
                self._lower_rate(ticket)
            raise
        except aiohttp.ConnectionTimeoutError as exc:
            raise ProviderUnavailable("timed out connecting to the provider") from exc
        except aiohttp.ClientConnectorError as exc:
            raise ProviderUnavailable(
                self._scrub(f"could not connect to the provider: {exc.os_error}")
            ) from exc
        except TimeoutError as exc:
            log.debug("Seedance %s %s timed out (attempt %d)", method, path, attempt)
            raise ProviderTimeout(f"no answer within {self._timeout.total:g} seconds") from exc
        except aiohttp.ClientError as exc:
            raise ProviderUnavailable(
                self._scrub(f"the connection failed: {type(exc).__name__}: {exc}"),
                request_sent=True,
            ) from exc

    def _parse(self, http_status: int, retry_after: str | None, raw: bytes) -> dict[str, object]:
        body = _decode_json(raw)
        code = body.get("code") if body is not None else None
        message = body.get("message") if body is not None else None
        text = self._scrub(message) if isinstance(message, str) else ""
        body_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        wait = _parse_retry_after(retry_after)

        if not 200 <= http_status <= 299:
            if http_status < 400:
                raise ProviderBadResponse(f"unexpected HTTP {http_status}", status=http_status)
            err = error_for_code(http_status, text, status=http_status, retry_after=wait)
            err.code = body_code
            raise err
        if body is None:
            raise ProviderBadResponse("the answer is not a JSON object", status=http_status)
        if body_code is None:
            raise ProviderBadResponse("the answer has no integer code", status=http_status)
        if body_code != 200:
            err = error_for_code(body_code, text, retry_after=wait)
            err.status = http_status
            raise err
        data = body.get("data")
        if not isinstance(data, dict):
            raise ProviderBadResponse("the answer has no data object", status=http_status)
        return data

    def _should_retry(self, exc: ProviderError, idempotent: bool) -> bool:
        if isinstance(exc, ProviderRateLimited):
            return True
        if isinstance(exc, ProviderServerError):
            # A gateway error (502, 504) comes from a proxy that may have passed the request
            # on: resending a generate could create, and bill, a second task.
            return idempotent or exc.status not in GATEWAY_ERRORS
        if isinstance(exc, ProviderUnavailable):
            # A connection that broke after sending is as ambiguous as a timeout.
            return idempotent or not exc.request_sent
        if isinstance(exc, ProviderTimeout):
            return idempotent
        return False

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._backoff_cap, self._backoff_base * 2.0 ** (attempt - 1))
        return ceiling * self._rng.random()

    def _retry_delay(self, exc: ProviderError, attempt: int) -> float:
        if isinstance(exc, ProviderRateLimited):
            return max(0.0, self._not_before - time.monotonic())
        return self._backoff(attempt)

    def _slow_down(self, exc: ProviderRateLimited, attempt: int) -> None:
        delay = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
        # A provider asking for an hour would stall every task; a minute is the most we honour.
        delay = min(delay, MAX_RETRY_AFTER)
        self._not_before = max(self._not_before, time.monotonic() + delay)
        log.info("Seedance asked to slow down; pausing requests for %.2fs", delay)

    def _lower_rate(self, ticket: int) -> None:
        """Halve the rate after a 429, once per burst of congestion."""
        if self._max_rps <= 0:
            return
        if ticket <= self._lowered_after:
            # Sent before the last decrease: the same congestion, already answered. Without
            # this, eight requests in flight together would cut the rate to the floor.
            return
        self._lowered_after = self._tickets
        floor = self._max_rps * RATE_FLOOR_FRACTION
        self._set_rate(max(floor, self._rate / 2), "lowered")

    def _raise_rate(self, ticket: int) -> None:
        """Count an accepted request and step the rate up after enough of them."""
        if self._max_rps <= 0 or self._rate >= self._max_rps:
            return
        # Only a request sent at the current rate shows the provider accepts that rate.
        if ticket <= self._rate_set_after:
            return
        self._accepted += 1
        if self._accepted >= RATE_STEP_SUCCESSES:
            step = self._max_rps * RATE_STEP_FRACTION
            self._set_rate(min(self._max_rps, self._rate + step), "raised")

    def _set_rate(self, rate: float, change: str) -> None:
        self._rate_set_after = self._tickets
        self._accepted = 0
        if rate == self._rate:
            return
        interval = _interval(rate)
        # The next turn is due one new interval after the last request, not one old one.
        self._next_slot += interval - self._min_interval
        self._rate, self._min_interval = rate, interval
        log.info("Seedance request rate %s to %.2f/s (ceiling %.2f/s)", change, rate, self._max_rps)
        # A raise may have moved the next turn earlier than the first in line is sleeping to.
        first = self._first_in_line()
        if first is not None:
            first.set()

    async def _wait_turn(self, *, urgent: bool) -> int:
        """Wait until this client may start another request; return the turn's ticket."""
        line = self._waiting_generates if urgent else self._waiting_polls
        woken = asyncio.Event()
        line.append(woken)
        try:
            while True:
                woken.clear()
                now = time.monotonic()
                start = max(now, self._not_before, self._next_slot)
                if self._first_in_line() is not woken:
                    await woken.wait()
                elif start > now:
                    # Sleep, then look again: a 429 meanwhile may have paused requests or
                    # lowered the rate, and it must hold for the very next request; a generate
                    # may have come to take this turn; a raised rate wakes it early.
                    # (asyncio.timeout, unlike wait_for on 3.11, never swallows a cancellation.)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(start - now):
                            await woken.wait()
                else:
                    break
            self._next_slot = now + self._min_interval
            self._tickets += 1
            if not urgent:
                self._generates_ahead = 0
            elif self._waiting_polls:
                self._generates_ahead += 1
            return self._tickets
        finally:
            # Leaving, with a turn or cancelled: whoever is first now must start watching.
            line.remove(woken)
            if not self._waiting_polls:
                # Generates count against a waiting poll only while one is waiting.
                self._generates_ahead = 0
            first = self._first_in_line()
            if first is not None:
                first.set()

    async def _wait_shared_turn(self) -> None:
        """Wait for this request's turn among every process sharing the key."""
        if self._shared_pace is None or self._max_rps <= 0:
            return
        # Paced at this client's own rate, so a 429 that halved it slows its share too.
        start = await self._shared_pace.take(self._min_interval)
        delay = start - time.time()
        if delay > 0:
            await asyncio.sleep(delay)

    def _first_in_line(self) -> asyncio.Event | None:
        if self._waiting_generates and (
            not self._waiting_polls or self._generates_ahead < MAX_GENERATES_AHEAD_OF_A_POLL
        ):
            return self._waiting_generates[0]
        if self._waiting_polls:
            return self._waiting_polls[0]
        return None

    def _observe(self, endpoint: str, exc: ProviderError | None, *, failed: bool = False) -> None:
        if self._on_answer is None:
            return
        if exc is None:
            outcome = "error" if failed else "200"
        else:
            # The body's code where it differs from the HTTP status (an error inside a 200).
            answered = exc.code or exc.status
            outcome = str(answered) if answered else "error"
        self._on_answer(endpoint, outcome)

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "[redacted]")
        return text


def _interval(rate: float) -> float:
    # A hair over 1/rate: requests exactly 1/rate apart put rate + 1 of them in a closed
    # one-second window, one more than the ceiling promises.
    return 1.02 / rate if rate > 0 else 0.0


def _decode_json(raw: bytes) -> dict[str, Any] | None:
    try:
        body = jsonlib.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _download_error(status: int) -> ProviderError:
    if status >= 500:
        return ProviderServerError("the clip host failed", status=status)
    if status >= 400:
        return ProviderRejected("the clip could not be fetched", status=status)
    return ProviderBadResponse("the clip host gave an unexpected answer", status=status)


def _optional_int(data: Mapping[str, object], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProviderBadResponse(f"the status field {key} is not an integer", status=200)
    return value


def _optional_str(data: Mapping[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProviderBadResponse(f"the status field {key} is not a string", status=200)
    return value


def _parse_status(task_id: str, data: Mapping[str, object]) -> TaskStatus:
    status = data.get("status")
    if not isinstance(status, str) or not status:
        raise ProviderBadResponse("the status answer has no status", status=200)
    response = data.get("response")
    urls: tuple[str, ...]
    if response is None:
        urls = ()
    elif isinstance(response, str):
        urls = (response,)
    elif isinstance(response, list) and all(isinstance(u, str) for u in response):
        urls = tuple(response)
    else:
        raise ProviderBadResponse("the status answer has a malformed response list", status=200)
    reported_id = data.get("task_id")
    return TaskStatus(
        task_id=reported_id if isinstance(reported_id, str) and reported_id else task_id,
        status=status,
        response_urls=urls,
        consumed_credits=_optional_int(data, "consumed_credits"),
        error_message=_optional_str(data, "error_message"),
        created_at=_optional_str(data, "created_at"),
    )
