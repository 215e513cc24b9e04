-- Regions and quorum (DESIGN.md "Regions and quorum"). services.regions
-- lists the regions that check a service each round, as a JSON array in the
-- order given ('[]': not regional); services.quorum is how many of them must
-- see a round fail for DOWN (NULL: a majority).
ALTER TABLE services ADD COLUMN regions TEXT NOT NULL DEFAULT '[]';
ALTER TABLE services ADD COLUMN quorum INTEGER CHECK (quorum >= 1);

-- Each region's result of a round is a log of its own, so the key that makes
-- a redelivered result a no-op becomes (service, round, region). '' stands
-- for no region (a service without regions: one log a round), not NULL,
-- which a unique key would never see repeat.
ALTER TABLE health_logs ADD COLUMN region TEXT NOT NULL DEFAULT '';
ALTER TABLE health_logs DROP CONSTRAINT health_logs_service_id_scheduled_at_key;
ALTER TABLE health_logs
    ADD CONSTRAINT health_logs_service_id_scheduled_at_region_key
    UNIQUE (service_id, scheduled_at, region);
