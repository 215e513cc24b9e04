//! The probes (`/healthz`, `/readyz`) of an embedded-mode process.

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_answer_200() {
    let mon = Monitor::start();
    let m = &mon;
    let r = get(m, "/healthz").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.content_type().starts_with("application/json"));
    assert_eq!(r.json["status"], "ok");

    let r = get(m, "/readyz").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.content_type().starts_with("application/json"));
    assert_eq!(r.json["status"], "ready", "{}", r.text);
    assert_eq!(r.json["checks"]["store"], "ok", "{}", r.text);
    assert_eq!(r.json["checks"]["bus"], "ok", "{}", r.text);
}
