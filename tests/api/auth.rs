//! Access: API keys from the CLI, 401/403 as problem+json, the WebSocket's
//! token forms, revocation, the refusal to serve a network address openly,
//! and the write limits.
use crate::helpers::*;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::json;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn new_dir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("tempdir"))
}

async fn status_with(
    m: &Monitor,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::Response {
    let mut req = m.http.request(method.clone(), m.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if method == Method::POST {
        req = req.json(&service("svc", "http://127.0.0.1:9/", 60));
    }
    req.send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_key_exists_every_request_but_the_probes_needs_one() {
    let dir = new_dir();
    let admin = create_key(&dir, "admin", "write");
    let viewer = create_key(&dir, "viewer", "read");
    assert!(admin.starts_with("hm_") && viewer.starts_with("hm_") && admin != viewer);
    let m = Monitor::start_in(Arc::clone(&dir), &[]);

    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            status_with(&m, Method::GET, path, None).await.status(),
            200,
            "{path}"
        );
    }
    let none = status_with(&m, Method::GET, "/services", None).await;
    assert_eq!(none.status(), 401);
    assert!(none.headers().get("www-authenticate").is_some());
    assert_eq!(
        none.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let wrong = status_with(&m, Method::GET, "/services", Some("hm_0000")).await;
    assert_eq!(wrong.status(), 401);

    let created = status_with(&m, Method::POST, "/services", Some(&admin)).await;
    assert_eq!(created.status(), 201);
    assert_eq!(
        status_with(&m, Method::GET, "/services", Some(&viewer))
            .await
            .status(),
        200
    );
    let denied = status_with(&m, Method::POST, "/services", Some(&viewer)).await;
    assert_eq!(denied.status(), 403);
    let body: serde_json::Value = denied.json().await.expect("problem");
    assert_eq!(body["status"], 403);
    assert_eq!(
        status_with(&m, Method::DELETE, "/services/1", Some(&viewer))
            .await
            .status(),
        403
    );
    // The read key changed nothing.
    let list: serde_json::Value = status_with(&m, Method::GET, "/services", Some(&viewer))
        .await
        .json()
        .await
        .expect("list");
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    // Tokens never reach the log.
    assert!(!m.log_text().contains(&admin) && !m.log_text().contains(&viewer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_list_shows_names_scopes_and_last_use_and_revoke_ends_a_key() {
    let dir = new_dir();
    let token = create_key(&dir, "ci-bot", "read");
    let dup = run_in(
        &dir,
        &[],
        &["keys", "create", "--name", "ci-bot", "--scope", "write"],
    );
    assert!(
        !dup.status.success(),
        "a second key with the same name was created"
    );
    let listed = String::from_utf8_lossy(&run_in(&dir, &[], &["keys", "list"]).stdout).into_owned();
    assert!(
        listed.contains("ci-bot") && listed.contains("read") && listed.contains("never"),
        "{listed}"
    );
    assert!(!listed.contains(&token), "the list shows a token");

    let m = Monitor::start_in(Arc::clone(&dir), &[]);
    assert_eq!(
        status_with(&m, Method::GET, "/services", Some(&token))
            .await
            .status(),
        200
    );
    let listed = String::from_utf8_lossy(&run_in(&dir, &[], &["keys", "list"]).stdout).into_owned();
    assert!(!listed.contains("never"), "last use not recorded: {listed}");

    // An open WebSocket with the key, then the key is revoked.
    let mut req = m.ws_url().into_client_request().expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("ws with a key");
    assert!(ws.next().await.is_some(), "no snapshot");

    let revoked = run_in(&dir, &[], &["keys", "revoke", "ci-bot"]);
    assert!(revoked.status.success());
    let again = run_in(&dir, &[], &["keys", "revoke", "ci-bot"]);
    assert!(!again.status.success(), "revoking twice succeeded");

    // Keys exist no more, but the bind is loopback: the API is open again.
    // Revocation is what is tested: the socket must be closed by the server.
    let mut client = WsClient { stream: ws };
    assert!(
        client.until_closed().await,
        "the WebSocket outlived its key"
    );
    // The line is written before the close, but read from the process's
    // stderr by another thread: wait for it rather than race it.
    eventually("the reason in the log", || async {
        m.log_text().contains("API key was revoked").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_within_seconds() {
    let dir = new_dir();
    let keep = create_key(&dir, "keep", "write");
    let gone = create_key(&dir, "gone", "write");
    let m = Monitor::start_in(Arc::clone(&dir), &[]);
    assert_eq!(
        status_with(&m, Method::GET, "/services", Some(&gone))
            .await
            .status(),
        200
    );
    assert!(
        run_in(&dir, &[], &["keys", "revoke", "gone"])
            .status
            .success()
    );
    eventually("the revoked token to be refused", || async {
        (status_with(&m, Method::GET, "/services", Some(&gone))
            .await
            .status()
            == 401)
            .then_some(())
    })
    .await;
    assert_eq!(
        status_with(&m, Method::GET, "/services", Some(&keep))
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_takes_a_header_or_a_query_token_and_refuses_none() {
    let dir = new_dir();
    let token = create_key(&dir, "viewer", "read");
    let m = Monitor::start_in(Arc::clone(&dir), &[]);
    match tokio_tungstenite::connect_async(m.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("upgraded without a token: {:?}", other.map(|_| ())),
    }
    let with_query = format!("{}?access_token={token}", m.ws_url());
    let (mut ws, _) = tokio_tungstenite::connect_async(with_query)
        .await
        .expect("query token");
    assert!(ws.next().await.is_some());
    let mut req = m.ws_url().into_client_request().expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    assert!(
        tokio_tungstenite::connect_async(req).await.is_ok(),
        "header token refused"
    );
    // The query form is for /ws only.
    let leaked = m
        .http
        .get(m.url(&format!("/services?access_token={token}")))
        .send()
        .await
        .expect("GET");
    assert_eq!(leaked.status(), 401);
}

#[test]
fn a_network_bind_without_a_key_refuses_to_start_and_says_how_to_fix_it() {
    let (status, stderr) = run_to_exit(&[("HEALTHMON__SERVER__BIND", "0.0.0.0:0")], &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("keys create") && stderr.contains("allow_anonymous"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_bind_starts_with_a_key_or_the_explicit_opt_out() {
    let open = Monitor::start_with(&[
        ("HEALTHMON__SERVER__BIND", "0.0.0.0:0"),
        ("HEALTHMON__AUTH__ALLOW_ANONYMOUS", "true"),
    ]);
    let port = open.addr.rsplit(':').next().expect("port").to_owned();
    let resp = open
        .http
        .get(format!("http://127.0.0.1:{port}/services"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), 200);

    let dir = new_dir();
    let token = create_key(&dir, "admin", "write");
    let keyed = Monitor::start_in(
        Arc::clone(&dir),
        &[("HEALTHMON__SERVER__BIND", "0.0.0.0:0")],
    );
    let port = keyed.addr.rsplit(':').next().expect("port").to_owned();
    let url = format!("http://127.0.0.1:{port}/services");
    assert_eq!(
        keyed.http.get(&url).send().await.expect("GET").status(),
        401
    );
    assert_eq!(
        keyed
            .http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET")
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_over_the_rate_get_429_with_retry_after_and_reads_do_not() {
    // With a key: an open loopback server does not limit its own loopback
    // callers (tests/api/bulk.rs).
    let dir = new_dir();
    let key = create_key(&dir, "importer", "write");
    let m = Monitor::start_in(
        Arc::clone(&dir),
        &[
            ("HEALTHMON__API__WRITE_RATE_PER_S", "1"),
            ("HEALTHMON__API__WRITE_BURST", "3"),
        ],
    );
    let key = Some(key.as_str());
    for _ in 0..3 {
        assert_eq!(
            status_with(&m, Method::POST, "/services", key)
                .await
                .status(),
            201
        );
    }
    let limited = status_with(&m, Method::POST, "/services", key).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    for _ in 0..20 {
        assert_eq!(
            status_with(&m, Method::GET, "/services", key)
                .await
                .status(),
            200
        );
    }
    let list: serde_json::Value = status_with(&m, Method::GET, "/services", key)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(3),
        "the refused write stored something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_number_of_services_and_websocket_clients_is_capped() {
    let m = Monitor::start_with(&[
        ("HEALTHMON__API__MAX_SERVICES", "2"),
        ("HEALTHMON__WS__MAX_CLIENTS", "2"),
    ]);
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(m.register(service("s", "http://127.0.0.1:9/", 60)).await["id"].clone());
    }
    let (status, body) = m
        .send_json(
            Method::POST,
            "/services",
            service("s", "http://127.0.0.1:9/", 60),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("max_services")),
        "{body}"
    );
    // The count is kept between recounts: a deletion frees a place at once,
    // and it is taken again at once.
    let (status, _) = m
        .send_json(
            Method::DELETE,
            &format!("/services/{}", ids[0]),
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(status, 204);
    m.register(service("s", "http://127.0.0.1:9/", 60)).await;
    let (status, body) = m
        .send_json(
            Method::POST,
            "/services",
            service("s", "http://127.0.0.1:9/", 60),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    let mut first = WsClient::connect(&m).await;
    let _second = WsClient::connect(&m).await;
    match tokio_tungstenite::connect_async(m.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("a third client was let in: {:?}", other.map(|_| ())),
    }
    // A slot frees when a client leaves.
    first.stream.close(None).await.expect("close");
    drop(first);
    eventually("a freed WebSocket slot", || async {
        tokio_tungstenite::connect_async(m.ws_url())
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let _ = json!({});
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_loopback_server_refuses_foreign_host_names() {
    let m = Monitor::start();
    let port = m.addr.rsplit(':').next().expect("port").to_owned();
    let ask = |host: String| m.http.get(m.url("/services")).header("host", host).send();
    // A page from evil.example re-pointed at 127.0.0.1 (DNS rebinding).
    let rebound = ask(format!("evil.example:{port}")).await.expect("GET");
    assert_eq!(rebound.status(), 403);
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(
            ask(host.clone()).await.expect("GET").status(),
            200,
            "{host}"
        );
    }
    // In absolute form the request line names the host, and that is what
    // the server answers for (RFC 9112), whatever the Host header says.
    for (target, want) in [
        (format!("http://evil.example:{port}/services"), "403"),
        (format!("http://localhost:{port}/services"), "200"),
    ] {
        let head = raw_request(
            &m.addr,
            &format!(
                "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {want}")),
            "{target}: {head}"
        );
    }
    // Probes stay open to any name.
    let probe = m
        .http
        .get(m.url("/healthz"))
        .header("host", "evil.example")
        .send()
        .await
        .expect("GET");
    assert_eq!(probe.status(), 200);
}

/// Sends `request` as it is over a new connection and returns the status
/// line of the answer.
async fn raw_request(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}
