-- Times are integer milliseconds since the Unix epoch (UTC) on every backend.
-- AUTOINCREMENT: ids are never reused, even after the newest row is deleted.
CREATE TABLE services (
    id                INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name              TEXT    NOT NULL,
    url               TEXT    NOT NULL,
    interval_s        INTEGER NOT NULL CHECK (interval_s >= 1),
    timeout_s         INTEGER NOT NULL CHECK (timeout_s >= 1 AND timeout_s <= interval_s),
    expected_statuses TEXT,
    paused            BOOLEAN NOT NULL DEFAULT 0,
    last_status       TEXT    NOT NULL DEFAULT 'PENDING',
    last_check        INTEGER,
    last_latency_ms   INTEGER,
    -- due time of the check behind last_status: the compare-and-set key that
    -- keeps late or repeated results from reordering transitions
    last_scheduled_at INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    -- bumped by every settings change: PATCH is a compare-and-set on it
    version           INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE health_logs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    service_id   INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    status       TEXT    NOT NULL,
    latency_ms   INTEGER NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    scheduled_at INTEGER NOT NULL,
    checked_at   INTEGER NOT NULL,
    -- one log per check: a redelivered result is a no-op
    UNIQUE (service_id, scheduled_at)
);
CREATE INDEX health_logs_by_service_time ON health_logs (service_id, checked_at DESC, id DESC);

CREATE TABLE state_changes (
    id           INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    service_id   INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    old_status   TEXT    NOT NULL,
    new_status   TEXT    NOT NULL,
    latency_ms   INTEGER NOT NULL,
    scheduled_at INTEGER NOT NULL,
    changed_at   INTEGER NOT NULL,
    UNIQUE (service_id, scheduled_at)
);
