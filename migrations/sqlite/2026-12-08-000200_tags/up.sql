-- Tags (DESIGN.md "Lists, tags, ..."): services.tags holds a service's tags
-- as a JSON array in the order given, read with the row (no join to show a
-- service). service_tags holds the same tags one per row, keyed by
-- (tag, service_id), so `GET /services?tag=prod` walks the index in id order
-- instead of parsing every service's list. Triggers keep it in step with
-- the column on every write path (create, push create, PUT, PATCH), and the
-- foreign key drops a deleted service's rows.
ALTER TABLE services ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';

CREATE TABLE service_tags (
    tag        TEXT    NOT NULL,
    service_id INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    PRIMARY KEY (tag, service_id)
) WITHOUT ROWID;
-- For the cascade on delete and the re-write on update.
CREATE INDEX service_tags_by_service ON service_tags (service_id);

CREATE TRIGGER service_tags_on_insert AFTER INSERT ON services
BEGIN
    INSERT INTO service_tags (tag, service_id)
        SELECT value, NEW.id FROM json_each(NEW.tags);
END;

CREATE TRIGGER service_tags_on_update AFTER UPDATE OF tags ON services
WHEN OLD.tags IS NOT NEW.tags
BEGIN
    DELETE FROM service_tags WHERE service_id = NEW.id;
    INSERT INTO service_tags (tag, service_id)
        SELECT value, NEW.id FROM json_each(NEW.tags);
END;
