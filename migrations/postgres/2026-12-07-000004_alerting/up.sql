-- Alerting (DESIGN.md, "Statuses and noise control", "Alerting"): noise
-- control on services, channels, the alert outbox and maintenance windows.

-- Consecutive failing / passing rounds that change the status, and the
-- seconds to the next check while a failure is unconfirmed (NULL: the
-- interval). The defaults keep one check deciding.
ALTER TABLE services ADD COLUMN failure_threshold INTEGER NOT NULL DEFAULT 1
    CHECK (failure_threshold BETWEEN 1 AND 100);
ALTER TABLE services ADD COLUMN success_threshold INTEGER NOT NULL DEFAULT 1
    CHECK (success_threshold BETWEEN 1 AND 100);
ALTER TABLE services ADD COLUMN retry_interval_s BIGINT CHECK (retry_interval_s >= 1);
-- The service's own channels, a JSON array of channel ids ("[1,2]"); NULL is
-- none. Channels with all_services = TRUE apply besides.
ALTER TABLE services ADD COLUMN channel_ids TEXT;

CREATE TABLE channels (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    kind           TEXT    NOT NULL,
    -- The kind's settings as JSON, secrets included: they never leave the
    -- store except towards the channel itself.
    config         TEXT    NOT NULL,
    all_services   BOOLEAN NOT NULL DEFAULT FALSE,
    remind_every_s BIGINT  NOT NULL DEFAULT 0 CHECK (remind_every_s >= 0),
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);

-- The outbox: one row per (status change, channel), written in the
-- transaction that records the change, delivered by the sender.
CREATE TABLE alerts (
    id              BIGSERIAL PRIMARY KEY,
    -- NULL for a channel test.
    service_id      BIGINT,
    channel_id      BIGINT  NOT NULL,
    -- down, up, degraded, reminder, test.
    event           TEXT    NOT NULL,
    old_status      TEXT    NOT NULL,
    new_status      TEXT    NOT NULL,
    -- Due time of the check that made the change (for a reminder or a test,
    -- its own creation time): with service, channel and event, what makes
    -- an alert unique, so a redelivered result cannot alert twice.
    scheduled_at    BIGINT  NOT NULL,
    -- What the message needs that may change later (name, the deciding
    -- check), as JSON, frozen at the change.
    payload         TEXT    NOT NULL,
    -- pending, sent, failed.
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    sent_at         BIGINT,
    -- When the sender may next try it (backoff, maintenance holds).
    next_attempt_at BIGINT  NOT NULL,
    UNIQUE (service_id, channel_id, event, scheduled_at)
);
CREATE INDEX alerts_due ON alerts (next_attempt_at) WHERE state = 'pending';
CREATE INDEX alerts_newest ON alerts (id DESC);

CREATE TABLE maintenance_windows (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT    NOT NULL,
    -- JSON array of service ids, or NULL for every service.
    service_ids TEXT,
    tag         TEXT,
    -- One-off window (epoch ms), or a recurring one (cron, duration, zone).
    start_at    BIGINT,
    end_at      BIGINT,
    cron        TEXT,
    duration_s  BIGINT,
    timezone    TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
