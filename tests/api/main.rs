//! The embedded-mode suites in one test binary (one link, not a dozen):
//! the real `healthmon` binary with a SQLite store, driven over HTTP and
//! WebSocket. A file per resource or concern; shared helpers in
//! `helpers.rs` (which re-exports `tests/common/`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod alerts;
mod auth;
mod banner;
mod bulk;
mod channels;
mod checks;
mod checks_http;
mod checks_net;
mod degraded;
mod delivery;
mod health;
mod kinds;
mod lifecycle;
mod limits;
mod lists;
mod logs;
mod maintenance;
mod metrics;
mod push;
mod regions;
mod retention;
mod schedule;
mod services;
mod status_pages;
mod target_safety;
mod thresholds;
mod websocket;
mod windows;
mod windows_tags;
mod worker;
mod ws_python;
