"""The OpenAPI check itself: it catches a malformed body and passes a well-formed one."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e import openapi
from tests.fakediscord import Recorded

pytestmark = pytest.mark.skipif(
    not openapi.available(), reason="Discord's OpenAPI spec is not beside the repository"
)


def sent(method: str, path: str, body: Any) -> Recorded:
    return Recorded(
        method=method,
        path=path,
        query={},
        json=body,
        files=[],
        headers_authorized=True,
        time=time.monotonic(),
    )


def test_a_well_formed_message_passes() -> None:
    body = {
        "content": "<@1234567890123> your clip is ready",
        "allowed_mentions": {"parse": [], "users": [1234567890123]},
        "nonce": "sdv-abc",
        "enforce_nonce": True,
        "attachments": [{"id": 0, "filename": "clip.mp4"}],
    }
    assert openapi.violations([sent("POST", "/channels/42/messages", body)]) == []


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/channels/42/messages", {"content": 5}, "content"),
        ("/channels/42/messages", {"allowed_mentions": {"parse": ["nobody"]}}, "allowed_mentions"),
        ("/interactions/1/token/callback", {"type": "four"}, "(body)"),
    ],
)
def test_a_malformed_body_is_reported(path: str, body: dict[str, Any], where: str) -> None:
    [problem] = openapi.violations([sent("POST", path, body)])
    assert where in problem
