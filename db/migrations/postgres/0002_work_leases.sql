-- Work is claimed, not assumed: a process that submits, polls or delivers a task holds a lease
-- on its row (who, and until when, on the poller's clock in seconds) and renews it while it
-- works. Every later write checks the lease, so a process that lost it cannot act on the task.
ALTER TABLE tasks ADD COLUMN lease_owner TEXT COLLATE "C";
ALTER TABLE tasks ADD COLUMN lease_expires_at DOUBLE PRECISION;
-- Cut-off submissions are found by their lapsed leases.
DROP INDEX tasks_submitting;
CREATE INDEX tasks_submitting ON tasks (lease_expires_at) WHERE state = 'submitting';

-- The processes running on this database, with the shards each connects and a heartbeat:
-- a process whose shards overlap a live one's refuses to start.
CREATE TABLE processes (
    id           TEXT COLLATE "C" PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    shard_count  INTEGER,
    -- JSON: null connects every shard of shard_count, [] none (SHARD_IDS=none).
    shard_ids    TEXT NOT NULL,
    started_at   TEXT COLLATE "C" NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL
);

-- The tasks held right now: when another process's claims come free.
CREATE INDEX tasks_leased ON tasks (lease_expires_at) WHERE lease_owner IS NOT NULL;
