//! API keys as the store keeps them. The token itself is never kept, only
//! its hash; generating, hashing and checking tokens is `auth`'s business.

use super::time::Millis;

/// A stored API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Its id.
    pub id: i64,
    /// Unique name given at creation.
    pub name: String,
    /// `read` or `write` as stored; kept as text so that `keys list` still
    /// shows a key whose scope was edited into something unknown (the key
    /// ring ignores such a key).
    pub scope: String,
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// Creation time.
    pub created_at: Millis,
    /// Last authenticated request (updated at most once a minute).
    pub last_used_at: Option<Millis>,
}

/// A key to store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewApiKey<'a> {
    /// Unique name.
    pub name: &'a str,
    /// `read` or `write`.
    pub scope: &'a str,
    /// Hex SHA-256 of the token.
    pub token_hash: &'a str,
    /// Creation time.
    pub created_at: Millis,
}
