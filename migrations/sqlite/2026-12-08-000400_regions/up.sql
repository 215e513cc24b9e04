-- Regions and quorum (DESIGN.md "Regions and quorum"). services.regions
-- lists the regions that check a service each round, as a JSON array in the
-- order given ('[]': not regional); services.quorum is how many of them must
-- see a round fail for DOWN (NULL: a majority).
ALTER TABLE services ADD COLUMN regions TEXT NOT NULL DEFAULT '[]';
ALTER TABLE services ADD COLUMN quorum INTEGER CHECK (quorum IS NULL OR quorum >= 1);

-- Each region's result of a round is a log of its own, so the key that makes
-- a redelivered result a no-op becomes (service, round, region). '' stands
-- for no region (a service without regions: one log a round), not NULL,
-- which a unique key would never see repeat. SQLite cannot change a table's
-- UNIQUE constraint in place: the table is rebuilt, ids kept.
CREATE TABLE health_logs_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    service_id      INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    status          TEXT    NOT NULL,
    latency_ms      INTEGER NOT NULL,
    status_code     INTEGER,
    error           TEXT,
    scheduled_at    INTEGER NOT NULL,
    checked_at      INTEGER NOT NULL,
    cert_expires_at BIGINT,
    region          TEXT    NOT NULL DEFAULT '',
    -- one log per check and region: a redelivered result is a no-op
    UNIQUE (service_id, scheduled_at, region)
);
INSERT INTO health_logs_new
    (id, service_id, status, latency_ms, status_code, error, scheduled_at, checked_at,
     cert_expires_at)
    SELECT id, service_id, status, latency_ms, status_code, error, scheduled_at, checked_at,
           cert_expires_at
    FROM health_logs;
-- AUTOINCREMENT's high-water mark moves over too: a log id (the logs'
-- paging cursor) is never reused, even one whose log retention deleted.
DELETE FROM sqlite_sequence WHERE name = 'health_logs_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'health_logs_new', seq FROM sqlite_sequence WHERE name = 'health_logs';
DROP TABLE health_logs;
ALTER TABLE health_logs_new RENAME TO health_logs;
CREATE INDEX health_logs_by_service_time ON health_logs (service_id, checked_at DESC, id DESC);
CREATE INDEX health_logs_by_checked_at ON health_logs (checked_at);
