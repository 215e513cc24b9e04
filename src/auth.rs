//! API keys: token generation and hashing, and the in-memory key ring the
//! HTTP layer authenticates against.
//!
//! A token is `hm_` followed by 64 hex digits (256 random bits). Only its
//! SHA-256 is stored; a request's token is hashed and looked up by hash, so
//! the lookup's timing depends on the hash, never on how much of a guessed
//! token matches a real one. Keys are created and revoked by the `keys`
//! subcommand (another process), so the ring reloads the table every
//! [`RELOAD_EVERY`]: that is how soon a new key works and a revoked one
//! stops working (open WebSockets included).

pub use crate::domain::api_key::Scope;

use crate::domain::api_key::NewApiKey;
use crate::domain::time::now_ms;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a loaded view of the keys is trusted.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// `last_used_at` is written at most this often per key.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// The prefix of every token.
pub const TOKEN_PREFIX: &str = "hm_";

/// Key management failures.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The OS random source failed.
    #[error("cannot generate a random token")]
    Random,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A bad key name.
    #[error("invalid key name: {0}")]
    BadName(String),
    /// The name is taken.
    #[error("a key named {0:?} exists already")]
    Exists(String),
    /// No such key.
    #[error("no key named {0:?}")]
    NoSuchKey(String),
}

/// A fresh token: `hm_` + 64 hex digits from the OS's random source.
pub fn generate_token() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| AuthError::Random)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex(&bytes)))
}

/// The stored form of a token: hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Checks a key name: 1..=64 of letters, digits, `-`, `_`, `.`.
pub fn check_key_name(name: &str) -> Result<(), AuthError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadName(
            "use 1 to 64 letters, digits, '-', '_' or '.'".into(),
        ))
    }
}

/// Creates a key and returns its token (shown once, never stored).
pub async fn create_key(store: &Store, name: &str, scope: Scope) -> Result<String, AuthError> {
    check_key_name(name)?;
    let token = generate_token()?;
    let hash = hash_token(&token);
    let created = store
        .create_key(&NewApiKey {
            name,
            scope,
            token_hash: &hash,
            created_at: now_ms(),
        })
        .await?;
    if created {
        Ok(token)
    } else {
        Err(AuthError::Exists(name.to_owned()))
    }
}

/// A key as the ring knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Row id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
}

struct View {
    by_hash: HashMap<String, Key>,
    loaded_at: Instant,
}

/// The keys in memory, reloaded from the store every [`RELOAD_EVERY`].
pub struct KeyRing {
    store: Store,
    view: RwLock<Option<Arc<View>>>,
    touched: Mutex<HashMap<i64, Instant>>,
}

/// What the ring says about a request's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No key exists at all.
    NoKeys,
    /// The token belongs to this key.
    Key(Key),
    /// Keys exist and the token is none of them (or missing).
    Unknown,
}

impl KeyRing {
    /// A ring over the store's keys (loaded on first use).
    pub fn new(store: Store) -> Self {
        Self {
            store,
            view: RwLock::new(None),
            touched: Mutex::new(HashMap::new()),
        }
    }

    async fn current(&self) -> Result<Arc<View>, crate::store::StoreError> {
        let cached = self.view.read().ok().and_then(|v| v.clone());
        if let Some(view) = &cached
            && view.loaded_at.elapsed() < RELOAD_EVERY
        {
            return Ok(Arc::clone(view));
        }
        match self.store.list_keys().await {
            Ok(rows) => {
                let by_hash = rows
                    .into_iter()
                    .filter_map(|r| {
                        let scope = Scope::parse(&r.scope)?;
                        Some((
                            r.token_hash,
                            Key {
                                id: r.id,
                                name: r.name,
                                scope,
                            },
                        ))
                    })
                    .collect();
                let view = Arc::new(View {
                    by_hash,
                    loaded_at: Instant::now(),
                });
                if let Ok(mut slot) = self.view.write() {
                    *slot = Some(Arc::clone(&view));
                }
                Ok(view)
            }
            // A passing store failure: keep using what was loaded last.
            Err(e) => match cached {
                Some(view) => {
                    tracing::warn!(error = %e, "cannot reload API keys; using the last ones loaded");
                    Ok(view)
                }
                None => Err(e),
            },
        }
    }

    /// Judges a token (or its absence).
    pub async fn verdict(&self, token: Option<&str>) -> Result<Verdict, crate::store::StoreError> {
        let view = self.current().await?;
        if view.by_hash.is_empty() {
            return Ok(Verdict::NoKeys);
        }
        let Some(token) = token else {
            return Ok(Verdict::Unknown);
        };
        Ok(match view.by_hash.get(&hash_token(token)) {
            Some(key) => Verdict::Key(key.clone()),
            None => Verdict::Unknown,
        })
    }

    /// Whether a key (by id) still exists; used by open WebSockets.
    pub async fn still_valid(&self, id: i64) -> bool {
        match self.current().await {
            Ok(view) => view.by_hash.values().any(|k| k.id == id),
            // Unknown is not revoked: keep the client through a store hiccup.
            Err(_) => true,
        }
    }

    /// Records a use of `key`, writing `last_used_at` at most once a minute.
    pub async fn touch(&self, key: &Key) {
        let due = match self.touched.lock() {
            Ok(mut touched) => {
                let due = touched
                    .get(&key.id)
                    .is_none_or(|t| t.elapsed() >= TOUCH_EVERY);
                if due {
                    touched.insert(key.id, Instant::now());
                }
                due
            }
            Err(_) => false,
        };
        if due && let Err(e) = self.store.touch_key(key.id, now_ms()).await {
            tracing::warn!(error = %e, key = %key.name, "cannot record a key's last use");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_long_and_unique() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert!(a.starts_with("hm_"));
        assert_eq!(a.len(), 3 + 64);
        assert_ne!(a, b);
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn key_names_are_checked() {
        assert!(check_key_name("ci-bot_1.0").is_ok());
        assert!(check_key_name("").is_err());
        assert!(check_key_name("has space").is_err());
        assert!(check_key_name(&"x".repeat(65)).is_err());
    }
}
