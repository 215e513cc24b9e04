//! Config as code: the real `healthmon apply` and `healthmon export` run
//! against a real monitor (port 0, a temporary SQLite store), and what the
//! monitor then holds read back through its REST API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

mod common;

use common::Monitor;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A loopback port nothing listens on: the services below are checked,
/// and fail, without leaving the machine.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A file with a channel, two services and a window; `interval` is the
/// api service's.
fn monitors_yaml(port: u16, interval: u32) -> String {
    format!(
        "\
channels:
  - name: oncall
    kind: webhook
    config:
      url: http://127.0.0.1:{port}/hook/T0KEN
      secret: s3cret
services:
  - name: api
    url: http://bob:pa55@127.0.0.1:{port}/health
    interval: {interval}
    timeout: 5
    headers:
      Authorization: Bearer abc
    json:
      - pointer: /status
        equals: ok
    channels: [oncall]
  - name: db
    url: tcp://127.0.0.1:{port}
    interval: 20
maintenance:
  - name: weekly patching
    services: [db, api]
    cron: \"0 2 * * SUN\"
    duration_s: 3600
    timezone: Europe/Berlin
"
    )
}

fn write(m: &Monitor, name: &str, text: &str) -> PathBuf {
    let path = m.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `healthmon ARGS --url <the monitor>`: (success, stdout, stderr).
fn cli(m: &Monitor, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let url = m.url("");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--url", url.as_str()]);
    let out = common::run_in(&m.dir, env, &all);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn apply(m: &Monitor, file: &Path, flags: &[&str]) -> (bool, String, String) {
    let mut args = vec!["apply", file.to_str().unwrap()];
    args.extend(flags);
    cli(m, &[], &args)
}

/// The objects of a collection, by name.
async fn by_name(m: &Monitor, path: &str) -> std::collections::BTreeMap<String, Value> {
    let (status, list) = m.get(path).await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap().to_owned(), o.clone()))
        .collect()
}

/// The lines of `out` that describe a change.
fn changes(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.starts_with(['+', '~', '-']))
        .collect()
}

#[tokio::test]
async fn apply_creates_then_applying_again_changes_nothing() {
    let m = Monitor::start();
    let file = write(&m, "monitors.yaml", &monitors_yaml(closed_port(), 30));
    let (ok, out, err) = apply(&m, &file, &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        changes(&out),
        [
            "+ channel \"oncall\"",
            "+ service \"api\"",
            "+ service \"db\"",
            "+ maintenance \"weekly patching\""
        ]
    );
    assert!(out.contains("4 created, 0 updated, 0 unchanged"), "{out}");

    let channels = by_name(&m, "/channels").await;
    let services = by_name(&m, "/services").await;
    let windows = by_name(&m, "/maintenance").await;
    let api = &services["api"];
    assert_eq!(api["channels"], json!([channels["oncall"]["id"]]));
    assert!(
        api["url"]
            .as_str()
            .unwrap()
            .starts_with("http://bob:***@127.0.0.1:"),
        "{api}"
    );
    assert_eq!(api["headers"], json!({"Authorization": "***"}));
    assert_eq!(api["timeout"], 5);
    let mut covered: Vec<i64> = windows["weekly patching"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    covered.sort_unstable();
    let mut expected = vec![
        api["id"].as_i64().unwrap(),
        services["db"]["id"].as_i64().unwrap(),
    ];
    expected.sort_unstable();
    assert_eq!(covered, expected);

    let (ok, out, err) = apply(&m, &file, &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(changes(&out), Vec::<&str>::new(), "{out}");
    assert!(out.contains("0 created, 0 updated, 4 unchanged"), "{out}");
    let again = by_name(&m, "/services").await;
    assert_eq!(again["api"]["updated_at"], api["updated_at"]);
}

#[tokio::test]
async fn a_change_updates_only_that_field_and_dry_run_changes_nothing() {
    let m = Monitor::start();
    let port = closed_port();
    let file = write(&m, "monitors.yaml", &monitors_yaml(port, 30));
    assert!(apply(&m, &file, &[]).0);
    let before = by_name(&m, "/services").await;
    let changed = write(&m, "changed.yaml", &monitors_yaml(port, 60));

    let (ok, out, err) = apply(&m, &changed, &["--dry-run"]);
    assert!(ok, "{out}{err}");
    assert_eq!(changes(&out), ["~ service \"api\": interval: 30 → 60"]);
    assert!(
        out.contains("0 created, 1 updated, 3 unchanged (dry run: nothing was changed)"),
        "{out}"
    );
    let unchanged = by_name(&m, "/services").await;
    assert_eq!(unchanged["api"]["interval"], 30);
    assert_eq!(unchanged["api"]["updated_at"], before["api"]["updated_at"]);

    let (ok, out, err) = apply(&m, &changed, &[]);
    assert!(ok, "{out}{err}");
    assert_eq!(changes(&out), ["~ service \"api\": interval: 30 → 60"]);
    assert!(out.contains("0 created, 1 updated, 3 unchanged"), "{out}");
    let after = by_name(&m, "/services").await;
    assert_eq!(after["api"]["interval"], 60);
    for field in [
        "url",
        "timeout",
        "headers",
        "json",
        "channels",
        "retry_interval",
    ] {
        let expected = if field == "retry_interval" {
            json!(60)
        } else {
            before["api"][field].clone()
        };
        assert_eq!(after["api"][field], expected, "{field}");
    }
    assert_eq!(after["db"]["updated_at"], before["db"]["updated_at"]);
    let (_, out, _) = apply(&m, &changed, &[]);
    assert!(out.contains("0 created, 0 updated, 4 unchanged"), "{out}");
}

#[tokio::test]
async fn prune_deletes_what_the_file_does_not_list() {
    let m = Monitor::start();
    let file = write(&m, "monitors.yaml", &monitors_yaml(closed_port(), 30));
    assert!(apply(&m, &file, &[]).0);
    let extra = m
        .register(common::service(
            "extra",
            &format!("tcp://127.0.0.1:{}", closed_port()),
            30,
        ))
        .await;

    let (ok, out, err) = apply(&m, &file, &[]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("1 object on the monitor but not in the file: kept (--prune deletes it)"),
        "{out}"
    );
    let path = format!("/services/{}", extra["id"]);
    assert_eq!(m.get(&path).await.0, 200);

    let (ok, out, err) = apply(&m, &file, &["--prune", "--dry-run"]);
    assert!(ok, "{out}{err}");
    assert_eq!(changes(&out), ["- service \"extra\""]);
    assert_eq!(m.get(&path).await.0, 200);

    let (ok, out, err) = apply(&m, &file, &["--prune"]);
    assert!(ok, "{out}{err}");
    assert_eq!(changes(&out), ["- service \"extra\""]);
    assert!(
        out.contains("0 created, 0 updated, 4 unchanged, 1 deleted"),
        "{out}"
    );
    assert_eq!(m.get(&path).await.0, 404);
    assert_eq!(by_name(&m, "/services").await.len(), 2);
}

#[tokio::test]
async fn errors_name_the_file_line_and_field_and_change_nothing() {
    let m = Monitor::start();
    let port = closed_port();
    let bad = write(
        &m,
        "monitors.yaml",
        &format!(
            "\
services:
  - name: db
    url: tcp://127.0.0.1:{port}
    interval: 20
  - name: api
    url: http://127.0.0.1:{port}/
    interval: 0
    colour: red
    channels: [nobody]
"
        ),
    );
    let (ok, out, err) = apply(&m, &bad, &["--dry-run"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("monitors.yaml:7: services[1] \"api\": interval: must be between 1 and 86400 seconds (got 0)"),
        "{err}"
    );
    assert!(
        err.contains("monitors.yaml:8: services[1] \"api\": colour: unknown field"),
        "{err}"
    );
    assert!(
        err.contains("1 problem") || err.contains("2 problems"),
        "{err}"
    );

    // A reference to a channel nobody has is found against the monitor.
    let unknown = write(
        &m,
        "unknown.yaml",
        &format!(
            "services:\n  - name: api\n    url: http://127.0.0.1:{port}/\n    interval: 5\n    channels: [nobody]\n"
        ),
    );
    let (ok, _, err) = apply(&m, &unknown, &[]);
    assert!(!ok);
    assert!(
        err.contains("unknown.yaml:5: services[0] \"api\": channels: no channel named \"nobody\""),
        "{err}"
    );

    let syntax = write(&m, "syntax.yaml", "services:\n  - name: api\n    url: [x\n");
    let (ok, _, err) = apply(&m, &syntax, &[]);
    assert!(!ok);
    assert!(err.contains("syntax.yaml:"), "{err}");
    let located = err
        .lines()
        .find(|l| l.contains("syntax.yaml:"))
        .unwrap()
        .split(':')
        .nth(2)
        .unwrap()
        .trim()
        .parse::<u32>();
    assert!(located.is_ok_and(|l| l >= 3), "{err}");

    // What only the monitor can judge comes back as the file's object
    // and field: a link-local target is refused by its target safety.
    let refused = write(
        &m,
        "refused.yaml",
        "services:\n  - name: meta\n    url: tcp://169.254.169.254:80\n    interval: 5\n",
    );
    let (ok, _, err) = apply(&m, &refused, &[]);
    assert!(!ok);
    assert!(
        err.contains("refused.yaml:3: services[0] \"meta\": url: "),
        "{err}"
    );
    assert_eq!(by_name(&m, "/services").await.len(), 0);
}

#[tokio::test]
async fn export_then_apply_is_a_no_op_and_needs_secrets_elsewhere() {
    let m = Monitor::start();
    let file = write(&m, "monitors.yaml", &monitors_yaml(closed_port(), 30));
    assert!(apply(&m, &file, &[]).0);
    let (ok, exported, err) = cli(&m, &[], &["export"]);
    assert!(ok, "{err}");
    assert!(
        exported.contains("secret: '***'  # secret")
            || exported.contains("secret: \"***\"  # secret"),
        "{exported}"
    );
    assert!(
        !exported.contains("s3cret") && !exported.contains("pa55"),
        "{exported}"
    );
    let path = write(&m, "exported.yaml", &exported);
    let (ok, out, err) = apply(&m, &path, &["--prune"]);
    assert!(ok, "{out}{err}\n{exported}");
    assert_eq!(changes(&out), Vec::<&str>::new(), "{out}\n{exported}");
    assert!(
        out.contains("0 created, 0 updated, 4 unchanged, 0 deleted"),
        "{out}"
    );

    // Another monitor has no stored secrets for *** to keep.
    let other = Monitor::start();
    let (ok, out, err) = apply(&other, &path, &["--dry-run"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("channels[0] \"oncall\": config.secret: is *** (a hidden secret"),
        "{err}"
    );
}

#[tokio::test]
async fn the_example_file_is_accepted_and_a_token_is_sent() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let token = common::create_key(&dir, "gitops", "write");
    let m = Monitor::start_in(dir, &[]);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/monitors.yaml");
    let example = example.to_str().unwrap();

    let (ok, _, err) = cli(&m, &[], &["apply", example, "--dry-run"]);
    assert!(!ok);
    assert!(err.contains("401"), "{err}");

    let (ok, out, err) = cli(
        &m,
        &[("HEALTHMON_TOKEN", token.as_str())],
        &["apply", example, "--dry-run"],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("+ service \"api\""), "{out}");
    assert!(
        out.contains("5 created, 0 updated, 0 unchanged (dry run: nothing was changed)"),
        "{out}"
    );
    let (ok, out, err) = cli(&m, &[], &["export", "--token", &token]);
    assert!(ok, "{err}");
    assert!(out.contains("services: []"), "{out}");
}
