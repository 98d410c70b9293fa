-- The poller looks for charged tasks whose submission was cut off every half minute;
-- this keeps that look at the few rows in `submitting` rather than the whole table.
CREATE INDEX tasks_submitting ON tasks (created_at) WHERE state = 'submitting';
