-- The alert sender's state per outbox row, in columns rather than in
-- last_error's text (which is for people):
-- held_until: set while (and after) a maintenance window holds the alert,
--   the window's end as last seen; a down that was held and whose service
--   recovered meanwhile is not sent.
-- first_attempt_at: when delivery was first tried; alerts.max_age_s counts
--   from here, so an alert held or waiting for long still gets its retries.
-- group_id: a storm's grouped message the alert went out in (the lowest
--   member id); a retry resends exactly that set under the same id.
ALTER TABLE alerts ADD COLUMN held_until BIGINT;
ALTER TABLE alerts ADD COLUMN first_attempt_at BIGINT;
ALTER TABLE alerts ADD COLUMN group_id BIGINT;
