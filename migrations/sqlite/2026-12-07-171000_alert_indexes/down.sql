DROP INDEX services_with_channels;
DROP INDEX alerts_done_by_age;
DROP INDEX alerts_by_state;
CREATE INDEX alerts_newest ON alerts (id DESC);
