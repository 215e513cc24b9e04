DROP TABLE maintenance_windows;
DROP TABLE alerts;
DROP TABLE channels;
ALTER TABLE services DROP COLUMN channel_ids;
ALTER TABLE services DROP COLUMN retry_interval_s;
ALTER TABLE services DROP COLUMN success_threshold;
ALTER TABLE services DROP COLUMN failure_threshold;
