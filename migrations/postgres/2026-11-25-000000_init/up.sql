-- Same tables as migrations/sqlite, in PostgreSQL's types. Times are integer
-- milliseconds since the Unix epoch (UTC) on every backend, so one diesel
-- schema serves both.
CREATE TABLE services (
    id                BIGSERIAL PRIMARY KEY,
    name              TEXT    NOT NULL,
    url               TEXT    NOT NULL,
    interval_s        BIGINT  NOT NULL CHECK (interval_s >= 1),
    timeout_s         BIGINT  NOT NULL CHECK (timeout_s >= 1 AND timeout_s <= interval_s),
    expected_statuses TEXT,
    paused            BOOLEAN NOT NULL DEFAULT FALSE,
    last_status       TEXT    NOT NULL DEFAULT 'PENDING',
    last_check        BIGINT,
    last_latency_ms   BIGINT,
    last_scheduled_at BIGINT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    version           BIGINT  NOT NULL DEFAULT 0
);

CREATE TABLE health_logs (
    id           BIGSERIAL PRIMARY KEY,
    service_id   BIGINT  NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    status       TEXT    NOT NULL,
    latency_ms   BIGINT  NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    scheduled_at BIGINT  NOT NULL,
    checked_at   BIGINT  NOT NULL,
    UNIQUE (service_id, scheduled_at)
);
CREATE INDEX health_logs_by_service_time ON health_logs (service_id, checked_at DESC, id DESC);

CREATE TABLE state_changes (
    id           BIGSERIAL PRIMARY KEY,
    service_id   BIGINT  NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    old_status   TEXT    NOT NULL,
    new_status   TEXT    NOT NULL,
    latency_ms   BIGINT  NOT NULL,
    scheduled_at BIGINT  NOT NULL,
    changed_at   BIGINT  NOT NULL,
    UNIQUE (service_id, scheduled_at)
);
