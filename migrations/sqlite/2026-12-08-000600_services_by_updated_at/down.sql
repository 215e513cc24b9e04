DROP INDEX services_by_updated_at;
