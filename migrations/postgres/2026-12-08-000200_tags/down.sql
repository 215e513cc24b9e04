DROP TRIGGER service_tags_on_update ON services;
DROP TRIGGER service_tags_on_insert ON services;
DROP FUNCTION service_tags_sync();
DROP TABLE service_tags;
ALTER TABLE services DROP COLUMN tags;
