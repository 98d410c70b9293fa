"""Check the JSON the bot sent against Discord's official OpenAPI spec, where a copy is at hand.

The spec lives outside the repository (`../shared/discord-openapi.json`); without it the
check is skipped and the suite still passes.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.fakediscord import Recorded

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "discord-openapi.json"


@functools.cache
def _spec() -> tuple[Registry, list[tuple[re.Pattern[str], str]], dict[str, Any]] | None:
    if not SPEC.is_file():
        return None
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    registry: Registry = Registry().with_resource(
        "urn:discord", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    templates = [
        (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
        for path in spec["paths"]
    ]
    # Literal segments (@original, @me) must win over placeholders of the same shape.
    templates.sort(key=lambda item: item[1].count("{"))
    return registry, templates, spec


def available() -> bool:
    """Whether the spec file is here to check against."""
    return _spec() is not None


@functools.cache
def _validator(method: str, template: str) -> Draft202012Validator | None:
    loaded = _spec()
    assert loaded is not None
    registry, _, spec = loaded
    operation = spec["paths"][template].get(method)
    content = (operation or {}).get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    pointer = template.replace("~", "~0").replace("/", "~1")
    ref = f"urn:discord#/paths/{pointer}/{method}/requestBody/content/application~1json/schema"
    return Draft202012Validator({"$ref": ref}, registry=registry)


def _as_sent_on_the_wire(value: Any, key: str = "") -> Any:
    """Snowflakes as strings: discord.py sends some as integers, which Discord also accepts.

    The spec types every snowflake (ids, `*_id`, mention lists) as a string; only those
    positions are converted, so a number anywhere else is still checked as sent.
    """
    snowflake_key = key == "id" or key.endswith("_id") or key in ("users", "roles")
    if isinstance(value, int) and not isinstance(value, bool) and snowflake_key:
        return str(value)
    if isinstance(value, dict):
        return {k: _as_sent_on_the_wire(item, k) for k, item in value.items()}
    if isinstance(value, list):
        return [_as_sent_on_the_wire(item, key) for item in value]
    return value


def violations(requests: list[Recorded]) -> list[str]:
    """Return every way a recorded request body breaks the spec (empty when all conform)."""
    loaded = _spec()
    if loaded is None:
        return []
    _, templates, _ = loaded
    found = []
    for record in requests:
        if not isinstance(record.json, dict | list):
            continue
        template = next((t for pattern, t in templates if pattern.match(record.path)), None)
        if template is None:
            continue
        validator = _validator(record.method.lower(), template)
        if validator is None:
            continue
        for error in validator.iter_errors(_as_sent_on_the_wire(record.json)):
            where = "/".join(str(part) for part in error.absolute_path) or "(body)"
            found.append(f"{record.method} {template} {where}: {error.message[:300]}")
    return found
