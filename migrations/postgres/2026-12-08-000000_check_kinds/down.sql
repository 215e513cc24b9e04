ALTER TABLE hourly_rollups DROP COLUMN degraded;
ALTER TABLE health_logs DROP COLUMN cert_expires_at;
DROP INDEX services_by_push_token;
ALTER TABLE services DROP COLUMN push_token_hash;
ALTER TABLE services DROP COLUMN check_options;
