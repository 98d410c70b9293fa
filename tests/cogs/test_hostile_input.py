"""The catalogue of hostile and malformed input: each case, its expected answer, nothing lost.

Every row runs one command as a real interaction. A refusal must be private, name the
problem, reach no provider, charge nothing and create no task; an accepted oddity must be
charged exactly its price once. Nothing may crash (no ERROR in the log), and no message may
ping anyone but the requester.
"""

from __future__ import annotations

from typing import Any

import pytest

from core import texts
from db import credits
from tests.harness import Harness

EPHEMERAL = 64
ACCEPTED = "accepted"
OTHER_MEMBER = 4242

PROMPT_CASES: list[tuple[str, str, str]] = [
    ("empty", "", "Your prompt is empty"),
    ("one character", "a", ACCEPTED),
    ("1000 characters", "x" * 1000, ACCEPTED),
    ("1001 characters", "x" * 1001, "the limit is 1000"),
    ("10,000 characters", "y" * 10_000, "the limit is 1000"),
    ("whitespace only", " \t\n  \n", "Your prompt is empty"),
    ("control characters only", "\x00\x01\x07\x1b", "Your prompt is empty"),
    ("control characters inside", "cat\x00dog\x1b[31m", ACCEPTED),
    ("zero-width only", "\u200b\u200c\u200d\ufeff", "Your prompt is empty"),
    ("direction marks only", "\u200e\u200f\u202e\u2066", "Your prompt is empty"),
    ("right-to-left override", "\u202egnp.exe a cat", ACCEPTED),
    ("mass mentions", "@everyone @here <@&123> <@456> look", ACCEPTED),
    ("markdown that breaks embeds", "```\n**__~~||[x](http://evil)|| `", ACCEPTED),
    ("a prompt that is a URL", "https://example.com/", ACCEPTED),
]

URL_CASES: list[tuple[str, str, str]] = [
    ("ftp scheme", "ftp://example.com/a.png", "must be a web address"),
    ("javascript scheme", "javascript:alert(1)", "must be a web address"),
    ("file scheme", "file:///etc/passwd", "must be a web address"),
    ("no host", "https:///a.png", "must be a web address"),
    ("scheme only", "https://", "must be a web address"),
    ("not a URL", "a cat picture", "must be a web address"),
    ("space inside", "https://example.com/a b.png", "must be a web address"),
    ("3000 characters", "https://example.com/" + "a" * 3000, "must be a web address"),
    ("credentials", "https://user:secret@example.com/a.png", "user name or password"),
    ("loopback", "http://127.0.0.1/a.png", "public web address"),
    ("localhost", "http://localhost:8080/a.png", "public web address"),
    ("private network", "http://10.0.0.5/a.png", "public web address"),
    ("link-local metadata", "http://169.254.169.254/latest", "public web address"),
    ("IPv6 loopback", "http://[::1]/a.png", "public web address"),
    ("integer address", "http://2130706433/a.png", "public web address"),
    ("shorthand loopback", "http://127.1/a.png", "public web address"),
    ("octal loopback", "http://0177.0.0.1/a.png", "public web address"),
    ("hex private", "http://0x0a.0.0.1/a.png", "public web address"),
    ("public address", "https://example.com/cat.png", ACCEPTED),
]

ATTACHMENT_CASES: list[tuple[str, bytes, str, str | None, int | None, str]] = [
    ("a PDF", b"%PDF-1.4", "notes.pdf", "application/pdf", None, "is not an image"),
    ("a video", b"\0\0\0 ftyp", "clip.mp4", "video/mp4", None, "is not an image"),
    ("no content type", b"GIF89a", "mystery", None, None, "is not an image"),
    ("an empty image", b"", "empty.png", "image/png", None, "is empty"),
    ("a 50 MiB image", b"\x89PNG", "huge.png", "image/png", 50 * 1024 * 1024, "limit is 20 MiB"),
    (
        "markdown in the file name",
        b"%PDF",
        "**@everyone**.pdf",
        "application/pdf",
        None,
        "`\\*\\*@everyone\\*\\*.pdf` is not an image",
    ),
    ("a PNG", b"\x89PNG\r\n\x1a\n", "cat.png", "image/png", None, ACCEPTED),
]

TASK_ID_CASES: list[tuple[str, str]] = [
    ("unknown", "deadbeef00"),
    ("SQL-like", "' OR 1=1 --"),
    ("LIKE wildcards", "%_%"),
    ("10,000 characters", "z" * 10_000),
    ("backticks and a mass mention", "`@everyone`"),
    ("empty", ""),
]

ADMIN_CASES: list[tuple[str, dict[str, Any], bool, str]] = [
    ("grant by a member", {"amount": 100}, False, "Manage Server"),
    ("grant of 10^18", {"amount": 10**18}, True, "between -1,000,000 and 1,000,000"),
    ("grant of -10^18", {"amount": -(10**18)}, True, "between -1,000,000 and 1,000,000"),
    ("grant below zero", {"amount": -261}, True, "you can take at most 260"),
    ("grant of zero", {"amount": 0}, True, "changes nothing"),
]


async def ledger_rows(harness: Harness, user_id: int) -> list[str]:
    entries = await credits.ledger_for(harness.bot.db, harness.fake.guild_id, user_id)
    return [entry.reason for entry in entries]


async def check_outcome(harness: Harness, payload: dict[str, Any], expect: str, cost: int) -> None:
    callback = harness.callback(payload).json
    if expect == ACCEPTED:
        assert callback["type"] == 4 and not callback["data"].get("flags", 0) & EPHEMERAL
        assert len(harness.simulator.requests_to("generate")) == 1
        assert await harness.balance() == 260 - cost
        assert await ledger_rows(harness, harness.fake.user_id) == ["welcome", "charge"]
        return
    message = callback["data"] if callback["type"] == 4 else harness.replies(payload)[-1]
    assert message["flags"] & EPHEMERAL, message
    assert expect in message["content"], message["content"]
    assert harness.simulator.requests_to("generate") == []
    assert await harness.tasks() == []
    assert await ledger_rows(harness, harness.fake.user_id) in ([], ["welcome"])


@pytest.mark.parametrize(
    ("case", "prompt", "expect"), PROMPT_CASES, ids=[c[0] for c in PROMPT_CASES]
)
async def test_prompts(harness: Harness, case: str, prompt: str, expect: str) -> None:
    payload = await harness.run("generate", options={"prompt": prompt})
    await check_outcome(harness, payload, expect, cost=65)


@pytest.mark.parametrize(("case", "url", "expect"), URL_CASES, ids=[c[0] for c in URL_CASES])
async def test_image_urls(harness: Harness, case: str, url: str, expect: str) -> None:
    payload = await harness.run("generate", options={"prompt": "animate it", "image_url": url})
    await check_outcome(harness, payload, expect, cost=65)


@pytest.mark.parametrize(
    ("case", "data", "filename", "content_type", "size", "expect"),
    ATTACHMENT_CASES,
    ids=[c[0] for c in ATTACHMENT_CASES],
)
async def test_attachments(
    harness: Harness,
    case: str,
    data: bytes,
    filename: str,
    content_type: str | None,
    size: int | None,
    expect: str,
) -> None:
    uploaded = harness.fake.add_attachment(data, filename, content_type or "")
    if content_type is None:
        uploaded.pop("content_type", None)
    if size is not None:
        uploaded["size"] = size  # what Discord reports; the bot never downloads it
    payload = await harness.run(
        "generate", options={"prompt": "animate it", "image": uploaded}, attachments=[uploaded]
    )
    await check_outcome(harness, payload, expect, cost=65)


@pytest.mark.parametrize(("case", "task_id"), TASK_ID_CASES, ids=[c[0] for c in TASK_ID_CASES])
async def test_task_ids(harness: Harness, case: str, task_id: str) -> None:
    await harness.run("generate", options={"prompt": "theirs"}, user_id=OTHER_MEMBER)
    payload = await harness.run("status", options={"task_id": task_id})
    [reply] = harness.replies(payload)
    assert reply["flags"] & EPHEMERAL and "You have no task" in reply["content"]
    assert reply["allowed_mentions"] == {"parse": []}
    assert "@everyone" not in reply["content"] or "@\u200beveryone" in reply["content"]


async def test_another_members_task_id(harness: Harness) -> None:
    await harness.run("generate", options={"prompt": "theirs"}, user_id=OTHER_MEMBER)
    [theirs] = await harness.tasks(OTHER_MEMBER)
    payload = await harness.run("status", options={"task_id": theirs.id})
    [reply] = harness.replies(payload)
    assert reply["flags"] & EPHEMERAL and "You have no task" in reply["content"]
    assert not reply.get("embeds")


@pytest.mark.parametrize(
    ("case", "options", "admin", "expect"), ADMIN_CASES, ids=[c[0] for c in ADMIN_CASES]
)
async def test_admin_commands(
    harness: Harness, case: str, options: dict[str, Any], admin: bool, expect: str
) -> None:
    member = harness.fake.add_user(7777, username="target")
    payload = await harness.run(
        "grant", group="video-admin", options={"member": member, **options}, admin=admin
    )
    [reply] = harness.replies(payload)
    assert reply["flags"] & EPHEMERAL and expect in reply["content"], reply["content"]
    assert "grant" not in await ledger_rows(harness, 7777)


@pytest.mark.parametrize(
    ("subcommand", "options", "expect"),
    [
        ("allowance", {"amount": -5, "period": "week"}, "between 0 and"),
        ("cap", {"amount": 10**18, "period": "day"}, "between 0 and"),
        ("limits", {"max_concurrent": 0}, "between 1 and 20"),
    ],
)
async def test_absurd_budget_settings(
    harness: Harness, subcommand: str, options: dict[str, Any], expect: str
) -> None:
    payload = await harness.run(subcommand, group="video-admin", options=options, admin=True)
    [reply] = harness.replies(payload)
    assert reply["flags"] & EPHEMERAL and expect in reply["content"], reply["content"]
    row = await harness.bot.db.fetchone("SELECT COUNT(*) FROM settings_changes")
    assert row is not None and row[0] == 0


async def test_a_grant_to_the_bot_itself_is_refused(harness: Harness) -> None:
    bot_user = harness.fake.bot_user
    payload = await harness.run(
        "grant", group="video-admin", options={"member": bot_user, "amount": 500}, admin=True
    )
    [reply] = harness.replies(payload)
    assert reply["flags"] & EPHEMERAL and reply["content"] == texts.BOTS_HOLD_NO_CREDITS
    assert await ledger_rows(harness, int(bot_user["id"])) == []


async def test_formula_and_markdown_in_a_grant_reason_stay_plain_text(harness: Harness) -> None:
    member = harness.fake.add_user(7777, username="target")
    reason = '=HYPERLINK("http://x") **@everyone** <@&123456789012345678>'
    payload = await harness.run(
        "grant",
        group="video-admin",
        options={"member": member, "amount": 5, "reason": reason},
        admin=True,
    )
    [reply] = harness.replies(payload)
    shown = reply["content"].split("Reason: ", 1)[1]
    assert (
        shown == '=HYPERLINK("http://x") \\*\\*@\u200beveryone\\*\\* '
        "\\<@\u200b&123456789012345678\\>"
    )
    assert reply["allowed_mentions"] == {"parse": []}
