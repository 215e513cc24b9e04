-- Same tables as migrations/sqlite. Hourly rollups: per service and hour
-- (hour_start = checked_at rounded down to the hour, epoch ms), the number of
-- checks, failures, and the sum and maximum of their latencies. The sum (not
-- the mean) is kept so that adding more logs to an hour stays exact.
CREATE TABLE hourly_rollups (
    service_id     BIGINT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    hour_start     BIGINT NOT NULL,
    checks         BIGINT NOT NULL,
    failures       BIGINT NOT NULL,
    latency_sum_ms BIGINT NOT NULL,
    latency_max_ms BIGINT NOT NULL,
    PRIMARY KEY (service_id, hour_start)
);

-- How far the rollups have read health_logs: every log with an id up to
-- last_log_id is counted in them (and only those may be deleted).
CREATE TABLE rollup_progress (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    last_log_id BIGINT NOT NULL
);
INSERT INTO rollup_progress (id, last_log_id) VALUES (1, 0);

-- Retention deletes the oldest logs first, across every service.
CREATE INDEX health_logs_by_checked_at ON health_logs (checked_at);
