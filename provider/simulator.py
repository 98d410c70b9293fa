"""An in-process simulator of the Seedance 1.5 Pro API, for the sandbox mode and the tests."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Literal

from aiohttp import web

from provider.models import ASPECT_RATIOS, MAX_PROMPT_LENGTH, PRICES

__all__ = ["Endpoint", "ProviderSimulator", "RecordedRequest", "SimTask", "main"]

log = logging.getLogger(__name__)

Endpoint = Literal["generate", "status", "any"]
Malformation = Literal["not_json", "missing_fields", "wrong_types"]
# What a random fault does to one /api request (see ProviderSimulator.random_faults).
RANDOM_FAULT_KINDS: tuple[str, ...] = (
    "http_500",
    "http_503",
    "http_429_retry_after",
    "http_429",
    "code_500_in_body",
    "slow",
    "not_json",
    "missing_fields",
    "wrong_types",
)
_MALFORMATIONS: dict[str, Malformation] = {
    "not_json": "not_json",
    "missing_fields": "missing_fields",
    "wrong_types": "wrong_types",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DEFAULT_MESSAGES = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Insufficient credits",
    404: "Not found",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
}


def load_sample_clip() -> bytes:
    """Return the bytes of the small mp4 clip shipped with the package."""
    return resources.files("provider").joinpath("sample.mp4").read_bytes()


@dataclass(frozen=True)
class RecordedRequest:
    """One request the simulator received (the API key itself is never kept)."""

    method: str
    path: str
    query: dict[str, str]
    json: object | None
    authorized: bool
    had_auth_header: bool
    received_at: float


@dataclass
class SimTask:
    """A task the simulator is rendering or has rendered."""

    task_id: str
    request: dict[str, object]
    price: int
    started_at: float
    render_seconds: float
    created_at: str
    fail_message: str | None = None
    finished: bool = False
    refunded: bool = False


@dataclass
class _Fault:
    endpoint: Endpoint
    remaining: int
    http_status: int = 200
    body_code: int | None = None
    message: str = ""
    retry_after: float | None = None
    malformed: Malformation | None = None


@dataclass
class _State:
    status: str
    response: list[str] | None = None
    consumed: int = 0
    error_message: str | None = None


class ProviderSimulator:
    """Serve the Seedance API from memory, with faults tests can switch on."""

    def __init__(
        self,
        *,
        api_key: str = "sandbox",
        render_seconds: float = 3.0,
        account_credits: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_key = api_key
        self.render_seconds = render_seconds
        self._balance = account_credits
        self._clock = clock
        self.tasks: dict[str, SimTask] = {}
        self.requests: list[RecordedRequest] = []
        self.fail_tasks: str | None = None
        self.slow_seconds = 0.0
        self.clip_bytes = load_sample_clip()
        self.clip_status = 200
        # Stream clips without Content-Length, as some CDNs do.
        self.clip_chunked = False
        self.statuses_override: dict[str, str] = {}
        # A real provider's rate limit: above `max_rps` API requests in any 1 s window the
        # answer is 429 with Retry-After (0: no ceiling). `rate_limited` counts those 429s.
        self.max_rps = 0.0
        self.rate_limited = 0
        self._recent_api: collections.deque[float] = collections.deque()
        # Tasks whose SUCCESS answer carries no clip URL at all (seen from real upstreams).
        self.clipless: set[str] = set()
        self._faults: list[_Fault] = []
        # Random faults for soak tests, all off by default. `random_faults` is the chance that
        # an /api request (with no scheduled fault) gets one of RANDOM_FAULT_KINDS: an error
        # status, a 429 with or without a short Retry-After, a slow answer, a broken body.
        # `random_task_failures` is the chance that a created task ends FAILED, and
        # `random_render_seconds` a (low, high) range each new task's render time is drawn
        # from. `fault_rng` draws all of them (seed it for a repeatable run);
        # `random_faults_injected` counts what was injected, by "endpoint:kind".
        self.random_faults = 0.0
        self.random_task_failures = 0.0
        self.random_render_seconds: tuple[float, float] | None = None
        self.fault_rng = random.Random(0)  # noqa: S311 - fault injection, not security
        self.random_faults_injected: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self.app = web.Application(middlewares=[self._middleware])
        self.app.router.add_post("/api/generate", self._generate)
        self.app.router.add_get("/api/status", self._status_get)
        self.app.router.add_post("/api/status", self._status_post)
        self.app.router.add_get("/files/{name}.mp4", self._clip)

    # Lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the API on host:port and return its base URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        # A short shutdown timeout: requests held by slow_seconds must not delay stop().
        runner = web.AppRunner(self.app, shutdown_timeout=0.5, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown_host = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{shown_host}:{bound_port}/api"
        log.info("Seedance simulator listening on %s", self._base_url)
        return self._base_url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """Return the API base URL (only while running)."""
        if self._base_url is None:
            raise RuntimeError("the simulator has not been started")
        return self._base_url

    # Account and tasks

    @property
    def balance(self) -> int:
        """Return the account's credits, after refunding every task that has failed."""
        for task in self.tasks.values():
            self._state(task)
        return self._balance

    @balance.setter
    def balance(self, credits: int) -> None:
        self._balance = credits

    def finish(self, task_id: str) -> None:
        """End a task's rendering now."""
        self.tasks[task_id].finished = True

    def fail_task(self, task_id: str, message: str) -> None:
        """Make a task end FAILED with message when its rendering ends."""
        self.tasks[task_id].fail_message = message

    def requests_to(
        self, endpoint: Literal["generate", "status", "files"]
    ) -> list[RecordedRequest]:
        """Return the recorded requests for one endpoint."""
        prefix = "/files/" if endpoint == "files" else f"/api/{endpoint}"
        return [r for r in self.requests if r.path.startswith(prefix)]

    # Faults

    def fail_next(
        self,
        endpoint: Endpoint,
        http_status: int,
        *,
        count: int = 1,
        retry_after: float | None = None,
        body_code: int | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next count matching requests with an error."""
        code = body_code if body_code is not None else http_status
        self._faults.append(
            _Fault(
                endpoint=endpoint,
                remaining=count,
                http_status=http_status,
                body_code=code,
                message=message if message is not None else DEFAULT_MESSAGES.get(code, "Error"),
                retry_after=retry_after,
            )
        )

    def malformed_next(
        self,
        endpoint: Endpoint,
        count: int = 1,
        kind: Malformation = "not_json",
    ) -> None:
        """Answer the next count matching requests with HTTP 200 and a broken body."""
        self._faults.append(_Fault(endpoint=endpoint, remaining=count, malformed=kind))

    # HTTP plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await self._read_json(request)
        authorized, had_header = self._check_auth(request)
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                json=body,
                authorized=authorized,
                had_auth_header=had_header,
                received_at=time.monotonic(),
            )
        )
        if not request.path.startswith("/api/"):
            return await handler(request)
        if not authorized:
            response: web.StreamResponse = _error(401, "Unauthorized")
        elif self._over_ceiling():
            self.rate_limited += 1
            response = web.json_response(
                {"code": 429, "message": "Too many requests", "data": None},
                status=429,
                headers={"Retry-After": "1"},
            )
        else:
            fault = self._take_fault(request.path) or await self._random_fault(request.path)
            response = self._fault_response(fault) if fault else await handler(request)
        if self.slow_seconds > 0:
            await asyncio.sleep(self.slow_seconds)
        return response

    def _over_ceiling(self) -> bool:
        if self.max_rps <= 0:
            return False
        moment = time.monotonic()
        while self._recent_api and moment - self._recent_api[0] >= 1.0:
            self._recent_api.popleft()
        if len(self._recent_api) >= self.max_rps:
            return True
        self._recent_api.append(moment)
        return False

    @staticmethod
    async def _read_json(request: web.Request) -> object | None:
        if request.method != "POST" or not request.can_read_body:
            return None
        try:
            parsed: object = json.loads(await request.read())
        except ValueError:
            return None
        return parsed

    def _check_auth(self, request: web.Request) -> tuple[bool, bool]:
        header = request.headers.get("Authorization")
        if header is None:
            return False, False
        scheme, _, token = header.partition(" ")
        valid = scheme.lower() == "bearer" and secrets.compare_digest(
            token.strip().encode(), self._api_key.encode()
        )
        return valid, True

    def _take_fault(self, path: str) -> _Fault | None:
        endpoint = path.removeprefix("/api/")
        for fault in self._faults:
            if fault.endpoint in ("any", endpoint):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    async def _random_fault(self, path: str) -> _Fault | None:
        """Draw a random fault for one /api request (None: answer normally, maybe slowly)."""
        if self.random_faults <= 0 or self.fault_rng.random() >= self.random_faults:
            return None
        kind = self.fault_rng.choice(RANDOM_FAULT_KINDS)
        self.random_faults_injected[f"{path.removeprefix('/api/')}:{kind}"] += 1
        if kind == "slow":
            await asyncio.sleep(self.fault_rng.uniform(0.2, 1.5))
            return None
        malformed = _MALFORMATIONS.get(kind)
        if malformed is not None:
            return _Fault(endpoint="any", remaining=1, malformed=malformed)
        if kind == "code_500_in_body":
            return _Fault("any", 1, http_status=200, body_code=500, message="Internal error")
        status = {"http_500": 500, "http_503": 503}.get(kind, 429)
        retry_after = None
        if kind == "http_429_retry_after":
            retry_after = round(self.fault_rng.uniform(0.05, 0.3), 2)
        return _Fault(
            "any",
            1,
            http_status=status,
            body_code=status,
            message=DEFAULT_MESSAGES.get(status, "Error"),
            retry_after=retry_after,
        )

    @staticmethod
    def _fault_response(fault: _Fault) -> web.Response:
        if fault.malformed == "not_json":
            return web.Response(
                status=200,
                text="<html><body>502 Bad Gateway</body></html>",
                content_type="text/html",
            )
        if fault.malformed == "missing_fields":
            return web.json_response({"code": 200, "message": "success", "data": {}})
        if fault.malformed == "wrong_types":
            data = {"task_id": 12345, "status": 7, "response": [1], "consumed_credits": "65"}
            return web.json_response({"code": 200, "message": "success", "data": data})
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        return web.json_response(
            {"code": fault.body_code, "message": fault.message, "data": None},
            status=fault.http_status,
            headers=headers,
        )

    # Routes

    async def _generate(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "Request body must be valid JSON")
        problem = _validate_generate(body)
        if problem is not None:
            return _error(400, problem)
        cost = PRICES[(int(body["duration"]), bool(body.get("sound", False)))]
        if cost > self._balance:
            return _error(402, "Insufficient credits")
        self._balance -= cost
        task_id = self._new_task_id()
        render_seconds = self.render_seconds
        if self.random_render_seconds is not None:
            render_seconds = self.fault_rng.uniform(*self.random_render_seconds)
        fail_message = self.fail_tasks
        if self.random_task_failures > 0 and self.fault_rng.random() < self.random_task_failures:
            self.random_faults_injected["task:failed"] += 1
            fail_message = "Simulated random failure"
        self.tasks[task_id] = SimTask(
            task_id=task_id,
            request=dict(body),
            price=cost,
            started_at=self._clock(),
            render_seconds=render_seconds,
            created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            fail_message=fail_message,
        )
        log.debug("Simulator created task %s for %d credits", task_id, cost)
        return _success({"task_id": task_id})

    async def _status_get(self, request: web.Request) -> web.Response:
        return self._status_of(request, request.query.get("task_id"))

    async def _status_post(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "Request body must be valid JSON")
        task_id = body.get("task_id") if isinstance(body, dict) else None
        return self._status_of(request, task_id)

    def _status_of(self, request: web.Request, task_id: object) -> web.Response:
        if not isinstance(task_id, str) or not task_id:
            return _error(400, "task_id is required")
        task = self.tasks.get(task_id)
        if task is None:
            return _error(404, "Task not found")
        state = self._state(task)
        if state.status == "SUCCESS" and task_id not in self.clipless:
            clip = request.url.origin().with_path(f"/files/{task_id}.mp4")
            state.response = [str(clip)]
        return _success(
            {
                "task_id": task_id,
                "status": state.status,
                "request": task.request,
                "response": state.response,
                "consumed_credits": state.consumed,
                "error_message": state.error_message,
                "created_at": task.created_at,
            }
        )

    async def _clip(self, request: web.Request) -> web.StreamResponse:
        if self.clip_status != 200:
            return web.Response(status=self.clip_status, text="Not Found")
        task = self.tasks.get(request.match_info["name"])
        if task is None or self._state(task).status != "SUCCESS":
            return web.Response(status=404, text="Not Found")
        if not self.clip_chunked:
            return web.Response(body=self.clip_bytes, content_type="video/mp4")
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(self.clip_bytes), 16 * 1024):
            await response.write(self.clip_bytes[start : start + 16 * 1024])
        await response.write_eof()
        return response

    # Helpers

    def _state(self, task: SimTask) -> _State:
        override = self.statuses_override.get(task.task_id)
        if override is not None:
            return _State(status=override, consumed=task.price)
        done = task.finished or self._clock() - task.started_at >= task.render_seconds
        if not done:
            return _State(status="IN_PROGRESS", consumed=task.price)
        if task.fail_message is not None:
            if not task.refunded:
                task.refunded = True
                self._balance += task.price
            return _State(status="FAILED", consumed=0, error_message=task.fail_message)
        return _State(status="SUCCESS", consumed=task.price)

    def _new_task_id(self) -> str:
        while True:
            task_id = "sd15p_" + secrets.token_hex(8)[:15]
            if task_id not in self.tasks:
                return task_id


def _validate_generate(body: object) -> str | None:
    """Return what is wrong with a generate body, or None when it is valid."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required and must be a non-empty string"
    if len(prompt) > MAX_PROMPT_LENGTH:
        return f"prompt must be at most {MAX_PROMPT_LENGTH} characters"
    if body.get("aspect_ratio") not in ASPECT_RATIOS:
        return "aspect_ratio must be one of " + ", ".join(ASPECT_RATIOS)
    duration = body.get("duration")
    if not isinstance(duration, str) or duration not in ("5", "10"):
        return 'duration must be the string "5" or "10"'
    if "sound" in body and not isinstance(body["sound"], bool):
        return "sound must be a boolean"
    if "image_urls" in body:
        urls = body["image_urls"]
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            return "image_urls must be an array of strings"
        if not all(u.startswith(("http://", "https://")) for u in urls):
            return "image_urls must be http or https URLs"
    return None


def _success(data: dict[str, object]) -> web.Response:
    return web.json_response({"code": 200, "message": "success", "data": data})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"code": status, "message": message, "data": None}, status=status)


async def _serve(args: argparse.Namespace) -> None:
    simulator = ProviderSimulator(
        api_key=args.api_key, render_seconds=args.render_seconds, account_credits=args.credits
    )
    base_url = await simulator.start(args.host, args.port)
    log.info("Point the bot at SEEDANCE_BASE_URL=%s; press Ctrl+C to stop", base_url)
    try:
        await asyncio.Event().wait()
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the simulator standalone until interrupted."""
    parser = argparse.ArgumentParser(description="Serve a local Seedance API simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--render-seconds", type=float, default=5.0)
    parser.add_argument("--api-key", default="sandbox")
    parser.add_argument("--credits", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
