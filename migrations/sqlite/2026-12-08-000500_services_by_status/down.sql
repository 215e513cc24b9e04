DROP INDEX services_by_status;
