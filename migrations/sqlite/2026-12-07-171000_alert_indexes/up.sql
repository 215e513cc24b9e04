-- alerts_newest (id DESC) only repeated the primary key. GET /alerts?state=
-- lists one state newest first: with (state, id) a page of pending or failed
-- alerts reads that state's newest rows, not the whole history from the top.
DROP INDEX alerts_newest;
CREATE INDEX alerts_by_state ON alerts (state, id);
-- Retention (log maintenance) deletes sent and failed alerts created before
-- alerts.retention_days: this finds them without reading the rest.
CREATE INDEX alerts_done_by_age ON alerts (state, created_at);
-- Deleting a channel finds the services that list it among those listing
-- any channel, not among all services.
CREATE INDEX services_with_channels ON services (id) WHERE channel_ids IS NOT NULL;
