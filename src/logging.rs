//! The process's log output: where it goes and what it shows by default.
//!
//! Without `RUST_LOG`, healthmon's own events show from INFO up and every
//! dependency's only from WARN up: actix's "starting N workers", amqprs's
//! channel chatter and hyper's connection lines are routine, and at INFO
//! they would bury the start-up banner and the status changes a person
//! reads the log for. `RUST_LOG` replaces the default entirely, so
//! `RUST_LOG=debug` (or `RUST_LOG=actix_server=info`) still shows them.

use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is unset or empty: healthmon at INFO,
/// everything else at WARN.
pub const DEFAULT_FILTER: &str = "warn,healthmon=info";

/// The filter for a `RUST_LOG` value: the value's directives when it is set
/// and not blank, [`DEFAULT_FILTER`] otherwise. A value that does not parse
/// falls back to the default too (with the unparsable parts reported on
/// stderr by [`init`]), so a typo never silences the log.
pub fn filter_for(rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        None => (EnvFilter::new(DEFAULT_FILTER), None),
        Some(value) => match EnvFilter::try_new(value) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some(format!(
                    "RUST_LOG={value:?} is not a valid filter ({e}); using {DEFAULT_FILTER:?}"
                )),
            ),
        },
    }
}

/// Installs the process's subscriber: human-readable lines on stderr (in
/// colour only on a terminal, so journald and files get plain text),
/// filtered by `RUST_LOG` or [`DEFAULT_FILTER`]. Call once, first thing in
/// `main`.
pub fn init() {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let (filter, complaint) = filter_for(rust_log.as_deref());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(complaint) = complaint {
        tracing::warn!("{complaint}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_or_blank_rust_log_means_the_quiet_default() {
        for value in [None, Some(""), Some("  ")] {
            let (filter, complaint) = filter_for(value);
            assert_eq!(
                filter.to_string(),
                EnvFilter::new(DEFAULT_FILTER).to_string()
            );
            assert!(complaint.is_none());
        }
    }

    #[test]
    fn rust_log_replaces_the_default() {
        let (filter, complaint) = filter_for(Some("debug"));
        assert_eq!(filter.to_string(), "debug");
        assert!(complaint.is_none());
    }

    #[test]
    fn a_bad_rust_log_falls_back_and_says_so() {
        let (filter, complaint) = filter_for(Some("healthmon=loud"));
        assert_eq!(
            filter.to_string(),
            EnvFilter::new(DEFAULT_FILTER).to_string()
        );
        assert!(complaint.unwrap().contains("healthmon=loud"));
    }
}
