DROP INDEX health_logs_by_checked_at;
DROP TABLE rollup_progress;
DROP TABLE hourly_rollups;
