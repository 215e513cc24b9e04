-- Tags (DESIGN.md "Lists, tags, ..."): services.tags holds a service's tags
-- as a JSON array in the order given, read with the row (no join to show a
-- service). service_tags holds the same tags one per row, keyed by
-- (tag, service_id), so `GET /services?tag=prod` walks the index in id order
-- instead of parsing every service's list. A trigger keeps it in step with
-- the column on every write path (create, push create, PUT, PATCH), and the
-- foreign key drops a deleted service's rows.
ALTER TABLE services ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';

CREATE TABLE service_tags (
    tag        TEXT   NOT NULL,
    service_id BIGINT NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    PRIMARY KEY (tag, service_id)
);
-- For the cascade on delete and the re-write on update.
CREATE INDEX service_tags_by_service ON service_tags (service_id);

CREATE FUNCTION service_tags_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        DELETE FROM service_tags WHERE service_id = NEW.id;
    END IF;
    INSERT INTO service_tags (tag, service_id)
        SELECT t, NEW.id FROM jsonb_array_elements_text(NEW.tags::jsonb) AS t;
    RETURN NULL;
END
$$;

CREATE TRIGGER service_tags_on_insert AFTER INSERT ON services
    FOR EACH ROW EXECUTE FUNCTION service_tags_sync();
CREATE TRIGGER service_tags_on_update AFTER UPDATE OF tags ON services
    FOR EACH ROW WHEN (OLD.tags IS DISTINCT FROM NEW.tags)
    EXECUTE FUNCTION service_tags_sync();
