-- Budgets admins control: a server's allowance and cap, role allowances, the concurrency
-- limit, and a record of who changed which setting.
CREATE TABLE guild_settings (
    guild_id         INTEGER PRIMARY KEY,
    allowance        INTEGER CHECK (allowance >= 0),
    allowance_period TEXT NOT NULL DEFAULT 'none'
                     CHECK (allowance_period IN ('day', 'week', 'month', 'none')),
    cap              INTEGER CHECK (cap >= 0),
    cap_period       TEXT NOT NULL DEFAULT 'month' CHECK (cap_period IN ('day', 'week', 'month')),
    max_concurrent   INTEGER NOT NULL DEFAULT 2 CHECK (max_concurrent >= 1),
    updated_at       TEXT NOT NULL
) STRICT;

CREATE TABLE role_allowances (
    guild_id   INTEGER NOT NULL,
    role_id    INTEGER NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount > 0),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (guild_id, role_id)
) STRICT;

CREATE TABLE settings_changes (
    id         INTEGER PRIMARY KEY,
    guild_id   INTEGER NOT NULL,
    actor_id   INTEGER NOT NULL,
    setting    TEXT NOT NULL,
    old_value  TEXT,
    new_value  TEXT,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX settings_changes_by_guild ON settings_changes (guild_id, id);

-- The period whose allowance a member last received, e.g. 'week:2026-11-23'.
ALTER TABLE members ADD COLUMN refilled_period TEXT;

-- Spending per server and across servers is summed from tasks by creation time.
CREATE INDEX tasks_by_guild_time ON tasks (guild_id, created_at);
CREATE INDEX tasks_by_time ON tasks (created_at);

-- The ledger gains the 'refill' reason. SQLite cannot change a CHECK in place, so the
-- table is rebuilt with every row kept (DROP TABLE fires no triggers).
CREATE TABLE ledger_new (
    id            INTEGER PRIMARY KEY,
    guild_id      INTEGER NOT NULL,
    user_id       INTEGER NOT NULL,
    delta         INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    reason        TEXT NOT NULL
                  CHECK (reason IN ('welcome', 'charge', 'refund', 'grant', 'refill')),
    note          TEXT,
    task_id       TEXT REFERENCES tasks (id),
    actor_id      INTEGER,
    created_at    TEXT NOT NULL,
    FOREIGN KEY (guild_id, user_id) REFERENCES members (guild_id, user_id)
) STRICT;
INSERT INTO ledger_new SELECT * FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_new RENAME TO ledger;

CREATE INDEX ledger_by_member ON ledger (guild_id, user_id, id);
CREATE INDEX ledger_by_guild ON ledger (guild_id, id);
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
