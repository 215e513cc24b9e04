-- Hourly rollups: per service and hour (hour_start = checked_at rounded down
-- to the hour, epoch ms), the number of checks, failures, and the sum and
-- maximum of their latencies. The sum (not the mean) is kept so that adding
-- more logs to an hour stays exact: mean = latency_sum_ms / checks.
CREATE TABLE hourly_rollups (
    service_id     INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    hour_start     INTEGER NOT NULL,
    checks         INTEGER NOT NULL,
    failures       INTEGER NOT NULL,
    latency_sum_ms INTEGER NOT NULL,
    latency_max_ms INTEGER NOT NULL,
    PRIMARY KEY (service_id, hour_start)
);

-- How far the rollups have read health_logs: every log with an id up to
-- last_log_id is counted in them (and only those may be deleted).
CREATE TABLE rollup_progress (
    id          INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    last_log_id INTEGER NOT NULL
);
INSERT INTO rollup_progress (id, last_log_id) VALUES (1, 0);

-- Retention deletes the oldest logs first, across every service.
CREATE INDEX health_logs_by_checked_at ON health_logs (checked_at);
