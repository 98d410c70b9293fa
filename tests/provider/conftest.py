"""Fixtures that serve the provider simulator on 127.0.0.1 and point a client at it."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from provider.client import SeedanceClient
from provider.simulator import ProviderSimulator

API_KEY = "sk-live-9f2c7e1b5d8a4f03"
RENDER_SECONDS = 10.0

MakeClient = Callable[..., SeedanceClient]


class FakeClock:
    """A monotonic clock the tests move by hand, so rendering takes no real time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sim(clock: FakeClock) -> AsyncIterator[ProviderSimulator]:
    simulator = ProviderSimulator(api_key=API_KEY, render_seconds=RENDER_SECONDS, clock=clock)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def make_client(sim: ProviderSimulator, session: aiohttp.ClientSession) -> MakeClient:
    def make(**overrides: object) -> SeedanceClient:
        base_url = str(overrides.pop("base_url", sim.base_url))
        api_key = str(overrides.pop("api_key", API_KEY))
        options: dict[str, object] = {
            "request_timeout": 0.5,
            "max_attempts": 4,
            "backoff_base": 0.01,
            "backoff_cap": 0.05,
            "max_rps": 0,
            "rng": random.Random(1234),
        }
        options.update(overrides)
        return SeedanceClient(session, base_url, api_key, **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
def client(make_client: MakeClient) -> SeedanceClient:
    return make_client()


@pytest.fixture
def closed_port() -> int:
    """Return a loopback port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
