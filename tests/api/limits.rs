//! Connection-level limits: idle and slowloris connections do not starve the
//! API, slow senders are cut off after the request timeout, and oversized
//! headers are refused.
use crate::helpers::*;

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_and_slowloris_connections_leave_the_api_answering() {
    let m = Monitor::start_with(&[("HEALTHMON__SERVER__CLIENT_REQUEST_TIMEOUT_S", "2")]);
    let mut idle = Vec::new();
    let mut slow = Vec::new();
    for i in 0..1000 {
        let mut sock = TcpStream::connect(&m.addr).await.expect("connect");
        if i % 2 == 0 {
            // A request that never finishes its headers.
            sock.write_all(b"GET /services HTTP/1.1\r\nHost: x\r\nX-Slow: a")
                .await
                .expect("write");
            slow.push(sock);
        } else {
            idle.push(sock);
        }
    }
    // The API still answers, reads and writes alike.
    let (status, _) = m.get("/healthz").await;
    assert_eq!(status, 200);
    let created = m
        .register(service("still here", "http://127.0.0.1:9/", 60))
        .await;
    assert!(created["id"].is_i64());
    // Trickling one more byte does not buy time: the request timeout holds.
    for sock in slow.iter_mut().take(50) {
        let _ = sock.write_all(b"a").await;
    }
    let mut closed = 0;
    for sock in slow.iter_mut() {
        let mut buf = [0u8; 512];
        // The server answers 408 and/or closes; either ends the read.
        match tokio::time::timeout(Duration::from_secs(15), sock.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(
        closed,
        slow.len(),
        "slow connections were kept past the request timeout"
    );
    let (status, _) = m.get("/services").await;
    assert_eq!(status, 200);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_and_change_nothing() {
    let m = Monitor::start();
    let huge = "x".repeat(100 * 1024);
    let resp = m
        .http
        .post(m.url("/services"))
        .header("x-huge", huge)
        .json(&service("h", "http://127.0.0.1:9/", 60))
        .send()
        .await;
    let resp = resp.expect("an answer");
    assert_eq!(resp.status(), 431);
    let body: serde_json::Value = resp.json().await.expect("problem");
    assert_eq!(body["status"], 431);
    // Far over: actix-http refuses the head itself.
    let resp = m
        .http
        .get(m.url("/services"))
        .header("x-huge", "y".repeat(200 * 1024))
        .send()
        .await;
    if let Ok(r) = resp {
        assert_eq!(r.status(), 431);
    }
    let (status, list) = m.get("/services").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_is_cut_off_with_408_and_changes_nothing() {
    let m = Monitor::start();
    let mut sock = TcpStream::connect(&m.addr).await.expect("connect");
    let head = format!(
        "POST /services HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"name\":",
        m.addr
    );
    sock.write_all(head.as_bytes()).await.expect("write");
    // The rest of the body never comes; the server must answer by itself.
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(n) = sock.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept waiting for the body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let (_, list) = m.get("/services").await;
    assert_eq!(list.as_array().map(Vec::len), Some(0));
}
