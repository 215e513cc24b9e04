//! A standard WebSocket client reads a large installation's snapshot
//! (issue 17.1): Python's `websockets` with its default limits (1 MiB a
//! message, 4,096 fragments) against 100,000 services, registered through
//! `POST /services/bulk`, paused so nothing is checked. The client is
//! `tests/support/ws_snapshot.py`; `.ci/run` installs `websockets` (pinned)
//! in a venv under target/. Without it the test skips loudly, and under CI
//! it fails (`tests/common/skip.rs`).
use crate::helpers::*;

use futures_util::StreamExt;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const SERVICES: usize = 100_000;
const PER_BULK: usize = 1000;
/// Every tenth service carries this tag.
const TAG: &str = "tenth";

/// A Python that has `websockets` with its asyncio client (13.0 or later):
/// `HEALTHMON_TEST_WS_PYTHON` if set, else the venv `.ci/run` makes, else
/// the `python3` on PATH, else Debian's.
fn python() -> Result<PathBuf, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let candidates: Vec<PathBuf> = match std::env::var_os("HEALTHMON_TEST_WS_PYTHON") {
        Some(one) => vec![PathBuf::from(one)],
        None => vec![
            target.join("py-websockets/bin/python"),
            PathBuf::from("python3"),
            PathBuf::from("/usr/bin/python3"),
        ],
    };
    let mut tried = Vec::new();
    for candidate in candidates {
        let ok = Command::new(&candidate)
            .args(["-c", "from websockets.asyncio.client import connect"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(candidate);
        }
        tried.push(candidate.display().to_string());
    }
    Err(format!(
        "no Python with websockets >= 13 ({}); run .ci/run, or pip install websockets==17.4",
        tried.join(", ")
    ))
}

/// Runs the client on `url`; what it saw, as its JSON line.
fn read_snapshot(python: &PathBuf, url: &str, tag: Option<&str>) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/ws_snapshot.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(url);
    if let Some(tag) = tag {
        cmd.arg(tag);
    }
    let out = cmd.output().expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python client failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_with_default_limits_reads_a_snapshot_of_100_000_services() {
    let python = match python() {
        Ok(p) => p,
        Err(why) => {
            skip::skip("Python's websockets (the standard WebSocket client)", &why);
            return;
        }
    };
    // Room above the default 100,000, so a recount racing a commit
    // (counted twice until the next) cannot refuse the last batch.
    let m = Monitor::start_with(&[("HEALTHMON__API__MAX_SERVICES", "1000000")]);
    let started = Instant::now();
    // 100 bulk requests, four at a time.
    let bodies = (0..SERVICES / PER_BULK).map(|b| {
        let items: Vec<Value> = (b * PER_BULK..(b + 1) * PER_BULK)
            .map(|i| {
                let tags = if i % 10 == 0 { json!([TAG]) } else { json!([]) };
                json!({"name": format!("svc-{i}"), "url": NOWHERE, "interval": 60,
                       "paused": true, "tags": tags})
            })
            .collect();
        serde_json::to_vec(&items).expect("json")
    });
    let posted: Vec<u16> = futures_util::stream::iter(bodies)
        .map(|body| {
            let m = &m;
            async move {
                let r = request(
                    m,
                    reqwest::Method::POST,
                    "/services/bulk",
                    Some("application/json"),
                    Some(body),
                )
                .await;
                assert_eq!(r.status, 201, "{}", r.text);
                r.status
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    assert_eq!(posted.len(), SERVICES / PER_BULK);
    let registered = started.elapsed();

    let url = m.ws_url();
    let seen = tokio::task::spawn_blocking(move || {
        let all = read_snapshot(&python, &url, None);
        let tagged = read_snapshot(&python, &format!("{url}?tag={TAG}"), Some(TAG));
        (all, tagged)
    })
    .await
    .expect("client thread");
    let (all, tagged) = seen;
    println!(
        "registered {SERVICES} in {registered:.1?} (100 bulk requests); \
         read with websockets {}: {all} / tagged: {tagged}",
        all["websockets"]
    );
    assert_eq!(all["messages"], json!(SERVICES / 1000), "{all}");
    assert_eq!(all["services"], json!(SERVICES), "{all}");
    assert_eq!(all["distinct"], json!(SERVICES), "{all}");
    assert_eq!(all["ascending"], json!(true), "{all}");
    assert_eq!(all["last_only_on_final"], json!(true), "{all}");
    assert!(
        all["largest_message_bytes"]
            .as_u64()
            .is_some_and(|b| b < 1 << 20),
        "{all}"
    );
    assert_eq!(tagged["messages"], json!(SERVICES / 10 / 1000), "{tagged}");
    assert_eq!(tagged["distinct"], json!(SERVICES / 10), "{tagged}");
    assert_eq!(tagged["untagged"], json!(0), "{tagged}");
    assert_eq!(tagged["last_only_on_final"], json!(true), "{tagged}");
    println!("the whole test: {:.1?}", started.elapsed());
}
