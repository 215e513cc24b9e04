//! The RabbitMQ server the bus and fleet tests share (127.0.0.1:5672,
//! guest/guest): whether it is there, deleting what a test's queue prefix
//! declared, and stopping its application for a restart test.

use amqprs::channel::{ExchangeDeleteArguments, QueueDeleteArguments};
use amqprs::connection::{Connection, OpenConnectionArguments};
use healthmon::bus::rabbitmq::Names;
use std::process::Command;
use std::time::Duration;

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

/// Deletes the queues and exchanges `prefix` declared on the broker at
/// `url`. Best effort: a broker that is away has nothing to delete now.
pub async fn delete_topology(url: &str, prefix: &str) {
    let names = Names::new(prefix);
    let Ok(conn) = Connection::open(&raw_args(url)).await else {
        return;
    };
    if let Ok(ch) = conn.open_channel(None).await {
        for q in [&names.jobs, &names.results, &names.dead] {
            let _ = ch.queue_delete(QueueDeleteArguments::new(q)).await;
        }
        for x in [&names.events, &names.schedule, &names.dead] {
            let _ = ch.exchange_delete(ExchangeDeleteArguments::new(x)).await;
        }
    }
    let _ = conn.close().await;
}

/// Runs `cleanup` to its end from a `Drop`, on a thread of its own with a
/// runtime of its own (the test's runtime may be the one dropping), giving
/// up after 15 s so a missing server cannot hang the test.
pub fn clean_up_now<F: Future<Output = ()> + Send>(cleanup: F) {
    std::thread::scope(|s| {
        let _ = s
            .spawn(|| {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(15), cleanup).await;
                });
            })
            .join();
    });
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
