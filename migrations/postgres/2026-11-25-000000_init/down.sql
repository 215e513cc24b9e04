DROP TABLE state_changes;
DROP TABLE health_logs;
DROP TABLE services;
