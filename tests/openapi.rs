//! `GET /openapi.json` against the router and the running server.
//!
//! - Every route the router mounts is in the document, with every method it
//!   answers (HEAD and OPTIONS aside: every GET answers HEAD, and OPTIONS
//!   is the router's own). The mounted paths are read from the sources
//!   (`web::resource("...")` and `.route("...")` in `src/http`), and each
//!   one's methods from its answer to OPTIONS, so a new route without an
//!   annotation fails here.
//! - schemathesis (PyPI, pinned in `.ci/run`) fuzzes an `api`-only process
//!   of a fleet (PostgreSQL and RabbitMQ, no scheduler and no worker, so
//!   the URLs it registers are never checked) from the document: no 5xx,
//!   every answer's status, content type and body as documented.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

mod common;

use actix_web::http::Method;
use actix_web::test::{TestRequest, call_service, init_service};
use common::fleet::Fleet;
use common::skip::skip;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The pinned schemathesis; `.ci/run` installs this one.
const SCHEMATHESIS: &str = "4.32.5";

fn document() -> Value {
    serde_json::from_str(healthmon::http::openapi::document()).expect("the document is JSON")
}

/// Every string literal that starts with `/` right after `resource(` or
/// `route(` in the Rust files under `dir`: the paths the router mounts.
fn mounted_paths(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read src/http") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            mounted_paths(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read a source file");
            for marker in ["resource(\"/", "route(\"/"] {
                for (at, _) in text.match_indices(marker) {
                    let start = at + marker.len() - 1;
                    let end = text[start..].find('"').map(|n| start + n);
                    if let Some(end) = end {
                        out.push(text[start..end].to_owned());
                    }
                }
            }
        }
    }
}

/// A concrete path for a mounted pattern (`{id}` -> `1`).
fn concrete(pattern: &str) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        out.push('1');
        rest = rest[open..].split_once('}').map_or("", |(_, r)| r);
    }
    out.push_str(rest);
    out
}

#[actix_web::test]
async fn every_mounted_route_and_method_is_in_the_document() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let documented = doc["paths"].as_object().expect("paths");
    let mut paths = Vec::new();
    mounted_paths(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http"),
        &mut paths,
    );
    paths.sort();
    paths.dedup();
    assert!(paths.len() >= 20, "found only {paths:?} in src/http");
    let app = init_service(actix_web::App::new().configure(healthmon::http::routes)).await;
    let mut missing = Vec::new();
    for path in &paths {
        let answer = call_service(
            &app,
            TestRequest::default()
                .method(Method::OPTIONS)
                .uri(&concrete(path))
                .to_request(),
        )
        .await;
        let allow = answer
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("GET")
            .to_owned();
        for method in allow.split(',').map(str::trim) {
            if matches!(method, "HEAD" | "OPTIONS") {
                continue;
            }
            let op = &documented.get(path).unwrap_or(&Value::Null)[method.to_lowercase()];
            if !op.is_object() {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "mounted but not in /openapi.json (annotate the handler with #[utoipa::path] and \
         list it in src/http/openapi.rs): {missing:?}"
    );
    // And nothing documented that is not mounted.
    for path in documented.keys() {
        assert!(paths.contains(path), "{path} is documented but not mounted");
    }
}

#[test]
fn every_operation_answers_problems_and_names_its_security() {
    let doc = document();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with(['1', '2'])),
                "{method} {path}: no success answer"
            );
            let public = path.starts_with("/push/")
                || path.starts_with("/status/")
                || path.starts_with("/ui/")
                || matches!(path.as_str(), "/healthz" | "/readyz" | "/");
            assert_eq!(
                responses.contains_key("401"),
                !public,
                "{method} {path}: 401 iff a key is needed"
            );
            if ["post", "put", "patch", "delete"].contains(&method.as_str()) && !public {
                assert!(responses.contains_key("429"), "{method} {path}: no 429");
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
            }
        }
    }
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["scheme"], "bearer");
}

/// The schemathesis command, if it is installed (or the reason it is not).
fn schemathesis() -> Result<String, String> {
    let out = Command::new("schemathesis")
        .arg("--version")
        .output()
        .map_err(|e| format!("schemathesis: {e} (pip install schemathesis=={SCHEMATHESIS})"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if version.ends_with(SCHEMATHESIS) {
        Ok("schemathesis".to_owned())
    } else {
        Err(format!("{version:?}, not {SCHEMATHESIS}"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_on_an_api_only_process() {
    let st = match schemathesis() {
        Ok(st) => st,
        Err(why) => return skip("schemathesis", &why),
    };
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    // The write limit off, so the fuzzer's writes are judged, not refused
    // (429 stays documented); bodies small, so 413 is reachable.
    let api = fleet.spawn_with("api", &[("HEALTHMON__API__WRITE_RATE_PER_S", "0")]);
    let report = api.dir.path().join("schemathesis");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let url = api.url("/openapi.json");
        let report = report.clone();
        move || {
            Command::new(st)
                .args(["run", &url])
                .args([
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,\
                     response_schema_conformance",
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--max-examples",
                    "25",
                    "--workers",
                    "2",
                    "--request-timeout",
                    "10",
                    "--seed",
                    "1",
                    "--no-color",
                    "--report",
                    "junit",
                    "--report-dir",
                ])
                .arg(&report)
                .env("SCHEMATHESIS_HOOKS", "")
                .output()
                .expect("run schemathesis")
        }
    })
    .await
    .expect("join");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    println!("schemathesis took {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "schemathesis found problems (above); the server's log:\n{}",
        api.log_text()
    );
    // Every operation of the document was selected and tested.
    let (_, served) = api.get("/openapi.json").await;
    assert!(served["paths"].as_object().is_some_and(|p| p.len() > 20));
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let selected = field("Selected:").expect("schemathesis's summary says Selected:");
    let (chosen, total) = selected.split_once('/').expect("Selected: N/M");
    assert_eq!(chosen, total, "every operation selected");
    assert_eq!(
        field("Tested:").as_deref(),
        Some(chosen),
        "every operation tested"
    );
    assert!(started.elapsed() < Duration::from_secs(600));
}
