//! The distributed deployment, spawning the real binary as a fleet against
//! the PostgreSQL and RabbitMQ servers on 127.0.0.1: roles, failover,
//! restarts of the servers, and events across API processes.
//!
//! Each test gets a fresh database and its own queue prefix. Tests here run
//! one at a time (some stop the shared servers). Under `CI=true` they fail if
//! the servers are missing; elsewhere they skip, saying so loudly.

mod common;

use common::target::Target;
use common::*;
use serde_json::Value;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn broker_up() -> bool {
    std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5672".parse().expect("addr"),
        Duration::from_secs(2),
    )
    .is_ok()
}

/// A database and a queue prefix shared by the processes of one test.
struct Fleet {
    db: PgDb,
    prefix: String,
}

impl Fleet {
    async fn new() -> Option<Fleet> {
        if !broker_up() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "RabbitMQ at 127.0.0.1:5672 is required under CI=true"
            );
            eprintln!("!!! SKIPPING a fleet test: RabbitMQ at 127.0.0.1:5672 unreachable !!!");
            return None;
        }
        let db = pg_db().await?;
        let prefix = format!("t{}", db.url.rsplit('_').next().unwrap_or("x"));
        Some(Fleet { db, prefix })
    }

    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("HEALTHMON__DATABASE__URL", self.db.url.as_str()),
            ("HEALTHMON__QUEUE__URL", AMQP),
            ("HEALTHMON__QUEUE__PREFIX", self.prefix.as_str()),
            ("RUST_LOG", "info,healthmon::worker=debug"),
        ]
    }

    fn spawn(&self, roles: &str) -> Monitor {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let mut args = vec!["--role", roles];
        if !roles.contains("api") {
            args.extend(["--health-bind", "127.0.0.1:0"]);
        }
        Monitor::start_args(dir, &self.env(), &args)
    }

    /// Drops the database and this test's queues and exchanges.
    async fn finish(self) {
        use amqprs::channel::{ExchangeDeleteArguments, QueueDeleteArguments};
        use amqprs::connection::{Connection, OpenConnectionArguments};
        self.db.drop_db().await;
        let args = OpenConnectionArguments::new("127.0.0.1", 5672, "guest", "guest");
        if let Ok(conn) = Connection::open(&args).await
            && let Ok(ch) = conn.open_channel(None).await
        {
            for q in ["jobs", "results", "dead"] {
                let _ = ch
                    .queue_delete(QueueDeleteArguments::new(&format!("{}.{q}", self.prefix)))
                    .await;
            }
            for x in ["events", "schedule", "dead"] {
                let _ = ch
                    .exchange_delete(ExchangeDeleteArguments::new(&format!(
                        "{}.{x}",
                        self.prefix
                    )))
                    .await;
            }
            let _ = conn.close().await;
        }
    }
}

async fn register_many(api: &Monitor, url: &str, n: usize, interval: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let body = serde_json::json!({"name": format!("svc{i}"), "url": url, "interval": interval, "timeout": 1});
        ids.push(api.register(body).await["id"].as_i64().expect("id"));
    }
    ids
}

/// Waits until every service has a log checked after `after` (epoch ms).
async fn every_service_checked_after(api: &Monitor, ids: &[i64], after: i64, what: &str) {
    eventually(what, || async {
        for id in ids {
            let logs = api.logs(*id, "limit=1").await;
            let newest = logs
                .first()
                .and_then(|l| l["checked_at"].as_str())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis());
            if newest.is_none_or(|t| t <= after) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn checks_done(worker: &Monitor) -> usize {
    worker.log_text().matches("check done").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_scheduler_and_two_workers_check_every_service() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let target = Target::start().await;
    let api = fleet.spawn("api,scheduler");
    let w1 = fleet.spawn("worker");
    let w2 = fleet.spawn("worker");
    let ids = register_many(&api, &target.url("/ok"), 10, 1).await;
    for id in &ids {
        eventually("three logs per service", || async {
            (api.logs(*id, "limit=10").await.len() >= 3).then_some(())
        })
        .await;
    }
    assert!(
        checks_done(&w1) > 0 && checks_done(&w2) > 0,
        "one worker did all the work"
    );
    // Worker-only processes answer their probes on --health-bind.
    let probe = reqwest::get(w1.url("/readyz")).await.expect("probe");
    assert_eq!(probe.status(), 200);
    drop((api, w1, w2));
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_check_leaves_no_service_behind() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let target = Target::start().await;
    let api = fleet.spawn("api,scheduler");
    let mut w1 = fleet.spawn("worker");
    let w2 = fleet.spawn("worker");
    // Checks that take 500 ms: a kill lands while some are in flight.
    let ids = register_many(&api, &target.url("/slow"), 10, 5).await;
    eventually("both workers busy", || async {
        (checks_done(&w1) > 0 && checks_done(&w2) > 0).then_some(())
    })
    .await;
    let killed_at = now_ms();
    w1.kill9();
    every_service_checked_after(
        &api,
        &ids,
        killed_at,
        "every service checked after the kill",
    )
    .await;
    assert!(
        now_ms() - killed_at < 5_000 + 1_000,
        "the fleet took {} ms to check every service again",
        now_ms() - killed_at
    );
    drop((api, w2));
    fleet.finish().await;
}

/// Restarts RabbitMQ's application even if the test fails half-way.
struct BrokerGuard;
impl Drop for BrokerGuard {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_recovers_from_a_broker_restart_by_itself() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let target = Target::start().await;
    let api = fleet.spawn("api,scheduler");
    let worker = fleet.spawn("worker");
    let ids = register_many(&api, &target.url("/ok"), 5, 1).await;
    every_service_checked_after(&api, &ids, now_ms(), "checks before the restart").await;

    let _guard = BrokerGuard;
    let stop = Command::new("rabbitmqctl")
        .arg("stop_app")
        .output()
        .expect("rabbitmqctl");
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    eventually("readyz to report the bus down", || async {
        (api.get("/readyz").await.0 == 503).then_some(())
    })
    .await;
    // Reads keep working while the broker is away.
    assert_eq!(api.get("/services").await.0, 200);
    let start = Command::new("rabbitmqctl")
        .arg("start_app")
        .output()
        .expect("rabbitmqctl");
    assert!(start.status.success());
    let restarted = Instant::now();
    let back = now_ms();
    eventually("readyz to recover", || async {
        (api.get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    every_service_checked_after(&api, &ids, back, "checks after the restart").await;
    eprintln!("fleet recovered {:?} after start_app", restarted.elapsed());
    assert_eq!(
        reqwest::get(worker.url("/readyz"))
            .await
            .expect("probe")
            .status(),
        200
    );
    drop((api, worker));
    fleet.finish().await;
}

fn pg_cluster(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .expect("a PostgreSQL cluster under /etc/postgresql");
    let out = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .output()
        .expect("pg_ctlcluster");
    assert!(
        out.status.success() || action == "start",
        "pg_ctlcluster {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts PostgreSQL again even if the test fails half-way.
struct PgGuard;
impl Drop for PgGuard {
    fn drop(&mut self) {
        pg_cluster("start");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_s_database_outage_stops_writes_but_not_checks_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    if std::path::Path::new("/etc/postgresql").read_dir().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no local PostgreSQL cluster to stop"
        );
        eprintln!("!!! SKIPPING the database outage test: no local cluster !!!");
        return;
    }
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let target = Target::start().await;
    let api = fleet.spawn("api,scheduler");
    let worker = fleet.spawn("worker");
    let ids = register_many(&api, &target.url("/ok"), 3, 1).await;
    every_service_checked_after(&api, &ids, now_ms(), "checks before the outage").await;

    let _guard = PgGuard;
    let down_from = now_ms();
    pg_cluster("stop");
    let (status, body) = api
        .send_json(
            reqwest::Method::POST,
            "/services",
            service("during", &target.url("/ok"), 60),
        )
        .await;
    assert_eq!(status, 503, "a write during the outage: {body}");
    // Checks go on: the scheduler keeps its schedule and workers need no
    // database; results wait on the bus.
    let hits = target.hits("/ok");
    eventually("checks during the outage", || async {
        (target.hits("/ok") >= hits + 10).then_some(())
    })
    .await;
    while now_ms() - down_from < 30_000 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let down_until = now_ms();
    pg_cluster("start");
    eventually("writes to work again", || async {
        let (status, _) = api
            .send_json(
                reqwest::Method::POST,
                "/services",
                service("after", &target.url("/ok"), 60),
            )
            .await;
        (status == 201).then_some(())
    })
    .await;
    // The checks made while the database was down were recorded afterwards.
    for id in &ids {
        let during = eventually("the outage's checks recorded", || async {
            let logs = api.logs(*id, "limit=1000").await;
            let n = logs
                .iter()
                .filter_map(|l| l["checked_at"].as_str())
                .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis())
                .filter(|t| (down_from + 2_000..down_until - 2_000).contains(t))
                .count();
            (n >= 20).then_some(n)
        })
        .await;
        assert!(
            during >= 20,
            "service {id}: {during} checks recorded from the outage"
        );
    }
    drop((api, worker));
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_scheduler_takes_over_within_ten_seconds() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let target = Target::start().await;
    let mut a = fleet.spawn("api,scheduler");
    let mut b = fleet.spawn("api,scheduler");
    let worker = fleet.spawn("worker");
    let ids = register_many(&a, &target.url("/ok"), 3, 1).await;
    let active_line = "this process is the active scheduler";
    eventually("one active scheduler", || async {
        (a.log_text().contains(active_line) || b.log_text().contains(active_line)).then_some(())
    })
    .await;
    assert!(
        !(a.log_text().contains(active_line) && b.log_text().contains(active_line)),
        "two active schedulers"
    );
    let (leader, standby) = if a.log_text().contains(active_line) {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    every_service_checked_after(standby, &ids, now_ms(), "checks before the kill").await;
    let killed = Instant::now();
    let killed_at = now_ms();
    leader.kill9();
    eventually("the standby to take over", || async {
        standby.log_text().contains(active_line).then_some(())
    })
    .await;
    every_service_checked_after(standby, &ids, killed_at, "checks after the takeover").await;
    let took = killed.elapsed();
    eprintln!("standby took over and checked every service {took:?} after the kill");
    assert!(took < Duration::from_secs(10), "takeover took {took:?}");
    drop((a, b, worker));
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_on_one_api_sees_changes_made_through_another() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let target = Target::start().await;
    let first = fleet.spawn("api,scheduler");
    let second = fleet.spawn("api");
    let worker = fleet.spawn("worker");
    let mut ws = WsClient::connect(&second).await;
    ws.next_json().await.expect("snapshot");
    let svc = first
        .register(service("remote", &target.url("/switch"), 1))
        .await;
    let id = svc["id"].as_i64().expect("id");
    let is_change = |m: &Value| m["type"] == "status_change" && m["service_id"] == id;
    let (up, _) = ws
        .until("PENDING -> UP seen on the second API", is_change)
        .await;
    assert_eq!(up["new_status"], "UP");
    target.set_up(false);
    let (down, _) = ws
        .until("UP -> DOWN seen on the second API", is_change)
        .await;
    assert_eq!(down["old_status"], "UP");
    for _ in 0..3 {
        let (check, between) = ws
            .until("a DOWN check", |m| {
                m["type"] == "check" && m["service_id"] == id
            })
            .await;
        assert_eq!(check["status"], "DOWN");
        assert!(
            !between.iter().any(is_change),
            "status_change announced twice"
        );
    }
    drop((first, second, worker));
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_queue_and_checks_go_on() {
    use amqprs::BasicProperties;
    use amqprs::channel::{BasicPublishArguments, QueueDeclareArguments};
    use amqprs::connection::{Connection, OpenConnectionArguments};
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let target = Target::start().await;
    let api = fleet.spawn("api,scheduler");
    let worker = fleet.spawn("worker");
    let ids = register_many(&api, &target.url("/ok"), 3, 1).await;
    every_service_checked_after(&api, &ids, now_ms(), "checks before the poison").await;

    // Garbage from something that is not healthmon, on both work queues.
    let conn = Connection::open(&OpenConnectionArguments::new(
        "127.0.0.1",
        5672,
        "guest",
        "guest",
    ))
    .await
    .expect("connect");
    let ch = conn.open_channel(None).await.expect("channel");
    for queue in ["jobs", "results"] {
        ch.basic_publish(
            BasicProperties::default().with_delivery_mode(2).finish(),
            b"\xff not json".to_vec(),
            BasicPublishArguments::new("", &format!("{}.{queue}", fleet.prefix)),
        )
        .await
        .expect("publish");
    }
    let poisoned_at = now_ms();
    let dead = format!("{}.dead", fleet.prefix);
    eventually("both poison messages dead-lettered", || async {
        let declared = ch
            .queue_declare(QueueDeclareArguments::new(&dead).passive(true).finish())
            .await
            .ok()
            .flatten();
        declared.and_then(|(_, n, _)| (n == 2).then_some(()))
    })
    .await;
    every_service_checked_after(&api, &ids, poisoned_at, "checks after the poison").await;
    let _ = conn.close().await;
    drop((api, worker));
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_on_a_new_database_all_come_up() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    // Three processes race to migrate the fresh database.
    let processes: Vec<Monitor> = std::thread::scope(|scope| {
        let starters: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| fleet.spawn("api,scheduler")))
            .collect();
        starters
            .into_iter()
            .map(|t| t.join().expect("a process failed to start"))
            .collect()
    });
    for p in &processes {
        // Up at once; ready once its broker connection is.
        eventually("each process ready", || async {
            (p.get("/readyz").await.0 == 200).then_some(())
        })
        .await;
    }
    drop(processes);
    fleet.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_through_an_api_only_process_reaches_the_scheduler_at_once() {
    let _serial = SERIAL.lock().await;
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let target = Target::start().await;
    let scheduler = fleet.spawn("scheduler");
    let api = fleet.spawn("api");
    let worker = fleet.spawn("worker");
    // Give the scheduler its lock first, so the change has to travel.
    eventually("the scheduler to lead", || async {
        scheduler
            .log_text()
            .contains("this process is the active scheduler")
            .then_some(())
    })
    .await;
    let created = Instant::now();
    let svc = api
        .register(service("travels", &target.url("/ok?travels"), 3600))
        .await;
    let id = svc["id"].as_i64().expect("id");
    eventually("the first check", || async {
        (target.hits("/ok?travels") > 0).then_some(())
    })
    .await;
    eprintln!(
        "a new service was checked {:?} after its POST on another process",
        created.elapsed()
    );
    assert!(
        created.elapsed() < Duration::from_secs(2),
        "took {:?}",
        created.elapsed()
    );
    // A PATCH through the same process moves the checks at once too.
    let patched = Instant::now();
    let (status, _) = api
        .send_json(
            reqwest::Method::PATCH,
            &format!("/services/{id}"),
            serde_json::json!({"url": target.url("/ok?moved")}),
        )
        .await;
    assert_eq!(status, 200);
    eventually("the moved check", || async {
        (target.hits("/ok?moved") > 0).then_some(())
    })
    .await;
    assert!(
        patched.elapsed() < Duration::from_secs(2),
        "took {:?}",
        patched.elapsed()
    );
    drop((scheduler, api, worker));
    fleet.finish().await;
}
