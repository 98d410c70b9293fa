-- Polls bound when a render ended: it was still running at the last poll that saw it running
-- and done at the poll that saw it done (seconds after submission). The poller learns each
-- preset's render times from these bounds; delivery time, used before, added the clip's
-- download and post to them.
-- Renders finished before this migration are not learned from: their polls were up to a
-- minute apart, too loose to bound when they ended, so they are left without bounds.
ALTER TABLE tasks ADD COLUMN running_seconds REAL;
ALTER TABLE tasks ADD COLUMN ready_seconds REAL;
DROP INDEX tasks_done_by_preset;
CREATE INDEX tasks_renders_by_preset ON tasks (duration, sound, submitted_at)
WHERE ready_seconds IS NOT NULL;
