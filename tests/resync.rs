//! Resync after lost events (DESIGN.md, WebSocket): the real binary in
//! distributed mode, PostgreSQL and RabbitMQ on 127.0.0.1, and the broker
//! restarted under two API processes. Every WebSocket client of each must
//! get `{"type":"resync"}` and then a fresh snapshot holding what changed
//! while events could not reach it.
//!
//! Under CI a missing server fails the test; elsewhere it is skipped
//! through [`common::skip::skip`]. The test stops the shared broker, so it
//! lives in its own binary (test binaries run one after another).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

mod common;

use common::broker::BrokerStopped;
use common::fleet::Fleet;
use common::target::Target;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Long enough for a broker restart and the capped reconnect backoff (10 s).
const LONG: Duration = Duration::from_secs(60);

/// A WebSocket client read all the time by a task of its own, so it answers
/// the server's pings while the test is busy elsewhere (a client that does
/// not is disconnected after two ping intervals, 30 s).
struct Client {
    messages: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Client {
    async fn connect(m: &Monitor) -> Client {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let mut ws = WsClient::connect(m).await;
        let (tx, messages) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.stream.next().await {
                match msg {
                    Message::Text(t) => {
                        let json = serde_json::from_str(&t).expect("JSON messages");
                        if tx.send(json).is_err() {
                            return;
                        }
                    }
                    Message::Close(_) => return,
                    _ => {}
                }
            }
        });
        Client { messages }
    }

    /// The next message; fails the test after [`LONG`] or on a close.
    async fn next(&mut self) -> Value {
        tokio::time::timeout(LONG, self.messages.recv())
            .await
            .unwrap_or_else(|_| panic!("no WebSocket message within {LONG:?}"))
            .expect("the server closed the WebSocket")
    }

    /// The services of the snapshot messages starting with `first`, up to
    /// the one with `"last": true`.
    async fn snapshot(&mut self, first: Value) -> Vec<Value> {
        let mut services = Vec::new();
        let mut msg = first;
        loop {
            assert_eq!(msg["type"], "snapshot", "a snapshot message: {msg}");
            services.extend(msg["services"].as_array().cloned().unwrap_or_default());
            if msg["last"] == true {
                return services;
            }
            msg = self.next().await;
        }
    }

    /// Reads up to `{"type":"resync"}`, skipping the events before it.
    async fn until_resync(&mut self) {
        loop {
            let msg = self.next().await;
            if msg["type"] == "resync" {
                assert_eq!(msg, json!({"type": "resync"}));
                return;
            }
            assert_ne!(
                msg["type"], "snapshot",
                "a snapshot before the resync: {msg}"
            );
        }
    }
}

async fn wait_ready(m: &Monitor, want: u16, what: &str) {
    let start = Instant::now();
    while m.get("/readyz").await.0 != want {
        assert!(start.elapsed() < LONG, "{what}: not within {LONG:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_broker_restart_every_client_of_every_api_process_gets_resync_then_a_fresh_snapshot()
 {
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let target = Target::start().await;
    // One process does everything; a second serves only the API.
    let full = fleet.spawn("all");
    let api = fleet.spawn("api");
    // Checked once now and not again within the test, so the status stays
    // what the test makes it.
    let svc = full
        .register(service("watched", &target.url("/ok"), 3600))
        .await;
    let id = svc["id"].as_i64().expect("id");
    eventually("the first check", || async {
        let (_, s) = full.get(&format!("/services/{id}")).await;
        (s["last_status"] == "UP").then_some(())
    })
    .await;

    let mut clients = Vec::new();
    for m in [&full, &api] {
        let mut ws = Client::connect(m).await;
        let first = ws.next().await;
        let services = ws.snapshot(first).await;
        assert_eq!(services.len(), 1);
        assert_eq!(services[0]["last_status"], "UP");
        clients.push(ws);
    }

    let stopped = BrokerStopped::now();
    wait_ready(&full, 503, "the first process sees the broker gone").await;
    wait_ready(&api, 503, "the second process sees the broker gone").await;
    // Changes no client can hear of: a rename through the API (its
    // announcement fails), and a status flip as the recorder of a process
    // cut off from this one would store it.
    let (status, body) = api
        .send_json(
            reqwest::Method::PATCH,
            &format!("/services/{id}"),
            json!({"name": "renamed while away"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        let mut sql = AsyncPgConnection::establish(&fleet.db.url)
            .await
            .expect("connect to the test database");
        diesel::sql_query(format!(
            "UPDATE services SET last_status = 'DOWN' WHERE id = {id}"
        ))
        .execute(&mut sql)
        .await
        .expect("flip the status");
    }
    drop(stopped);
    let back = Instant::now();

    for (ws, m) in clients.iter_mut().zip([&full, &api]) {
        ws.until_resync().await;
        // The snapshot comes right after the resync, before any event.
        let first = ws.next().await;
        let services = ws.snapshot(first).await;
        assert_eq!(services.len(), 1, "{services:?}");
        let (_, now) = m.get(&format!("/services/{id}")).await;
        assert_eq!(services[0]["name"], "renamed while away");
        assert_eq!(services[0]["last_status"], "DOWN");
        assert_eq!(
            services[0], now,
            "the snapshot is the store's current state"
        );
    }
    eprintln!("clients resynced {:?} after start_app", back.elapsed());
}
