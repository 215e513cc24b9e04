-- The alert sender counts a channel's recent alerts to tell a storm
-- (alerts.storm_threshold within alerts.storm_window_s); without this the
-- count would read the whole outbox, which only grows.
CREATE INDEX alerts_by_channel ON alerts (channel_id, created_at);
