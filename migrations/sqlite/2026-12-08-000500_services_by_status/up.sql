-- GET /services?status=... (src/store/list.rs): a page walks this index from
-- the cursor, once per status asked for, instead of every service after it.
CREATE INDEX services_by_status ON services (last_status, id);
