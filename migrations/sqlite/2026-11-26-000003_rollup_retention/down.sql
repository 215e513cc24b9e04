DROP INDEX hourly_rollups_by_hour;
