-- Back to one log a round: the first region's log of each round is kept.
CREATE TABLE health_logs_old (
    id              INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    service_id      INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    status          TEXT    NOT NULL,
    latency_ms      INTEGER NOT NULL,
    status_code     INTEGER,
    error           TEXT,
    scheduled_at    INTEGER NOT NULL,
    checked_at      INTEGER NOT NULL,
    cert_expires_at BIGINT,
    UNIQUE (service_id, scheduled_at)
);
INSERT OR IGNORE INTO health_logs_old
    (id, service_id, status, latency_ms, status_code, error, scheduled_at, checked_at,
     cert_expires_at)
    SELECT id, service_id, status, latency_ms, status_code, error, scheduled_at, checked_at,
           cert_expires_at
    FROM health_logs ORDER BY id;
DELETE FROM sqlite_sequence WHERE name = 'health_logs_old';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'health_logs_old', seq FROM sqlite_sequence WHERE name = 'health_logs';
DROP TABLE health_logs;
ALTER TABLE health_logs_old RENAME TO health_logs;
CREATE INDEX health_logs_by_service_time ON health_logs (service_id, checked_at DESC, id DESC);
CREATE INDEX health_logs_by_checked_at ON health_logs (checked_at);
ALTER TABLE services DROP COLUMN quorum;
ALTER TABLE services DROP COLUMN regions;
