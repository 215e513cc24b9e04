-- A timeout the user never set follows the interval (min(10 s, interval)),
-- so changing the interval alone never fails on it. timeout_s keeps the
-- timeout in effect (its CHECK against interval_s holds either way); this
-- says whether it is that default. Existing rows count as set: whether a
-- stored 10 was typed or defaulted cannot be told, and set keeps their
-- behaviour exactly as it was.
ALTER TABLE services ADD COLUMN timeout_follows_interval BOOLEAN NOT NULL DEFAULT 0;
