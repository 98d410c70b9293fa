"""Every text a Discord member can read, in one place.

Messages, embed titles, fields and footers, button labels, the Animate image form, refusals
and the clip and refund announcements all come from here: constants for fixed texts and
functions with keyword arguments for texts with values, grouped by feature. The rest of the
bot only decides *which* text to show and fills in the values; it never spells words itself.

Translating the bot is a change to this module alone: each constant becomes a lookup and
each function picks its wording by the member's locale (`interaction.locale`), from the same
catalogue a `discord.app_commands.Translator` serves. Command, option and choice names and
their descriptions (the docstrings and `@app_commands.describe` in the cogs) are not here:
discord.py already passes those through the Translator as `locale_str`. Custom ids, option and
choice values and log messages are not member-facing text and stay where they are; nor do
mentions, task ids in backticks, links and button emojis, which are markup rather than words.
"""

from __future__ import annotations

from datetime import datetime

from db.states import TaskState

# Words shared by several features ---------------------------------------------------------


def calendar_day(moment: datetime) -> str:
    """A date the way refusals and reports say it: `Tue 1 Dec`."""
    return f"{moment:%a} {moment.day} {moment:%b}"


def calendar_month(moment: datetime) -> str:
    """A month the way the ledger export names it: `Nov 2026`."""
    return f"{moment:%b %Y}"


def credit_count(*, amount: int) -> str:
    return f"{amount} credits"


def preset_name(*, duration: int, sound: bool) -> str:
    """A preset the way members read it: `5 s, silent`."""
    return f"{duration} s, {'with sound' if sound else 'silent'}"


def time_span(*, seconds: float) -> str:
    """A length of time the way people say it: `45 s`, `2 min 5 s`."""
    whole = max(0, round(seconds))
    minutes, rest = divmod(whole, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def priced(*, label: str, cost: int) -> str:
    """A button label with what clicking it costs: `Reroll · 65`."""
    return f"{label} · {cost}"


NONE = "None."
NONE_YET = "None yet."
# Ends member text cut short to fit an embed.
CUT = "…"


def and_more(*, count: int) -> str:
    """Stands for the lines of a list that Discord's limits left no room for."""
    return f"…and {count} more"


# The task card ----------------------------------------------------------------------------

STATE_TITLES = {
    TaskState.SUBMITTING: "⏳ Submitting…",
    TaskState.RENDERING: "🎬 Rendering…",
    TaskState.DELIVERING: "📤 Posting the clip…",
    TaskState.DONE: "✅ Done",
    TaskState.FAILED: "❌ Failed — credits refunded",
    TaskState.REJECTED: "❌ Not started — credits refunded",
    TaskState.UNCERTAIN: "⚠️ No answer from the provider — credits refunded",
    TaskState.TIMED_OUT: "⌛ Timed out — credits refunded",
}

CARD_SETTINGS = "Settings"
CARD_COST = "Cost"
CARD_BALANCE_LEFT = "Balance left"
CARD_TASK_ID = "Task id"
CARD_REQUESTED_BY = "Requested by"
CARD_PROGRESS = "Progress"
CARD_REASON = "Reason"
CARD_CLIP = "Clip"


def card_settings(*, aspect_ratio: str, preset: str, images: int) -> str:
    text = f"{aspect_ratio} · {preset}"
    if images:
        text += f" · from {images} image{'s' if images > 1 else ''}"
    return text


def card_footer(*, task_id: str) -> str:
    return "Seedance 1.5 Pro · /video status " + task_id


def progress(*, elapsed: str, typical: str | None) -> str:
    """A render in progress: how long so far and, when known, how long it usually takes."""
    text = f"Rendering for {elapsed}"
    if typical is not None:
        text += f" · usually about {typical}"
    return text


def clip_link(*, number: int, url: str) -> str:
    return f"[link {number}]({url})"


# Where the clip went: the first item of the card's Clip field, before its links.
def clip_posted(*, jump: str) -> str:
    return f"[Posted here]({jump})"


CLIP_SENT_BY_DM = "Sent by direct message"
NO_CLIP_URL = "No clip URL was returned."


def status_line(
    *, task_id: str, title: str, preset: str, cost: int, stamp: int, link: str | None, prompt: str
) -> str:
    """One task in a list: state, preset, cost, age, its clip and the start of its prompt."""
    line = f"`{task_id}` · {title} · {preset} · {cost} credits · <t:{stamp}:R>"
    if link:
        line += f" · [clip]({link})"
    return f"{line}\n> {prompt}"


# Credits, prices and refills --------------------------------------------------------------

NO_REFILL = "This server has no automatic refill: ask a server admin for more credits."


def refills(*, amount: int, day: str) -> str:
    return f"Refills to **{amount}** on {day} (00:00 UTC)."


def price_line(*, preset: str, credits: int) -> str:
    return f"{preset}: **{credits}** credits"


# Starting a clip: refusals and what went wrong --------------------------------------------


def not_enough_credits(*, cost: int, balance: int, refill: str) -> str:
    return (
        f"This clip costs **{cost}** credits and you have **{balance}**. "
        "Pick a shorter or silent preset, or ask a server admin for more credits. " + refill
    )


def too_many_active(*, limit: int) -> str:
    return (
        f"You already have {limit} {'clip' if limit == 1 else 'clips'} "
        "being made, the most this server allows at once. Wait for one to be posted, "
        "then try again."
    )


def server_cap_reached(*, cap: int, period: str, reopens: str) -> str:
    return (
        f"This server has used its budget of {cap} credits for this "
        f"{period}. Generation opens again on "
        f"{reopens} (00:00 UTC), or a server admin "
        "can raise the cap (`/video-admin cap`). Nothing was charged."
    )


OPERATOR_CEILING_REACHED = (
    "The bot has reached its spending limit for today across all servers. "
    "Try again after 00:00 UTC. Nothing was charged."
)

# The reason recorded on the task (shown on its card) when starting it broke.
START_BROKE = "Something went wrong while starting this clip."


def start_failed(*, cost: int, balance: int) -> str:
    return (
        f"Something went wrong while starting your clip. Your {cost} credits "
        f"are back (balance: {balance}); try again."
    )


PROVIDER_OUT_OF_CREDITS = (
    "The video service is out of credits right now, so nothing was started. "
    "The bot's operator has been told; try again later."
)
PROVIDER_KEY_REFUSED = (
    "The bot is not set up correctly (its video service key was refused). "
    "A server admin should tell the bot's operator."
)


def provider_refused(*, message: str) -> str:
    return f"The video service refused this request: {message}"


PROVIDER_NO_ANSWER = "The video service did not answer in time. Your credits are back; try again."
PROVIDER_UNAVAILABLE = (
    "The video service is unavailable at the moment. Your credits are back; try again shortly."
)

# Checking what members type and attach ----------------------------------------------------

PROMPT_EMPTY = "Your prompt is empty: describe the scene you want, in words."


def prompt_too_long(*, length: int, limit: int) -> str:
    return (
        f"Your prompt is {length} characters long; the limit is {limit}. Shorten it and try again."
    )


IMAGE_URL_NOT_WEB = (
    "`image_url` must be a web address starting with http:// or https://, "
    "such as https://example.com/picture.png"
)
IMAGE_URL_WITH_LOGIN = "`image_url` must not contain a user name or password."
IMAGE_URL_LOCAL = "`image_url` must be a public web address, not a local or private network one."


def not_an_image(*, filename: str) -> str:
    return f"`{filename}` is not an image: attach a PNG, JPEG, WebP or GIF picture."


IMAGE_EMPTY = "The attached image is empty: attach the picture again."


def image_too_large(*, size_bytes: int, limit_bytes: int) -> str:
    return (
        f"The attached image is {size_bytes / 1024 / 1024:.1f} MiB; "
        f"the limit is {limit_bytes // 1024 // 1024} MiB."
    )


def out_of_range(*, what: str, lowest: int, highest: int) -> str:
    """A number outside what an option allows; `what` is one of the AMOUNT_ names below."""
    return f"{what} must be between {lowest:,} and {highest:,}."


AMOUNT_GRANT = "The amount"
AMOUNT_ALLOWANCE = "The allowance"
AMOUNT_ROLE_ALLOWANCE = "The role allowance"
AMOUNT_CAP = "The cap"
AMOUNT_MAX_CONCURRENT = "max_concurrent"

# Errors any command can end with ----------------------------------------------------------

NOT_HERE = "You cannot use this command here."
USE_IN_SERVER = "Use this in a server: credits and clips belong to the server they are made in."
NOT_IN_THIS_SERVER = (
    "The bot is not a member of this server, so it cannot make clips here. "
    "Ask a server admin to add the bot to the server."
)
BUTTON_UNKNOWN = "This button no longer works. Use `/video status` or `/video generate` instead."
OUR_FAULT = "Something went wrong on our side. Try again shortly."
MENU_EXPIRED = "These buttons have expired (or the bot restarted). Run the command again."

# Posting the clip and refunding -----------------------------------------------------------

# Reasons recorded on the task: shown on its card and in the refund announcement.
NEVER_CONFIRMED = "The video service never confirmed this task (the bot was interrupted)."
RENDER_FAILED = "The video service could not make this clip."
SUCCESS_WITHOUT_CLIP = "The video service reported success but sent no clip."


def still_rendering(*, minutes: float) -> str:
    return f"The video service was still rendering after {minutes:g} minutes."


TOO_LARGE_TO_UPLOAD = "It is too large to upload here, so here is the link:"
NO_UPLOAD_HERE = "The bot may not upload files in this channel, so here is the link:"
NOT_FETCHED = "It could not be fetched for upload; here is the link:"
COULD_NOT_POST_IN_CHANNEL = "(The bot could not post in the channel where you asked.)"


def clip_marker(*, task_id: str) -> str:
    """The part of a clip post that names its task; the bot looks for it after a restart."""
    return f"task `{task_id}`"


def clip_ready(*, user_id: int, task_id: str, note: str, urls: tuple[str, ...]) -> str:
    """The post carrying the clip; with `note`, the links instead of (or for) the upload."""
    text = f"<@{user_id}> your clip is ready · {clip_marker(task_id=task_id)}"
    if note:
        text += f"\n{note}\n" + "\n".join(urls)
    elif len(urls) > 1:
        text += "\nMore takes: " + " ".join(urls[1:])
    return text


def clip_ready_dm(*, task_id: str, jump: str) -> str:
    return f"Your clip `{task_id}` is ready: {jump}"


def refunded(*, user_id: int, task_id: str, reason: str, cost: int, balance: int) -> str:
    return (
        f"<@{user_id}> your clip `{task_id}` could not be made: {reason}\n"
        f"Your {cost} credits are back (balance: {balance})."
    )


# Buttons under a clip: new takes and delete -----------------------------------------------

REROLL = "Reroll"
LONGER = "10 s"
WITH_SOUND = "With sound"
DELETE = "Delete"
CONFIRM = "Confirm"
CANCEL = "Cancel"

# What each kind of new take makes, as in "Make a 10-second version of …".
TAKES = {
    "reroll": "a new take with the same settings",
    "long": "a 10-second version",
    "sound": "a version with sound",
}

CLIP_UNKNOWN = "This clip is no longer known to the bot."


def takes_only_by_requester(*, user_id: int) -> str:
    return (
        f"Only <@{user_id}> can make new takes of this clip, on their own credits. "
        "Make your own with `/video generate`."
    )


def offer_take(*, take: str, task_id: str, cost: int) -> str:
    return f"Make {take} of `{task_id}` for **{cost}** credits?"


TAKE_CANCELLED = "Cancelled; nothing was charged."
TAKE_STARTING = "Starting the new take…"
TAKE_EXPIRED = "This offer expired; nothing was charged. Use the button under the clip again."
TAKE_ALREADY_ANSWERED = "This offer was already answered."
TAKES_ONLY_IN_SERVER = (
    "New takes are charged to the server, so they start there: use the buttons under the "
    "clip in the server, or `/video generate`."
)


def delete_only_by_requester(*, user_id: int) -> str:
    return f"Only <@{user_id}>, who asked for this clip, or a server admin can delete it."


NO_POST_TO_DELETE = "There is no post to delete here."
DELETE_REFUSED = "Discord would not let the bot delete that post."
ALREADY_DELETED = "That post is already gone. `/video status` still shows the clip."


def deleted(*, task_id: str) -> str:
    return f"Deleted the clip of `{task_id}`. `/video status` still shows it."


# /video generate and Animate image --------------------------------------------------------

NO_IMAGE_IN_MESSAGE = (
    "That message has no image attached. Pick a message with a picture, or use "
    "`/video generate` with `image` or `image_url`."
)

ANIMATE_TITLE = "Animate image"
ANIMATE_PROMPT = "What should happen in the clip?"
ANIMATE_PROMPT_EXAMPLE = "The cat slowly turns its head and blinks"
ANIMATE_LENGTH = "Length in seconds: 5 or 10"
ANIMATE_SOUND = "Sound: yes or no"
# The sound field starts as ANIMATE_SOUND_DEFAULT and accepts these answers.
ANIMATE_SOUND_DEFAULT = "no"
ANIMATE_SOUND_ANSWERS = {"yes": True, "y": True, "no": False, "n": False}
ANIMATE_LENGTH_INVALID = "The length must be 5 or 10 (seconds). Nothing was charged."
ANIMATE_SOUND_INVALID = "Sound must be yes or no. Nothing was charged."

# /video notify, status, balance, history --------------------------------------------------

NOTIFY_ON = "You will get a DM each time a clip of yours is posted in this server."
NOTIFY_OFF = "No more DMs when your clips are posted in this server."


def no_such_task(*, task_id: str) -> str:
    return (
        f"You have no task `{task_id}` in this server. "
        "Pick one from the list as you type, or see `/video history`."
    )


def task_choice(*, task_id: str, state: str, prompt: str) -> str:
    """A task offered while typing a task id, cut to the 100 characters Discord allows."""
    return f"{task_id} · {state} · {prompt}"[:100]


BALANCE_TITLE = "Your credits"


def balance(*, credits: int) -> str:
    return f"You have **{credits}** credits in this server."


BALANCE_PRICES = "Prices"
BALANCE_REFILL = "Refill"

HISTORY_TITLE = "Your recent tasks"
HISTORY_EMPTY = "No tasks yet. Start one with `/video generate`."
HISTORY_NEWER = "Newer"
HISTORY_OLDER = "Older"


def history_footer(*, page: int, pages: int, total: int) -> str:
    return f"Page {page} of {pages} · {total} tasks"


# /video-admin -----------------------------------------------------------------------------

ADMINS_ONLY = "Only members with the Manage Server permission can use `/video-admin`."
BOTS_HOLD_NO_CREDITS = "Bots cannot make videos, so they hold no credits."
GRANT_ZERO = "An amount of 0 changes nothing: give a positive or negative one"


def cannot_take(*, member: str, balance: int) -> str:
    return (
        f"{member} has **{balance}** credits; you can take at most {balance}. Nothing was changed."
    )


def granted(*, amount: int, member: str, balance: int) -> str:
    """A grant done: `amount` is negative when credits were taken away."""
    verb = "Gave" if amount > 0 else "Took"
    preposition = "to" if amount > 0 else "from"
    return f"{verb} **{abs(amount)}** credits {preposition} {member}. New balance: **{balance}**."


def grant_reason(*, reason: str) -> str:
    return f"\nReason: {reason}"


def allowance_once(*, amount: int) -> str:
    return f"New members now start with **{amount}** credits; there is no refill."


def allowance_set(*, amount: int, period: str, refill: str) -> str:
    return (
        f"Every member now gets **{amount}** credits per {period}: once in each {period} "
        f"(UTC), on the member's first use of the bot, a lower balance is raised back to "
        f"{amount}; granted credits above it stay. Members already topped up this {period} "
        f"get the new amount from the next one. {refill}"
    )


def role_allowance_removed(*, role: str) -> str:
    return f"{role} no longer has its own allowance."


def role_allowance_absent(*, role: str) -> str:
    return f"{role} had no allowance of its own; nothing changed."


def role_allowance_set(*, role: str, amount: int, period: str) -> str:
    """A role's allowance set; `period` is the server's (`none`: starting credits only)."""
    rhythm = (
        "as starting credits (the server has no refill period)"
        if period == "none"
        else f"per {period}"
    )
    return (
        f"Members with {role} now get **{amount}** credits {rhythm}, "
        "or the server allowance if that is higher."
    )


CAP_REMOVED = "The server no longer has a spending cap."


def cap_set(*, amount: int, period: str, spent: int, left: int) -> str:
    return (
        f"The server may now spend **{amount}** credits per {period}. "
        f"Spent this {period} so far: {spent}; left: {left}."
    )


def limits_set(*, count: int) -> str:
    return (
        f"Each member may now have **{count}** "
        f"{'clip' if count == 1 else 'clips'} in the making at once."
    )


def usage_title(*, period: str) -> str:
    return f"Video usage this {period}"


def usage_summary(*, since: str, spent: int, charged: int, refunded: int) -> str:
    return (
        f"Since {since} 00:00 UTC: **{spent}** credits spent "
        f"({charged} charged, {refunded} refunded)."
    )


USAGE_TASKS = "Tasks"
USAGE_TOP_MEMBERS = "Top members"
USAGE_CAP = "Cap"
USAGE_ALLOWANCE = "Allowance"
USAGE_MAX_CONCURRENT = "Per member at once"
USAGE_CHANGES = "Recent settings changes"
NOBODY_YET = "Nobody yet."


def outcome_line(*, preset: str, state: str, count: int) -> str:
    return f"{preset} · {state}: {count}"


def top_member(*, user_id: int, spent: int) -> str:
    return f"<@{user_id}>: {spent}"


def cap_rule(*, cap: int, period: str, left: int) -> str:
    return f"{cap} per {period}; {left} left"


# How often an allowance is given, by the period admins picked.
ALLOWANCE_PERIODS = {"day": "per day", "week": "per week", "month": "per month", "none": "once"}


def allowance_rule(*, amount: int, period: str) -> str:
    return f"{amount} {ALLOWANCE_PERIODS[period]}"


def default_allowance(*, amount: int) -> str:
    return f"{amount} once (default)"


def settings_change(
    *, stamp: int, actor_id: int, setting: str, old: str | None, new: str | None
) -> str:
    return f"<t:{stamp}:d> <@{actor_id}> {setting}: {old or 'unset'} → {new or 'unset'}"


def ledger_rows(
    *, rows: int, member: str | None, since: str | None = None, until: str | None = None
) -> str:
    span = (f" from {since}" if since else "") + (f" through {until}" if until else "")
    return f"{rows} ledger rows" + (f" for {member}" if member else "") + span + "."


LEDGER_COMPRESSED = (
    "Too large for Discord as plain CSV, so it comes gzip-compressed (`.csv.gz`): "
    "any archive tool, or `gunzip`, opens it."
)


def ledger_by_month(*, files: int, first: str, last: str, messages: int) -> str:
    where = "" if messages == 1 else f", in {messages} messages"
    return (
        "Too large for Discord as one file even compressed, so it comes by calendar month "
        f"(UTC), gzip-compressed (`.csv.gz`): {files} files, {first} to {last}{where}."
    )


def ledger_part(*, part: int, parts: int) -> str:
    return f"Ledger, part {part} of {parts}."


def ledger_month_too_large(*, month: str) -> str:
    return (
        f"The ledger of {month} alone is too large for Discord, even compressed, so nothing "
        "was sent. Ask for fewer days at a time with `since` and `until` "
        "(for example `since:2026-11-01 until:2026-11-15`)."
    )


def ledger_too_many_months(*, months: int, first: str, last: str, most: int) -> str:
    return (
        f"The ledger spans {months} months ({first} to {last}) and is too large for Discord "
        f"as one file, so nothing was sent. Ask for at most {most} months at a time with "
        "`since` and `until` (for example `since:2026-01 until:2026-10`)."
    )


def bad_day_or_month(*, option: str) -> str:
    return (
        f"`{option}` must be a day like `2026-11-05` or a month like `2026-11` (UTC). "
        "Nothing was exported."
    )


def ledger_range_empty(*, since: str, until: str) -> str:
    return f"`since` ({since}) comes after `until` ({until}), so there is nothing to export."


def member_credits_title(*, name: str) -> str:
    return f"Credits of {name}"


def member_credits(*, member: str, credits: int, refill: str) -> str:
    return f"{member} has **{credits}** credits. {refill}"


MEMBER_RECENT_TASKS = "Recent tasks"
