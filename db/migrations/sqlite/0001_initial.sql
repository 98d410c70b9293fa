-- Members' credits per server, the tasks they start, and the append-only credit ledger.
CREATE TABLE members (
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    balance    INTEGER NOT NULL CHECK (balance >= 0),
    created_at TEXT NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) STRICT;

CREATE TABLE tasks (
    id                  TEXT PRIMARY KEY,
    guild_id            INTEGER NOT NULL,
    channel_id          INTEGER NOT NULL,
    user_id             INTEGER NOT NULL,
    card_message_id     INTEGER,
    prompt              TEXT NOT NULL,
    aspect_ratio        TEXT NOT NULL,
    duration            INTEGER NOT NULL CHECK (duration IN (5, 10)),
    sound               INTEGER NOT NULL CHECK (sound IN (0, 1)),
    image_urls          TEXT NOT NULL DEFAULT '[]',
    cost                INTEGER NOT NULL CHECK (cost >= 0),
    upload_limit        INTEGER NOT NULL,
    provider_task_id    TEXT UNIQUE,
    state               TEXT NOT NULL CHECK (state IN (
                            'submitting', 'rendering', 'delivering', 'done',
                            'failed', 'rejected', 'uncertain', 'timed_out')),
    next_poll_at        REAL,
    poll_attempts       INTEGER NOT NULL DEFAULT 0,
    delivery_attempts   INTEGER NOT NULL DEFAULT 0,
    result_urls         TEXT NOT NULL DEFAULT '[]',
    error               TEXT,
    delivery_message_id INTEGER,
    delivery_channel_id INTEGER,
    delivered_via       TEXT CHECK (delivered_via IN ('attachment', 'link', 'dm', 'none')),
    created_at          TEXT NOT NULL,
    submitted_at        TEXT,
    finished_at         TEXT,
    updated_at          TEXT NOT NULL,
    FOREIGN KEY (guild_id, user_id) REFERENCES members (guild_id, user_id)
) STRICT;

-- The poller's "what is due" query reads only this small index.
CREATE INDEX tasks_due ON tasks (next_poll_at) WHERE state IN ('rendering', 'delivering');
CREATE INDEX tasks_by_member ON tasks (guild_id, user_id, created_at DESC);

CREATE TABLE ledger (
    id            INTEGER PRIMARY KEY,
    guild_id      INTEGER NOT NULL,
    user_id       INTEGER NOT NULL,
    delta         INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    reason        TEXT NOT NULL CHECK (reason IN ('welcome', 'charge', 'refund', 'grant')),
    note          TEXT,
    task_id       TEXT REFERENCES tasks (id),
    actor_id      INTEGER,
    created_at    TEXT NOT NULL,
    FOREIGN KEY (guild_id, user_id) REFERENCES members (guild_id, user_id)
) STRICT;

CREATE INDEX ledger_by_member ON ledger (guild_id, user_id, id);
-- A task is charged once and refunded at most once, whatever the code above does.
CREATE UNIQUE INDEX ledger_one_charge_per_task ON ledger (task_id) WHERE reason = 'charge';
CREATE UNIQUE INDEX ledger_one_refund_per_task ON ledger (task_id) WHERE reason = 'refund';

CREATE TRIGGER ledger_is_append_only_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_is_append_only_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;
