-- Members may ask for a DM when a clip is ready; render-time estimates read recent finished
-- tasks of one preset.
ALTER TABLE members ADD COLUMN notify_dm INTEGER NOT NULL DEFAULT 0 CHECK (notify_dm IN (0, 1));
CREATE INDEX tasks_done_by_preset ON tasks (duration, sound, finished_at) WHERE state = 'done';
