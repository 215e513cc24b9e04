-- The scheduler's periodic reconcile (src/store/changed.rs) reads only the
-- services changed since the last one, walking this index from its
-- watermark, instead of every service.
CREATE INDEX services_by_updated_at ON services (updated_at, id);
