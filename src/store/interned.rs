//! One copy of each distinct check-options document in memory.
//!
//! Services are read often (the scheduler loads every one at start and
//! reconciles every minute; lists and snapshots read them too), and many
//! share their options (the same `/health` assertions on a fleet of
//! instances). Parsed one row at a time, 100,000 services with a
//! `body_contains` and a `json` assertion held about 50 MB of identical
//! strings and JSON values (BENCHMARKS.md "Check kinds"). Rows with the same
//! stored text now share one parsed copy. The table holds weak references,
//! so options no service uses any more are freed, and it is pruned of them
//! whenever it doubles: it stays within twice the distinct options alive.

use crate::domain::CheckOptions;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Entries below which the table is never pruned.
const MIN_PRUNE_AT: usize = 1024;

struct Table {
    by_text: HashMap<String, Weak<crate::domain::CheckFields>>,
    prune_at: usize,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

/// The options stored as `text`, sharing memory with every other service
/// whose options read the same.
pub fn options(text: &str) -> CheckOptions {
    if text == "{}" {
        return CheckOptions::default();
    }
    // A poisoned lock only loses the sharing, never the options.
    let Ok(mut guard) = TABLE.lock() else {
        return CheckOptions::from_json(text);
    };
    let table = guard.get_or_insert_with(|| Table {
        by_text: HashMap::new(),
        prune_at: MIN_PRUNE_AT,
    });
    if let Some(fields) = table.by_text.get(text).and_then(Weak::upgrade) {
        return CheckOptions::from_shared(fields);
    }
    let parsed = CheckOptions::from_json(text);
    if let Some(fields) = parsed.shared() {
        if table.by_text.len() >= table.prune_at {
            table.by_text.retain(|_, fields| fields.strong_count() > 0);
            table.prune_at = (table.by_text.len() * 2).max(MIN_PRUNE_AT);
        }
        table
            .by_text
            .insert(text.to_owned(), Arc::downgrade(fields));
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_shares_one_copy_and_a_change_stays_private() {
        let text = r#"{"body_contains":"ok","json":[{"pointer":"/status","equals":"ok"}]}"#;
        let a = options(text);
        let mut b = options(text);
        let (Some(fa), Some(fb)) = (a.shared(), b.shared()) else {
            panic!("both set");
        };
        assert!(Arc::ptr_eq(fa, fb), "one copy");
        assert_eq!(a.body_contains.as_deref(), Some("ok"));
        b.body_contains = Some("changed".into());
        assert_eq!(
            a.body_contains.as_deref(),
            Some("ok"),
            "a write copies first"
        );
        assert!(options("{}").is_empty());
        assert!(options("not json").is_empty());
    }

    #[test]
    fn options_no_one_holds_are_pruned() {
        for i in 0..(MIN_PRUNE_AT * 3) {
            drop(options(&format!(r#"{{"body_contains":"gone {i}"}}"#)));
        }
        let kept = options(r#"{"body_contains":"kept"}"#);
        let len = TABLE
            .lock()
            .map(|t| t.as_ref().map_or(0, |t| t.by_text.len()))
            .unwrap_or(0);
        assert!(len <= MIN_PRUNE_AT * 2, "{len} entries");
        assert!(!kept.is_empty());
    }
}
