//! The RabbitMQ server the bus and fleet tests share (127.0.0.1:5672,
//! guest/guest): whether it is there, deleting what a test's queue prefix
//! declared, and stopping its application for a restart test.

use super::clean_up_now;
use amqprs::channel::{ExchangeDeleteArguments, QueueDeleteArguments};
use amqprs::connection::{Connection, OpenConnectionArguments};
use healthmon::bus::rabbitmq::{Names, RabbitOptions};
use healthmon::bus::{Bus, BusError};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The local broker, as the processes under test are given it.
pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Whether something answers on the broker's port within 2 s (the error
/// says why not).
pub fn reachable() -> Result<(), String> {
    std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5672".parse().expect("addr"),
        Duration::from_secs(2),
    )
    .map(drop)
    .map_err(|e| format!("no connection within 2 s: {e}"))
}

/// Plain connection arguments for a test's own amqprs connection to `url`.
pub fn raw_args(url: &str) -> OpenConnectionArguments {
    let u = url::Url::parse(url).expect("a valid test broker URL");
    let vhost = match u.path() {
        "" | "/" | "/%2f" | "/%2F" => "/".to_owned(),
        p => p[1..].to_owned(),
    };
    let mut args = OpenConnectionArguments::new(
        u.host_str().unwrap_or("127.0.0.1"),
        u.port().unwrap_or(5672),
        if u.username().is_empty() {
            "guest"
        } else {
            u.username()
        },
        u.password().unwrap_or("guest"),
    );
    args.virtual_host(&vhost);
    args
}

/// A test's own connection to the local broker, to look at or meddle with
/// what the processes under test declared.
pub async fn connection() -> Connection {
    Connection::open(&raw_args(AMQP))
        .await
        .expect("a test connection to RabbitMQ")
}

/// Region names whose job queues every clean-up deletes: the default
/// region's and those tests name through [`remember_region`].
static REGIONS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Notes that a test runs workers in `region`, so that every prefix's
/// clean-up deletes its `P.jobs.REGION` queue too. (The broker cannot be
/// asked which queues a prefix has without its management plugin;
/// deleting a queue that does not exist is harmless.)
pub fn remember_region(region: &str) {
    if let Ok(mut all) = REGIONS.lock() {
        all.insert(region.to_owned());
    }
}

/// Deletes the queues and exchanges `prefix` declared on the broker at
/// `url`: jobs (any worker's and each remembered region's), results,
/// votes, dead letters, and the events, schedule and heartbeats fanouts.
/// Best effort: a broker that is away has nothing to delete now.
pub async fn delete_topology(url: &str, prefix: &str) {
    let names = Names::new(prefix);
    let mut queues = vec![
        names.jobs.clone(),
        names.results.clone(),
        names.votes.clone(),
        names.dead.clone(),
        names.region_jobs("default"),
    ];
    if let Ok(regions) = REGIONS.lock() {
        queues.extend(regions.iter().map(|r| names.region_jobs(r)));
    }
    let Ok(conn) = Connection::open(&raw_args(url)).await else {
        return;
    };
    if let Ok(ch) = conn.open_channel(None).await {
        for q in &queues {
            let _ = ch.queue_delete(QueueDeleteArguments::new(q)).await;
        }
        for x in [
            &names.events,
            &names.schedule,
            &names.dead,
            &names.heartbeats,
        ] {
            let _ = ch.exchange_delete(ExchangeDeleteArguments::new(x)).await;
        }
    }
    let _ = conn.close().await;
}

/// A queue prefix no other test (of this or another binary) uses.
pub fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t_{}_{}_{}",
        std::process::id(),
        healthmon::domain::time::now_ms(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test's own queue prefix on the broker at `url`, and the buses (each
/// one "process") started on it. A guard: dropped, it stops every bus's
/// connection task, checks that each stopped cleanly (unless the test is
/// failing already), and deletes the prefix's queues and exchanges.
pub struct BusFixture {
    /// Where the buses connect by default, and where the topology is
    /// deleted from.
    pub url: String,
    pub prefix: String,
    buses: Vec<Started>,
    /// Held until the fixture is cleaned up (say, a lock on the broker).
    _hold: Option<Box<dyn Send + Sync>>,
}

/// A bus a fixture started, and its connection task.
struct Started {
    bus: Bus,
    token: CancellationToken,
    task: JoinHandle<Result<(), BusError>>,
}

impl BusFixture {
    /// A fresh prefix on the broker at `url`.
    pub fn new(url: &str) -> BusFixture {
        BusFixture {
            url: url.to_owned(),
            prefix: unique_prefix(),
            buses: Vec::new(),
            _hold: None,
        }
    }

    /// Keeps `guard` until after the clean-up.
    pub fn holding(mut self, guard: impl Send + Sync + 'static) -> BusFixture {
        self._hold = Some(Box::new(guard));
        self
    }

    /// A bus with its connection task running; it need not be connected.
    pub fn start(&mut self, opts: RabbitOptions) -> Bus {
        let bus = Bus::rabbit(opts).expect("a usable URL");
        let keeper = bus.keeper().expect("a broker bus has a keeper");
        let token = CancellationToken::new();
        let task = tokio::spawn(keeper.run(token.clone()));
        self.buses.push(Started {
            bus: bus.clone(),
            token,
            task,
        });
        bus
    }

    /// A bus connected within 10 s (or the test fails).
    pub async fn start_ready(&mut self, opts: RabbitOptions) -> Bus {
        let bus = self.start(opts);
        assert!(
            bus.ready(Duration::from_secs(10)).await,
            "the bus did not connect"
        );
        bus
    }
}

impl Drop for BusFixture {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        let buses = std::mem::take(&mut self.buses);
        let (url, prefix) = (&self.url, &self.prefix);
        let mut unclean = Vec::new();
        clean_up_now(async {
            for Started { bus, token, task } in buses {
                token.cancel();
                match tokio::time::timeout(Duration::from_secs(10), task).await {
                    Ok(Ok(Ok(()))) if !bus.is_ready() => {}
                    Ok(Ok(Ok(()))) => unclean.push("still ready after its stop".to_owned()),
                    Ok(Ok(Err(e))) => unclean.push(format!("stopped with {e:?}")),
                    Ok(Err(e)) => unclean.push(format!("panicked: {e}")),
                    Err(_) => unclean.push("did not stop within 10 s".to_owned()),
                }
            }
            delete_topology(url, prefix).await;
        });
        if !failing {
            assert!(
                unclean.is_empty(),
                "a bus did not stop cleanly: {unclean:?}"
            );
        }
    }
}

/// Runs `rabbitmqctl <cmd>` quietly.
pub fn rabbitmqctl(cmd: &str) -> std::process::Output {
    Command::new("rabbitmqctl")
        .arg(cmd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run rabbitmqctl {cmd}: {e}"))
}

/// The broker's application, stopped until [`BrokerStopped::start`] or the
/// drop: it starts again even when the test fails half-way, so no later
/// test finds the broker down.
pub struct BrokerStopped {
    started: bool,
}

impl BrokerStopped {
    /// Stops the broker's application (`rabbitmqctl stop_app`).
    pub fn now() -> BrokerStopped {
        let out = rabbitmqctl("stop_app");
        assert!(
            out.status.success(),
            "rabbitmqctl stop_app: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        BrokerStopped { started: false }
    }

    /// Starts it again now, failing the test if it cannot.
    pub fn start(mut self) {
        self.started = true;
        let out = rabbitmqctl("start_app");
        assert!(
            out.status.success(),
            "rabbitmqctl start_app: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for BrokerStopped {
    fn drop(&mut self) {
        if self.started {
            return;
        }
        let out = rabbitmqctl("start_app");
        if !out.status.success() && !std::thread::panicking() {
            panic!(
                "rabbitmqctl start_app: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
