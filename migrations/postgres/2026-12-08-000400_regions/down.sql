-- Back to one log a round: the first region's log of each round is kept.
DELETE FROM health_logs h USING health_logs k
    WHERE h.service_id = k.service_id AND h.scheduled_at = k.scheduled_at AND h.id > k.id;
ALTER TABLE health_logs DROP CONSTRAINT health_logs_service_id_scheduled_at_region_key;
ALTER TABLE health_logs
    ADD CONSTRAINT health_logs_service_id_scheduled_at_key UNIQUE (service_id, scheduled_at);
ALTER TABLE health_logs DROP COLUMN region;
ALTER TABLE services DROP COLUMN quorum;
ALTER TABLE services DROP COLUMN regions;
