ALTER TABLE alerts DROP COLUMN group_id;
ALTER TABLE alerts DROP COLUMN first_attempt_at;
ALTER TABLE alerts DROP COLUMN held_until;
