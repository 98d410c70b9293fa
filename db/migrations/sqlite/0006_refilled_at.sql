-- When a member last received their allowance. Refills compare it with the start of the
-- current period, so switching the period (week → month → week) cannot refill twice.
ALTER TABLE members ADD COLUMN refilled_at TEXT;
UPDATE members SET refilled_at = created_at;
-- The period name it replaces could not tell a switched period from a new one.
ALTER TABLE members DROP COLUMN refilled_period;
