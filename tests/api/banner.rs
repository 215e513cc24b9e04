//! What the monitor prints when it starts and while it runs (issue 15.1):
//! the start-up banner's facts, status changes with their reasons, and no
//! routine lines from dependencies at the default log level.
use crate::helpers::*;

use serde_json::json;

/// Waits until the monitor's stderr has a line containing `needle`.
async fn wait_line(m: &Monitor, needle: &str) -> String {
    eventually(&format!("a log line with {needle:?}"), || async {
        m.logs
            .lock()
            .ok()?
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    })
    .await
}

/// At the default level (no `RUST_LOG`): the banner names the address, the
/// SQLite file by its absolute path and an open API with the command that
/// creates a key; actix's routine start-up lines are not shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_tells_address_store_and_access_and_dependencies_stay_quiet() {
    let m = Monitor::start_with(&[("RUST_LOG", "")]);
    // Answered: the server has started, so actix has said all it would
    // say about starting.
    let (status, _) = m.get("/services").await;
    assert_eq!(status, 200);
    wait_line(&m, "listening addr=").await;
    let text = m.log_text();
    let db = m.db_path();
    assert!(db.is_absolute());
    for fact in [
        "INFO healthmon::banner: healthmon ".to_owned(),
        format!("address  http://{}", m.addr),
        format!("store    SQLite {}", db.display()),
        "bus      in-process".to_owned(),
        "roles    api, scheduler, worker".to_owned(),
        "API      open, no key needed".to_owned(),
        "healthmon keys create --name admin --scope write".to_owned(),
        "Ctrl-C to stop".to_owned(),
        // The same facts as fields.
        format!("url=\"http://{}\"", m.addr),
        format!("store_path=\"{}\"", db.display()),
        "api=\"open\"".to_owned(),
    ] {
        assert!(text.contains(&fact), "{fact:?} not in:\n{text}");
    }
    assert_eq!(
        text.matches("healthmon::banner").count(),
        1,
        "one banner:\n{text}"
    );
    for noise in ["actix_server", "starting", "Actix runtime"] {
        assert!(
            !text.contains(noise),
            "{noise:?} at the default level:\n{text}"
        );
    }
}

/// The quiet default is the filter's doing, not actix's: asked for INFO,
/// the same start prints actix's "starting N workers".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_info_still_shows_dependencies() {
    let m = Monitor::start_with(&[("RUST_LOG", "info")]);
    let line = wait_line(&m, "actix_server").await;
    assert!(line.contains("INFO"), "{line}");
}

/// A key in the store: the banner says the API needs one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_the_banner_says_a_key_is_needed() {
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
    create_key(&dir, "ops", "write");
    let m = Monitor::start_in(dir, &[]);
    // The banner's last line (the harness may hand the monitor over before
    // it has stored that line).
    let fields = wait_line(&m, "listening addr=").await;
    assert!(
        fields.contains("api=\"key required\" api_keys=1"),
        "{fields}"
    );
    let text = m.log_text();
    assert!(text.contains("API      needs a key"), "{text}");
    assert!(!text.contains("open, no key needed"), "{text}");
}

/// A service going DOWN and back UP is logged at INFO at the default
/// level, each time with its id, name, old and new status, and the reason
/// of the check that changed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_changes_are_logged_with_old_new_and_reason() {
    let target = Target::start().await;
    let m = Monitor::start_with(&[("RUST_LOG", "")]);
    let svc = m
        .register(json!({"name": "api", "url": target.url("/switch"), "interval": 1, "timeout": 1}))
        .await;
    let id = id_of(&svc);
    let up = wait_line(&m, "new=UP").await;
    assert!(
        up.contains(&format!(
            "INFO healthmon::recorder::changes: service status changed service_id={id} name=\"api\" old=PENDING new=UP"
        )),
        "{up}"
    );
    assert!(!up.contains("reason="), "an UP check has no error: {up}");
    target.set_up(false);
    let down = wait_line(&m, "new=DOWN").await;
    assert!(
        down.contains(&format!(
            "service status changed service_id={id} name=\"api\" old=UP new=DOWN reason=\"status: unexpected status 503"
        )),
        "{down}"
    );
}
