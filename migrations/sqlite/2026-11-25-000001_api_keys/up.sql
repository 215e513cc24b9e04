-- API keys. Only a SHA-256 hash of each token is kept; the token itself is
-- shown once, when the key is created.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name         TEXT    NOT NULL UNIQUE,
    scope        TEXT    NOT NULL CHECK (scope IN ('read', 'write')),
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
