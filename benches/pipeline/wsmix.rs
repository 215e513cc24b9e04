//! `--ws-filter QUERY` (with `--ws-clients N`, and `--ws-full-clients M`
//! beside them): N dashboards on `/ws?QUERY` and M on the full feed, as
//! issue 17 point 6 mixes them (10,000 on `events=status_change`, 100 on
//! everything), with `--flap-every`/`--flap-share` turning targets over so
//! there are status changes to deliver.
//!
//! The filtered clients are judged apart (the `ws_filtered` object):
//! - every status change in the stored logs of the window (each log whose
//!   status differs from the service's one before it; every service is UP
//!   before the first flip) must have reached every client asking for
//!   `status_change` events, as a `status_change` event with that service
//!   and `changed_at`: `changes_expected`, `fewest_got`, `every_event`;
//! - a client that did not ask for `check` events must get none
//!   (`check_events_unasked`);
//! - delivery latency (receive time − `changed_at`) over every client's
//!   status changes: p50, p99, max.

use serde_json::{Value, json};
use std::collections::HashSet;

/// The `ws_filtered` object for `query` (the URL's filter), from the
/// filtered clients' records and the status changes in the logs since
/// `from` ((service, `checked_at`)), for the window [from, to).
pub fn figures(
    query: &str,
    clients: &[crate::WsRecord],
    logged: &[(i64, i64)],
    from: i64,
    to: i64,
) -> Value {
    let asks = |kind: &str| {
        let types: Vec<&str> = url_events(query);
        types.is_empty() || types.contains(&kind)
    };
    let expected: HashSet<(i64, i64)> = logged
        .iter()
        .filter(|(_, at)| (from..to).contains(at))
        .copied()
        .collect();
    let mut lat = Vec::new();
    // How the first few that ended early ended.
    let mut why = Vec::new();
    let (mut fewest, mut every, mut closed, mut unasked) = (usize::MAX, true, 0, 0usize);
    for c in clients {
        let got: HashSet<(i64, i64)> = c
            .changes
            .iter()
            .filter(|(_, at, _)| (from..to).contains(at))
            .map(|&(s, at, _)| (s, at))
            .collect();
        lat.extend(
            c.changes
                .iter()
                .filter(|(_, at, _)| (from..to).contains(at))
                .map(|c| c.2),
        );
        let have = expected.intersection(&got).count();
        fewest = fewest.min(have);
        closed += usize::from(c.closed_early);
        if c.closed_early && why.len() < 3 {
            why.push(format!("after {} messages: {}", c.messages, c.closed_why));
        }
        if asks("status_change") {
            every &= !c.closed_early && have == expected.len();
        }
        if !asks("check") {
            unasked += c.events.len();
        }
    }
    lat.sort_unstable();
    let pct = |p| crate::measure::percentile(&lat, p);
    let figures = json!({
        "filter": query,
        "clients": clients.len(),
        "changes_expected": expected.len(),
        "fewest_got": if clients.is_empty() { 0 } else { fewest },
        "every_event": every && unasked == 0,
        "closed_early": closed,
        "check_events_unasked": unasked,
        "delivery_p50_ms": pct(0.50),
        "delivery_p99_ms": pct(0.99),
        "delivery_max_ms": lat.last().copied().unwrap_or(0),
        "deliveries": lat.len(),
        "closed_why": why,
    });
    println!(
        "[websocket] {} clients on ?{query}: {} status changes in the window's logs, fewest got {}, \
         every client every change: {}; {} check events they did not ask for; {} closed early; \
         delivery p50 {} ms, p99 {} ms, max {} ms",
        clients.len(),
        expected.len(),
        figures["fewest_got"],
        figures["every_event"],
        unasked,
        closed,
        pct(0.50),
        pct(0.99),
        figures["delivery_max_ms"]
    );
    figures
}

/// The event types named by `events=` in a query string (empty: all).
fn url_events(query: &str) -> Vec<&str> {
    query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("events="))
        .flat_map(|v| v.split(','))
        .collect()
}

/// Raises this process's soft limit on open files to its hard limit (the
/// children, healthmon included, inherit it): 10,000 WebSocket clients are
/// 10,000 sockets on each side, past a soft limit of 1,024. Returns the
/// limit now in force.
#[cfg(target_env = "gnu")]
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// Without libc's rlimit calls, the limit stays as it is (unknown: 0).
#[cfg(not(target_env = "gnu"))]
pub fn raise_nofile() -> u64 {
    0
}
