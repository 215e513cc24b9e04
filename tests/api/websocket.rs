//! `/ws`: snapshot, live check events, exactly one status_change per flip,
//! and what happens to clients that misbehave.
use crate::helpers::*;

use futures_util::SinkExt;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The names of the services in a snapshot, in its order.
fn service_names(snapshot: &Value) -> Vec<&str> {
    snapshot["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect()
}

fn is(msg: &Value, kind: &str, id: i64) -> bool {
    msg["type"] == kind && msg["service_id"] == id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_a_snapshot_then_check_events() {
    let target = Target::start().await;
    let m = Monitor::start();
    let a = m.register(service("alpha", &target.url("/ok"), 60)).await;
    m.register(service("beta", &target.url("/ok"), 60)).await;
    let mut ws = WsClient::connect(&m).await;
    let snapshot = ws.next_json().await.expect("snapshot");
    assert_eq!(snapshot["type"], "snapshot");
    let names = service_names(&snapshot);
    assert_eq!(names, ["alpha", "beta"]);

    let c = m.register(service("gamma", &target.url("/ok"), 1)).await;
    let id = c["id"].as_i64().expect("id");
    let (check, _) = ws
        .until("a check of gamma", |msg| is(msg, "check", id))
        .await;
    assert_eq!(check["name"], "gamma");
    assert_eq!(check["status"], "UP");
    assert!(check["latency"].is_i64());
    assert!(
        check["checked_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_ne!(a["id"], c["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_larger_than_a_frame_arrives_whole_as_one_message() {
    let m = Monitor::start();
    // Long names: 40 services make a snapshot of over 8 KB, sent in several
    // frames; the client must still see one message holding every service,
    // followed by ordinary events.
    let mut want = Vec::new();
    for i in 0..40 {
        let name = format!("{i:02}-{}", "é".repeat(90));
        m.register(service(&name, "http://127.0.0.1:9/", 3600))
            .await;
        want.push(name);
    }
    let mut ws = WsClient::connect(&m).await;
    let snapshot = ws.next_json().await.expect("snapshot");
    assert_eq!(snapshot["type"], "snapshot");
    let names = service_names(&snapshot);
    assert_eq!(names, want);
    assert!(
        snapshot.to_string().len() > 2 * healthmon::http::ws::SNAPSHOT_FRAME_BYTES,
        "the snapshot should span several frames"
    );
    let added = m
        .register(service("after", "http://127.0.0.1:9/", 3600))
        .await;
    let (changed, _) = ws
        .until("the new service's first check", |msg| {
            msg["service_id"] == added["id"]
        })
        .await;
    assert!(changed["type"].is_string(), "{changed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_flip_yields_exactly_one_status_change() {
    let target = Target::start().await;
    let m = Monitor::start();
    let mut ws = WsClient::connect(&m).await;
    ws.next_json().await.expect("snapshot");
    let svc = m
        .register(service("flappy", &target.url("/switch"), 1))
        .await;
    let id = svc["id"].as_i64().expect("id");

    let (first, _) = ws
        .until("PENDING -> UP", |msg| is(msg, "status_change", id))
        .await;
    assert_eq!(
        (first["old_status"].as_str(), first["new_status"].as_str()),
        (Some("PENDING"), Some("UP"))
    );

    target.set_up(false);
    let (down, _) = ws
        .until("UP -> DOWN", |msg| is(msg, "status_change", id))
        .await;
    assert_eq!(
        (down["old_status"].as_str(), down["new_status"].as_str()),
        (Some("UP"), Some("DOWN"))
    );
    assert_eq!(down["name"], "flappy");
    assert!(down["latency"].is_i64());
    assert!(down["changed_at"].is_string());
    // Three more DOWN checks: none of them may announce the change again.
    for _ in 0..3 {
        let (check, between) = ws.until("a DOWN check", |msg| is(msg, "check", id)).await;
        assert_eq!(check["status"], "DOWN");
        assert!(
            !between.iter().any(|msg| is(msg, "status_change", id)),
            "duplicate status_change"
        );
    }

    target.set_up(true);
    let (up, _) = ws
        .until("DOWN -> UP", |msg| is(msg, "status_change", id))
        .await;
    assert_eq!(
        (up["old_status"].as_str(), up["new_status"].as_str()),
        (Some("DOWN"), Some("UP"))
    );
    for _ in 0..2 {
        let (check, between) = ws.until("an UP check", |msg| is(msg, "check", id)).await;
        assert_eq!(check["status"], "UP");
        assert!(
            !between.iter().any(|msg| is(msg, "status_change", id)),
            "duplicate status_change"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_floods_the_server_is_disconnected() {
    let m = Monitor::start();
    let mut ws = WsClient::connect(&m).await;
    ws.next_json().await.expect("snapshot");
    for _ in 0..200 {
        if ws
            .stream
            .send(Message::Ping(vec![1u8].into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let closed = ws.until_closed().await;
    assert!(closed, "the server kept a flooding client");
    // The server itself is fine.
    let (status, _) = m.get("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_dropped_without_slowing_others() {
    let target = Target::start().await;
    // A small event ring (bursts are at most 2 x 64 events): a client that
    // stops reading is soon more than 256 events behind.
    let m = Monitor::start_with(&[
        ("HEALTHMON__WS__SEND_QUEUE", "256"),
        ("HEALTHMON__RECORDER__BATCH_SIZE", "64"),
        ("HEALTHMON__SERVER__SEND_BUFFER_BYTES", "16384"),
    ]);
    let mut slow = WsClient::connect_with_small_buffer(&m).await;
    let mut fast = WsClient::connect(&m).await;
    fast.next_json().await.expect("snapshot");
    // The fast client reads all along, counting what it gets.
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let reader = tokio::spawn(async move {
        while fast.next_json().await.is_some() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    // Enough traffic to fill the slow client's socket buffers quickly.
    let long_name = "n".repeat(200);
    for _ in 0..100 {
        m.register(service(&long_name, &target.url("/ok"), 1)).await;
    }
    eventually("the server to drop the slow client", || async {
        m.log_text()
            .contains("disconnecting a WebSocket client that")
            .then_some(())
    })
    .await;
    // The fast client is still connected and still getting events.
    let so_far = received.load(Ordering::SeqCst);
    eventually("more events for the fast client", || async {
        (received.load(Ordering::SeqCst) >= so_far + 200).then_some(())
    })
    .await;
    assert!(!reader.is_finished(), "the fast client was dropped too");
    reader.abort();
    // The slow one reads what was in flight, then finds the connection closed.
    assert!(
        slow.until_closed().await,
        "the slow client was never closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_from_other_origins_cannot_open_the_feed() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let m = Monitor::start_with(&[("HEALTHMON__WS__ALLOWED_ORIGINS", "https://dash.example")]);
    let attempt = |origin: &'static str| {
        let mut req = m.ws_url().into_client_request().expect("request");
        req.headers_mut()
            .insert("origin", origin.parse().expect("header"));
        tokio_tungstenite::connect_async(req)
    };
    match attempt("https://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("a foreign origin was not refused: {other:?}"),
    }
    let same = format!("http://{}", m.addr);
    let same: &'static str = Box::leak(same.into_boxed_str());
    assert!(
        attempt(same).await.is_ok(),
        "the API's own origin was refused"
    );
    assert!(
        attempt("https://dash.example").await.is_ok(),
        "a listed origin was refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_answers_pings_is_dropped() {
    let m = Monitor::start_with(&[("HEALTHMON__WS__PING_INTERVAL_S", "1")]);
    // Never reading means never answering the server's pings.
    let mut silent = WsClient::connect_with_small_buffer(&m).await;
    eventually("the server to drop the silent client", || async {
        m.log_text()
            .contains("disconnecting a silent WebSocket client")
            .then_some(())
    })
    .await;
    assert!(silent.until_closed().await);
}

/// A WebSocket opened by hand over TCP, for frames no client library sends.
async fn raw_ws(m: &Monitor) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(&m.addr)
        .await
        .expect("connect");
    let handshake = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        m.addr
    );
    tcp.write_all(handshake.as_bytes())
        .await
        .expect("handshake");
    tcp
}

/// A client frame: `first` is FIN and opcode; the payload is masked.
fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126, "short frames only");
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![first, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads what the server sends until its close frame (or 10 s, or the end
/// of the connection) and returns the close code.
async fn close_code(rd: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 8192];
        loop {
            // Skip the HTTP response head, then walk the server's frames
            // (unmasked, so a 2-byte header below 126 bytes of payload).
            if let Some(head) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                let mut at = head + 4;
                while at + 2 <= seen.len() {
                    let (op, len) = (seen[at] & 0x0F, usize::from(seen[at + 1] & 0x7F));
                    let (hdr, len) = match len {
                        126 if at + 4 <= seen.len() => (
                            4,
                            usize::from(u16::from_be_bytes([seen[at + 2], seen[at + 3]])),
                        ),
                        126 | 127 => break,
                        n => (2, n),
                    };
                    if at + hdr + len > seen.len() {
                        break;
                    }
                    if op == 0x8 && len >= 2 {
                        return Some(u16::from_be_bytes([seen[at + hdr], seen[at + hdr + 1]]));
                    }
                    at += hdr + len;
                }
            }
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_declaring_more_than_the_limit_is_refused_before_it_arrives() {
    use tokio::io::AsyncWriteExt;
    let m = Monitor::start();
    let mut tcp = raw_ws(&m).await;
    // A masked binary frame declaring 1 GiB, then a little of it: the server
    // must give up after about a frame's limit (4 KiB), not buffer on.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.expect("frame header");
    let (mut rd, mut wr) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let chunk = [0u8; 4096];
        for _ in 0..64 {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        wr
    });
    // 1009: message too big.
    assert_eq!(close_code(&mut rd).await, Some(1009));
    // The line is written before the close, but read from the process's
    // stderr by another thread: wait for it rather than race it.
    eventually("the reason in the log", || async {
        m.log_text().contains("broke the protocol").then_some(())
    })
    .await;
    drop(writer.await);
    let (status, _) = m.get("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_invalid_utf8_and_stray_continuation_frames_close_with_their_codes() {
    use tokio::io::AsyncWriteExt;
    let m = Monitor::start();
    for (what, frames, code) in [
        ("a binary frame", vec![masked_frame(0x82, b"{}")], 1003),
        (
            "text that is not UTF-8",
            vec![masked_frame(0x81, b"\xff\xfe")],
            1007,
        ),
        (
            "UTF-8 split across fragments, broken",
            vec![masked_frame(0x01, b"\xc3"), masked_frame(0x80, b"(")],
            1007,
        ),
        (
            "a continuation with no start",
            vec![masked_frame(0x80, b"x")],
            1002,
        ),
        (
            "a new message inside another",
            vec![masked_frame(0x01, b"a"), masked_frame(0x81, b"b")],
            1002,
        ),
    ] {
        let mut tcp = raw_ws(&m).await;
        for frame in frames {
            tcp.write_all(&frame).await.expect("frame");
        }
        assert_eq!(close_code(&mut tcp).await, Some(code), "{what}");
    }
    // A valid text message, even in fragments, is no reason to close.
    let mut tcp = raw_ws(&m).await;
    tcp.write_all(&masked_frame(0x01, b"\xc3"))
        .await
        .expect("frame");
    tcp.write_all(&masked_frame(0x80, b"\xa9"))
        .await
        .expect("frame");
    tcp.write_all(&masked_frame(0x88, &1000u16.to_be_bytes()))
        .await
        .expect("close");
    assert_eq!(close_code(&mut tcp).await, Some(1000));
}

/// The next message about the set of services (`service_*`); checks and
/// status changes in between are skipped.
async fn next_change(ws: &mut WsClient, what: &str) -> Value {
    ws.until(what, |msg| {
        msg["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("service_"))
    })
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_follows_the_list_created_renamed_paused_deleted_in_order() {
    let m = Monitor::start();
    let mut ws = WsClient::connect(&m).await;
    let snapshot = ws.next_json().await.expect("snapshot");
    assert_eq!(snapshot["services"], serde_json::json!([]));

    let mut body = service("api", NOWHERE, 3600);
    body["headers"] = serde_json::json!({"Authorization": "Bearer s3cret-token"});
    let created = m.register(body).await;
    let id = id_of(&created);
    let msg = next_change(&mut ws, "service_created").await;
    // The service exactly as the POST answered it: header values `***`,
    // with in_maintenance.
    assert_eq!(
        msg,
        serde_json::json!({"type": "service_created", "service": created})
    );
    assert_eq!(msg["service"]["headers"]["Authorization"], "***");
    assert_eq!(msg["service"]["in_maintenance"], false);

    let path = format!("/services/{id}");
    let renamed = send(
        &m,
        reqwest::Method::PATCH,
        &path,
        &serde_json::json!({"name": "api-2"}),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    let msg = next_change(&mut ws, "service_updated (rename)").await;
    assert_eq!(
        msg,
        serde_json::json!({"type": "service_updated", "service": renamed.json})
    );
    assert_eq!(msg["service"]["name"], "api-2");

    let paused = send(
        &m,
        reqwest::Method::PATCH,
        &path,
        &serde_json::json!({"paused": true}),
    )
    .await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    let msg = next_change(&mut ws, "service_updated (pause)").await;
    assert_eq!(msg["type"], "service_updated");
    assert_eq!(msg["service"]["id"], id);
    assert_eq!(msg["service"]["paused"], true);
    assert_eq!(msg["service"]["name"], "api-2");

    // A PATCH that changes nothing announces nothing: the next change the
    // client sees is the delete.
    let same = send(
        &m,
        reqwest::Method::PATCH,
        &path,
        &serde_json::json!({"paused": true}),
    )
    .await;
    assert_eq!(same.status, 200, "{}", same.text);
    let gone = request(&m, reqwest::Method::DELETE, &path, None, None).await;
    assert_eq!(gone.status, 204, "{}", gone.text);
    let msg = next_change(&mut ws, "service_deleted").await;
    assert_eq!(
        msg,
        serde_json::json!({"type": "service_deleted", "service_id": id})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_push_service_reaches_clients_without_its_token() {
    let m = Monitor::start();
    let mut ws = WsClient::connect(&m).await;
    ws.next_json().await.expect("snapshot");
    let created = m
        .register(
            serde_json::json!({"name": "cron", "url": "push://", "interval": 60, "timeout": 1}),
        )
        .await;
    let push_url = created["push_url"].as_str().expect("push_url").to_owned();
    let token = push_url.rsplit('/').next().expect("token").to_owned();
    let msg = next_change(&mut ws, "service_created").await;
    assert_eq!(msg["service"]["id"], created["id"]);
    assert!(msg["service"].get("push_url").is_none(), "{msg}");
    assert!(!msg.to_string().contains(&token), "the token leaked: {msg}");
    // A resume announces too.
    let path = format!("/services/{}", id_of(&created));
    for paused in [true, false] {
        let r = send(
            &m,
            reqwest::Method::PATCH,
            &path,
            &serde_json::json!({"paused": paused}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let msg = next_change(&mut ws, "service_updated").await;
        assert_eq!(msg["service"]["paused"], paused);
        assert!(!msg.to_string().contains(&token), "the token leaked: {msg}");
    }
}

/// A client of `/ws` with this query string, past its snapshot, which it
/// returns.
async fn filtered_client(m: &Monitor, query: &str) -> (WsClient, Value) {
    let (stream, _) = tokio_tungstenite::connect_async(format!("{}?{query}", m.ws_url()))
        .await
        .expect("ws connect");
    let mut ws = WsClient { stream };
    let snapshot = ws.next_json().await.expect("snapshot");
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    (ws, snapshot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_apply_to_changes_of_the_list() {
    let target = Target::start().await;
    let m = Monitor::start();
    // Paused, so neither flips: the flips-only client must see nothing of them.
    let paused = |name| {
        let mut body = service(name, NOWHERE, 3600);
        body["paused"] = true.into();
        body
    };
    let a = id_of(&m.register(paused("a")).await);
    let b = id_of(&m.register(paused("b")).await);
    let (mut only_a, snapshot) = filtered_client(&m, &format!("service_id={a}")).await;
    assert_eq!(service_names(&snapshot), ["a"]);
    let (mut deletes, _) = filtered_client(&m, "events=service_deleted").await;
    let (mut flips, _) = filtered_client(&m, "events=status_change").await;

    // b's rename and deletion are not a's; a's rename is.
    let patch = serde_json::json!({"name": "b-2"});
    let r = send(
        &m,
        reqwest::Method::PATCH,
        &format!("/services/{b}"),
        &patch,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = request(
        &m,
        reqwest::Method::DELETE,
        &format!("/services/{b}"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let patch = serde_json::json!({"name": "a-2"});
    let r = send(
        &m,
        reqwest::Method::PATCH,
        &format!("/services/{a}"),
        &patch,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (msg, before) = only_a
        .until("a's rename", |msg| msg["type"] == "service_updated")
        .await;
    assert_eq!(msg["service"]["name"], "a-2");
    assert!(
        before
            .iter()
            .all(|m| m["service_id"] == a || m["service"]["id"] == a),
        "only a's events: {before:?}"
    );

    // The deletes-only client sees b's deletion first, and nothing before.
    let msg = deletes.next_json().await.expect("an event");
    assert_eq!(
        msg,
        serde_json::json!({"type": "service_deleted", "service_id": b})
    );

    // The flips-only client saw none of that: its first message is the
    // flip of a service registered now.
    let c = id_of(&m.register(service("c", &target.url("/ok"), 1)).await);
    let msg = flips.next_json().await.expect("an event");
    assert!(is(&msg, "status_change", c), "{msg}");
    assert_eq!(msg["new_status"], "UP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_filter_is_refused_naming_it() {
    let m = Monitor::start();
    for (query, field) in [
        ("events=service_renamed", "events"),
        ("service_id=one", "service_id"),
    ] {
        let r = get(&m, &format!("/ws?{query}")).await;
        assert_eq!(r.status, 400, "{query}: {}", r.text);
        assert_eq!(
            error_fields(&r, query),
            [field.to_owned()].into_iter().collect(),
            "{query}"
        );
    }
}
