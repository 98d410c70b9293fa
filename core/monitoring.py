"""The bot's `/metrics` and `/healthz`, served by aiohttp on the bot's own event loop.

Counters and histograms count this process's events; the rest of the code reports them
through the small functions below, which cost a dictionary lookup and never do I/O. The
task-state gauge is the exception: it reads the database, with one grouped query cached
for a few seconds, because tasks outlive processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core import logs
from db import Database
from db.states import TaskState

if TYPE_CHECKING:
    from core.bot import VideoBot

__all__ = [
    "REGISTRY",
    "MonitoringServer",
    "acknowledged",
    "credits_charged",
    "credits_refunded",
    "delivered",
    "discord_trace",
    "interaction_received",
    "poll_late",
    "provider_answered",
    "render_time_learned",
    "uploading",
]

log = logging.getLogger(__name__)

# A registry of our own: nothing another library registers globally leaks into /metrics.
REGISTRY = CollectorRegistry()
# The task-state gauge reads the database at most this often, however often it is scraped.
TASKS_CACHE_SECONDS = 5.0
# /healthz must answer within a second even when the database hangs.
PING_TIMEOUT_SECONDS = 0.8
# Interactions are acknowledged within 3 s or never; older arrivals are forgotten.
ARRIVALS_KEPT = 10_000
_CALLBACK = re.compile(r"/interactions/(\d+)/[^/]+/callback$")

CREDITS_CHARGED = Counter(
    "seedance_credits_charged", "Credits charged to members by this process", registry=REGISTRY
)
CREDITS_REFUNDED = Counter(
    "seedance_credits_refunded", "Credits given back to members by this process", registry=REGISTRY
)
PROVIDER_REQUESTS = Counter(
    "seedance_provider_requests",
    "Provider requests by endpoint (generate, status, download) and the code answered, or error",
    ["endpoint", "outcome"],
    registry=REGISTRY,
)
PROVIDER_RATE_LIMITED = Counter(
    "seedance_provider_rate_limited",
    "Provider answers asking the bot to slow down (429)",
    ["endpoint"],
    registry=REGISTRY,
)
PROVIDER_LAST_SUCCESS = Gauge(
    "seedance_provider_last_success_timestamp_seconds",
    "Unix time of this process's last provider request answered with success (0: none yet)",
    registry=REGISTRY,
)
DELIVERY_DELAY = Histogram(
    "seedance_delivery_delay_seconds",
    "From a clip being ready at the provider to it being posted in the channel",
    buckets=(1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600),
    registry=REGISTRY,
)
ACK = Histogram(
    "seedance_ack_seconds",
    "From an interaction reaching the bot to Discord accepting its acknowledgement",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 5),
    registry=REGISTRY,
)
POLL_LATENESS = Histogram(
    "seedance_poll_lateness_seconds",
    "How long a clip was ready before the status poll that found it (at most)",
    buckets=(0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120),
    registry=REGISTRY,
)
UPLOADS_IN_FLIGHT = Gauge(
    "seedance_uploads_in_flight",
    "Clips being downloaded from the provider or posted to Discord now",
    registry=REGISTRY,
)
DISCORD_ERRORS = Counter(
    "seedance_discord_rest_errors",
    "Discord REST answers of 400 and above by status, and requests that got none (error)",
    ["status"],
    registry=REGISTRY,
)
LEARNED_RENDER = Gauge(
    "seedance_learned_render_seconds",
    "When the poll schedule expects a preset's renders to end (earliest and latest seen)",
    ["preset", "bound"],
    registry=REGISTRY,
)

_arrivals: OrderedDict[int, float] = OrderedDict()
_last_provider_success: float | None = None


def credits_charged(amount: int) -> None:
    """Count credits charged for a task (when its reservation commits)."""
    CREDITS_CHARGED.inc(amount)


def credits_refunded(amount: int) -> None:
    """Count credits given back (when the refund commits)."""
    CREDITS_REFUNDED.inc(amount)


def provider_answered(endpoint: str, outcome: str) -> None:
    """Count one provider request; `outcome` is the code answered or "error"."""
    global _last_provider_success  # one process-wide record, shown by /healthz
    PROVIDER_REQUESTS.labels(endpoint, outcome).inc()
    if outcome == "429":
        PROVIDER_RATE_LIMITED.labels(endpoint).inc()
    elif outcome.startswith("2"):
        _last_provider_success = time.time()
        PROVIDER_LAST_SUCCESS.set(_last_provider_success)


def delivered(ready_to_posted_seconds: float) -> None:
    """Record how long a ready clip took to be posted."""
    DELIVERY_DELAY.observe(max(0.0, ready_to_posted_seconds))


def poll_late(seconds: float) -> None:
    """Record how long a clip may have been ready before the poll that found it."""
    POLL_LATENESS.observe(max(0.0, seconds))


@contextlib.contextmanager
def uploading() -> Iterator[None]:
    """Count a clip download-and-post as in flight for the duration of the block."""
    UPLOADS_IN_FLIGHT.inc()
    try:
        yield
    finally:
        UPLOADS_IN_FLIGHT.dec()


def render_time_learned(duration: int, sound: bool, earliest: float, latest: float | None) -> None:
    """Show the render time the schedule now expects for a preset."""
    preset = f"{duration}s-{'sound' if sound else 'silent'}"
    LEARNED_RENDER.labels(preset, "earliest").set(earliest)
    if latest is not None:
        LEARNED_RENDER.labels(preset, "latest").set(latest)


def interaction_received(interaction_id: int) -> None:
    """Note when an interaction reached the bot, to time its acknowledgement."""
    _arrivals[interaction_id] = time.monotonic()
    while len(_arrivals) > ARRIVALS_KEPT:
        _arrivals.popitem(last=False)


def acknowledged(interaction_id: int) -> None:
    """Record the acknowledgement time of an interaction noted by `interaction_received`."""
    arrived = _arrivals.pop(interaction_id, None)
    if arrived is not None:
        ACK.observe(time.monotonic() - arrived)


def discord_trace() -> aiohttp.TraceConfig:
    """Return a trace for discord.py's HTTP session: REST errors and acknowledgement times.

    Interaction callbacks go through the same session as every REST call, so one trace sees
    both, with no change to how commands answer.
    """
    trace = aiohttp.TraceConfig()

    async def on_end(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        status = params.response.status
        if status >= 400:
            DISCORD_ERRORS.labels(str(status)).inc()
        elif (match := _CALLBACK.search(params.url.path)) is not None:
            acknowledged(int(match.group(1)))

    async def on_exception(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        DISCORD_ERRORS.labels("error").inc()

    trace.on_request_end.append(on_end)
    trace.on_request_exception.append(on_exception)
    trace.freeze()
    return trace


class _OneAtATime:
    """Run a probe with a deadline, never more than one at a time.

    A probe that misses its deadline keeps running (cancelling a database call midway
    helps nobody) and the next caller waits on the same one instead of piling up another.
    """

    def __init__(self, probe: Callable[[], Coroutine[Any, Any, Any]], deadline: float) -> None:
        self._probe = probe
        self._deadline = deadline
        self._running: asyncio.Task[Any] | None = None
        self.started = 0.0

    async def run(self) -> Any:
        """Return the probe's result, or raise TimeoutError past the deadline."""
        if self._running is None or self._running.done():
            self.started = time.monotonic()
            self._running = asyncio.create_task(self._probe(), name="monitoring-probe")
            self._running.add_done_callback(_retrieve)
        return await asyncio.wait_for(asyncio.shield(self._running), self._deadline)

    async def cancel(self) -> None:
        """Stop a probe still running (the server is stopping)."""
        if self._running is not None and not self._running.done():
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._running


def _retrieve(task: asyncio.Task[Any]) -> None:
    # The caller that timed out never sees this result; read it so asyncio does not warn.
    if not task.cancelled() and task.exception() is not None:
        log.debug("Monitoring probe failed: %r", task.exception())


class TaskStates(Collector):
    """`seedance_tasks{state}`: tasks per state, from one grouped query cached a few seconds."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._counts: dict[str, int] = {}
        self._read_at = -math.inf
        self._query = _OneAtATime(self._read, PING_TIMEOUT_SECONDS)

    async def refresh(self) -> None:
        """Read the counts again if the cached ones are older than TASKS_CACHE_SECONDS."""
        if time.monotonic() - self._read_at < TASKS_CACHE_SECONDS:
            return
        try:
            await self._query.run()
        except Exception as error:
            # The last counts stay; /healthz is where a slow database shows.
            log.warning("Could not count tasks for /metrics: %r", error)

    async def _read(self) -> None:
        rows = await self._db.fetchall("SELECT state, count(*) FROM tasks GROUP BY state")
        self._counts = {str(row[0]): int(row[1]) for row in rows}
        self._read_at = time.monotonic()

    def collect(self) -> Iterable[Metric]:
        """Yield the cached counts, every state included (0 when none)."""
        family = GaugeMetricFamily(
            "seedance_tasks", "Tasks per state in the database (all processes)", labels=["state"]
        )
        for state in TaskState:
            family.add_metric([state.value], self._counts.get(state.value, 0))
        yield family

    async def close(self) -> None:
        """Stop a query still running."""
        await self._query.cancel()


class MonitoringServer:
    """`GET /metrics` and `GET /healthz` for one bot process."""

    def __init__(self, bot: VideoBot) -> None:
        self._bot = bot
        self._tasks = TaskStates(bot.db)
        self._ping = _OneAtATime(self._ping_database, PING_TIMEOUT_SECONDS)
        self._runner: web.AppRunner | None = None
        # The body is no log, but a driver's error text could still carry the password.
        self._redact = logs.Redactor(bot.settings.secrets)
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._app = app

    async def start(self) -> None:
        """Listen on METRICS_HOST:METRICS_PORT."""
        settings = self._bot.settings
        assert settings.metrics_port is not None
        REGISTRY.register(self._tasks)
        # No access log: a scrape every few seconds would drown the log.
        runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
        except OSError as error:
            await runner.cleanup()
            REGISTRY.unregister(self._tasks)
            log.error(
                "Cannot serve metrics on %s:%d (%s): choose another METRICS_PORT",
                settings.metrics_host,
                settings.metrics_port,
                error.strerror,
            )
            raise
        self._runner = runner
        log.info(
            "Serving /metrics and /healthz on http://%s:%d",
            settings.metrics_host,
            settings.metrics_port,
        )

    async def stop(self) -> None:
        """Stop listening and stop any probe still waiting on the database."""
        if self._runner is None:
            return
        await self._runner.cleanup()
        self._runner = None
        await self._ping.cancel()
        await self._tasks.close()
        REGISTRY.unregister(self._tasks)

    async def _metrics(self, request: web.Request) -> web.Response:
        await self._tasks.refresh()
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _ping_database(self) -> float:
        started = time.monotonic()
        # A write transaction, not a read: with SQLite's WAL a read answers even while the
        # write lock is held elsewhere, and a bot that cannot write cannot charge or deliver.
        async with self._bot.db.transaction():
            pass
        return (time.monotonic() - started) * 1000

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """Return whether this process is healthy, and the body that says why."""
        problems: list[str] = []
        database: dict[str, Any] = {"ok": False, "round_trip_ms": None}
        try:
            database = {
                "ok": True,
                "round_trip_ms": round(await self._ping.run(), 2),
            }
        except TimeoutError:
            waited = time.monotonic() - self._ping.started
            problems.append(f"database: no answer for {waited:.1f} s")
        except Exception as error:
            problems.append(self._redact(f"database: {type(error).__name__}: {error}"))
        shards = self._shards(problems)
        if self._bot.is_closed():
            problems.append("bot: shutting down")
        last = _last_provider_success
        body = {
            "status": "unhealthy" if problems else "ok",
            "problems": problems,
            "database": database,
            "shards": shards,
            "provider": {
                "last_success": None
                if last is None
                else datetime.fromtimestamp(last, UTC)
                .isoformat(timespec="seconds")
                .replace("+00:00", "Z"),
                "seconds_ago": None if last is None else round(time.time() - last, 1),
            },
        }
        return not problems, body

    def _shards(self, problems: list[str]) -> list[dict[str, Any]]:
        bot = self._bot
        if not bot.settings.gateway:
            return []  # SHARD_IDS=none: a worker with no gateway to be connected to
        expected = list(bot.shard_ids or range(bot.shard_count or 0))
        if not expected:
            problems.append("gateway: not connected yet")
        shards = []
        for shard_id in expected:
            shard = bot.get_shard(shard_id)
            connected = shard is not None and not shard.is_closed()
            latency = shard.latency if shard is not None else math.inf
            shards.append(
                {
                    "id": shard_id,
                    "connected": connected,
                    "latency_ms": round(latency * 1000, 1) if math.isfinite(latency) else None,
                }
            )
            if not connected:
                problems.append(f"shard {shard_id}: not connected")
        return shards

    async def _healthz(self, request: web.Request) -> web.Response:
        healthy, body = await self.health()
        return web.json_response(body, status=200 if healthy else 503)
