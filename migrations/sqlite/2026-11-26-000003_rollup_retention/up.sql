-- Rollups older than logs.rollup_retention_days are deleted oldest first, in
-- small batches, across every service.
CREATE INDEX hourly_rollups_by_hour ON hourly_rollups (hour_start);
