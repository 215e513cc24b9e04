DROP TRIGGER service_tags_on_update;
DROP TRIGGER service_tags_on_insert;
DROP TABLE service_tags;
ALTER TABLE services DROP COLUMN tags;
