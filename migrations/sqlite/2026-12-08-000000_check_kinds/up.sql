-- Check kinds (DESIGN.md "Check kinds"): a service's kind-specific settings
-- (method, headers, assertions, dns expect, push grace, ...) as one JSON
-- document, read and written whole with the service; a push service's
-- token, stored only as its SHA-256 (hex), unique so a ping finds its
-- service by an index; a log's certificate expiry (https and tls checks);
-- and the DEGRADED rounds of each hour, so uptime can report their share.
ALTER TABLE services ADD COLUMN check_options TEXT NOT NULL DEFAULT '{}';
ALTER TABLE services ADD COLUMN push_token_hash TEXT;
CREATE UNIQUE INDEX services_by_push_token ON services (push_token_hash) WHERE push_token_hash IS NOT NULL;
ALTER TABLE health_logs ADD COLUMN cert_expires_at BIGINT;
ALTER TABLE hourly_rollups ADD COLUMN degraded BIGINT NOT NULL DEFAULT 0;
