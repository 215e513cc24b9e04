//! API keys as the store keeps them. The token itself is never kept, only
//! its hash; generating, hashing and checking tokens is `auth`'s business.

use super::time::Millis;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Reads only: GET, HEAD, OPTIONS and the WebSocket.
    Read,
    /// Everything.
    Write,
}

impl Scope {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    /// Parses `read` or `write`.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }
}

/// A stored API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Its id.
    pub id: i64,
    /// Unique name given at creation.
    pub name: String,
    /// [`Scope`] as stored; kept as text so that `keys list` still
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
    /// What it may do.
    pub scope: Scope,
    /// Hex SHA-256 of the token.
    pub token_hash: &'a str,
    /// Creation time.
    pub created_at: Millis,
}
