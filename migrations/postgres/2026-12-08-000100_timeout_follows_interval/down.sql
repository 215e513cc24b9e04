ALTER TABLE services DROP COLUMN timeout_follows_interval;
