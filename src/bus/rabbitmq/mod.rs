//! The RabbitMQ bus (amqprs): the same four streams as the in-process bus,
//! carried by a broker so a fleet of processes can share them.
//!
//! # Topology
//!
//! Every name starts with `queue.prefix` (`P` below), so installations can
//! share a broker:
//!
//! | name | kind | carries |
//! |---|---|---|
//! | `P.jobs` | durable quorum queue (default exchange) | check jobs, one worker each |
//! | `P.results` | durable quorum queue (default exchange), `x-max-length` from `queue.results_max`, `x-overflow: reject-publish` | results, one recorder each |
//! | `P.events` | durable fanout exchange | events; each subscribing process binds one exclusive, auto-delete, server-named queue |
//! | `P.schedule` | durable fanout exchange | schedule updates; same pattern |
//! | `P.dead` | durable fanout exchange + durable queue | poison jobs and results |
//! | `P.jobs.REGION` | as `P.jobs` | a regional service's jobs for that region's workers |
//! | `P.votes` | as `P.results`, plus `x-single-active-consumer` | results with a region (votes), all to one recorder at a time |
//! | `P.heartbeats` | durable fanout exchange | heartbeats ([`crate::bus::beat`]); same pattern as events |
//!
//! A region's jobs queue is declared, with the arguments of `P.jobs`, by
//! the first publisher of a job for it on each connection and by each of
//! its workers when they start consuming, so a region nobody listed has no
//! queue and a region with no live worker has one whose jobs expire there
//! (the round counts that region as missing). A worker in region `R`
//! consumes `P.jobs` and `P.jobs.R` on one channel.
//!
//! Votes have their own queue so that one recorder sees every vote of a
//! round and every region's record: it closes rounds as soon as all
//! awaited regions voted, and it alone judges regions impaired, so an
//! impaired region is announced and alerted once. The broker hands the
//! queue to another recorder when that one goes; rounds it had open are
//! then completed from the store (the votes are logged as they come).
//!
//! Jobs and results are persistent, published with publisher confirms and
//! consumed with manual acks and a bounded prefetch. A message carries one
//! job or result as a JSON object, or several as a JSON array: the
//! scheduler's due jobs go up to [`JOBS_PER_MESSAGE`] to a message, and the
//! results a process publishes while the previous message awaits its confirm
//! go together, up to [`RESULTS_PER_MESSAGE`] (a message each made the broker
//! the bottleneck; BENCHMARKS.md, "What changed"). Consumers hand the items out one by one;
//! the message is acked once every item is, and returned whole if any is
//! dropped unacked. A job message carries an `expiration` of what is left of
//! its longest-lived job's interval (at most the interval), so stale jobs die
//! on the bus instead of piling up after an outage; workers drop the stale
//! ones of a live message one by one. Events and schedule updates are the
//! serde JSON of [`Event`](crate::domain::Event) and
//! [`ScheduleUpdate`](crate::domain::event::ScheduleUpdate), as in-process.
//!
//! # Why quorum queues, and why the consumer moves poison itself
//!
//! RabbitMQ 3.10 (the version here) applies per-message TTL (`expiration`)
//! on quorum queues, and quorum queues count deliveries: every message that
//! comes back (nack, or its consumer's channel closing) carries an
//! `x-delivery-count` header. Classic queues only have a `redelivered` flag,
//! so they would need a redelivery counter of our own (re-publishing each
//! redelivered message with a counter), which quorum queues make
//! unnecessary. `tests/rabbitmq.rs` checks both behaviours on the real
//! broker.
//!
//! The queues do *not* name a dead-letter exchange (`x-dead-letter-exchange`):
//! a quorum queue dead-letters *expired* messages too, so after an outage
//! every stale job would land in `P.dead` and bury the real poison. Instead
//! the consumer judges each delivery: undecodable JSON, or a message already
//! delivered `max_deliveries` times (a check that crashes its worker), is
//! published (confirmed) to the `P.dead` exchange with headers saying why
//! (`x-healthmon-reason`, `x-healthmon-queue`, `x-healthmon-deliveries`) and
//! then acknowledged, so the line moves on. `x-delivery-limit` on the queues
//! (twice `max_deliveries`) is a backstop that drops a message the consumer
//! could not move. `P.dead` holds at most 100,000 messages (oldest dropped).
//!
//! # The results bound
//!
//! Results do not expire, so through a database outage they would pile up
//! on `P.results` without end. The queue's length limit
//! ([`RabbitOptions::results_max_messages`]) makes the broker nack a result
//! message beyond it; [`BusError::Full`] goes back to the worker, which
//! keeps its job and slot and offers the result again with backoff (see
//! `crate::worker`). A queue declared earlier with other arguments makes the
//! declare fail with `PRECONDITION_FAILED`; it is then used as it is, with a
//! warning (docs/scaling-out.md says how to apply the bound).
//!
//! # Confirms and acks
//!
//! One publisher channel per connection runs in confirm mode. A publish
//! takes the next delivery tag under a lock, records a oneshot sender for it
//! in a map, and sends; the channel callback completes the senders on
//! `basic.ack`/`basic.nack` (`multiple` settles every tag up to it). A job or
//! result counts as sent only once confirmed; a publish whose channel dies
//! before the confirm is sent again on the next connection (at least once:
//! results are idempotent, jobs are identified by service and slot).
//! Events are published on the same channel without waiting for a confirm
//! (the in-process contract: publishing an event never waits), and schedule
//! updates wait like jobs.
//!
//! Each queue consumer has its own channel with `basic_qos` = its prefetch;
//! a [`Delivery`](crate::bus::Delivery) acks on the channel it came from. A delivery dropped
//! without an ack is nacked back to the queue; a dropped consumer cancels
//! and returns what it had buffered. The channel closes (returning anything
//! still unacknowledged) once the consumer and all its deliveries are gone.
//!
//! # Keeping the connection
//!
//! amqprs does not reconnect. The bus's [`Keeper`](crate::bus::Keeper), a
//! supervised task of the transport stage, owns the connection: `Connection::open` under a timeout,
//! a heartbeat of 10 s, connection and channel callbacks, and on every new
//! connection it declares the topology and re-binds the fanout subscriptions
//! (sending [`ScheduleSignal::Resync`]
//! to local schedule subscribers, which
//! may have missed updates, and putting a [`Resync`](crate::bus::Resync)
//! mark in the local event ring, where events were lost, so WebSocket
//! clients get a fresh snapshot). A lost connection is retried with capped
//! exponential backoff and jitter (100 ms doubling to 10 s). Queue consumers
//! re-create themselves on the new connection the next time they are polled.
//!
//! While disconnected, [`RabbitBus::is_ready`] is false (`/readyz` 503s),
//! publishing a job, result or schedule update waits up to `publish_timeout`
//! and then fails with [`BusError::Unavailable`], publishing an event fails at
//! once, and consumers simply wait.
//!
//! # Files
//!
//! `connection.rs` keeps the connection up and the fanouts bound;
//! `publisher.rs` sends with confirms and batching; `consumer.rs` receives
//! from the queues and settles deliveries; `uri.rs` reads the broker URL.

mod connection;
mod consumer;
mod depth;
mod publisher;
mod uri;

pub(in crate::bus) use consumer::{AmqpAcker, QueueConsumer};

use super::{Beat, BusError, Capacities, EventText, ScheduleSignal};
use crate::domain::service::redact_url;
use amqprs::channel::Channel;
use amqprs::connection::{Connection, OpenConnectionArguments};
use publisher::{Publisher, ResultsOut};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::time::Instant;
use uri::connection_args;

/// How long declaring the topology and opening channels may take on a new
/// connection before it counts as failed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Most jobs in one message. The prefetch counts messages, so a worker
/// process may hold up to `jobs_prefetch` times this many jobs, while a
/// message per job made the broker the bottleneck (BENCHMARKS.md).
pub const JOBS_PER_MESSAGE: usize = 32;
/// Most results in one message; a recorder process may hold up to
/// `results_prefetch` times this many (about 300 bytes each).
pub const RESULTS_PER_MESSAGE: usize = 64;
/// Most results waiting in a process for the broker; beyond it publishing a
/// result fails at once (the job is then redelivered, as on any failure).
/// The worker pool's concurrency normally bounds them well below this.
pub const RESULTS_QUEUED_MAX: usize = 16 * 1024;

/// How to reach the broker and how to behave on it.
#[derive(Clone)]
pub struct RabbitOptions {
    /// `amqp://user:pass@host:port/vhost` (`?heartbeat=N` is honoured).
    pub url: String,
    /// Prefix of every exchange and queue name.
    pub prefix: String,
    /// Unacknowledged jobs a process holds at once (its worker concurrency).
    pub jobs_prefetch: u16,
    /// Unacknowledged results a process holds at once (above a recorder batch).
    pub results_prefetch: u16,
    /// Local fan-out ring sizes (`events`, `schedule`); `jobs` and `results`
    /// are bounded by the prefetches instead.
    pub caps: Capacities,
    /// Limit on opening a connection (TCP + AMQP handshake).
    pub connect_timeout: Duration,
    /// Heartbeat in seconds, unless the URL sets `heartbeat`.
    pub heartbeat_s: u16,
    /// How long a job, result or schedule update may wait for the broker
    /// (connection and confirm) before it fails with `Unavailable`.
    pub publish_timeout: Duration,
    /// Deliveries a job or result gets before it is moved to `P.dead`.
    pub max_deliveries: u32,
    /// Most results waiting on the results queue (`queue.results_max`);
    /// applied as a limit of [`RabbitOptions::results_max_messages`]
    /// messages with `x-overflow: reject-publish`.
    pub results_max: usize,
    /// First reconnect delay (doubles up to `max_backoff`, with jitter).
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// Which setting chose the URL (e.g. `environment variable
    /// RABBITMQ_URL`), named beside the broker in every connection line so
    /// a wrong broker is traced to where it was configured.
    pub url_source: Option<String>,
}

impl RabbitOptions {
    /// Options with the usual timings: 5 s connect and publish timeouts,
    /// 10 s heartbeat, 5 deliveries, backoff 100 ms to 10 s, and
    /// `queue.results_max`'s default of a million results.
    pub fn new(
        url: impl Into<String>,
        prefix: impl Into<String>,
        jobs_prefetch: usize,
        results_prefetch: usize,
        caps: Capacities,
    ) -> Self {
        let clamp = |n: usize| n.clamp(1, u16::MAX as usize) as u16;
        Self {
            url: url.into(),
            prefix: prefix.into(),
            jobs_prefetch: clamp(jobs_prefetch),
            results_prefetch: clamp(results_prefetch),
            caps,
            connect_timeout: Duration::from_secs(5),
            heartbeat_s: 10,
            publish_timeout: Duration::from_secs(5),
            max_deliveries: 5,
            results_max: 1_000_000,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            url_source: None,
        }
    }
}

impl RabbitOptions {
    /// The results queue's `x-max-length`: `results_max` in messages of up
    /// to [`RESULTS_PER_MESSAGE`] results (rounded up, at least one).
    pub fn results_max_messages(&self) -> i64 {
        let messages = self.results_max.div_ceil(RESULTS_PER_MESSAGE).max(1);
        i64::try_from(messages).unwrap_or(i64::MAX)
    }
}

impl fmt::Debug for RabbitOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitOptions")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("jobs_prefetch", &self.jobs_prefetch)
            .field("results_prefetch", &self.results_prefetch)
            .field("results_max", &self.results_max)
            .finish_non_exhaustive()
    }
}

/// The exchange and queue names of one installation.
#[derive(Debug, Clone)]
pub struct Names {
    /// The jobs queue.
    pub jobs: String,
    /// The results queue.
    pub results: String,
    /// The regional votes' queue (results with a region), with a single
    /// active consumer.
    pub votes: String,
    /// The events fanout exchange.
    pub events: String,
    /// The schedule-updates fanout exchange.
    pub schedule: String,
    /// The dead-letter exchange and queue (same name).
    pub dead: String,
    /// The heartbeats fanout exchange.
    pub heartbeats: String,
    prefix: String,
}

impl Names {
    /// The names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            jobs: format!("{prefix}.jobs"),
            results: format!("{prefix}.results"),
            votes: format!("{prefix}.votes"),
            events: format!("{prefix}.events"),
            schedule: format!("{prefix}.schedule"),
            dead: format!("{prefix}.dead"),
            heartbeats: format!("{prefix}.heartbeats"),
            prefix: prefix.to_owned(),
        }
    }

    /// The jobs queue of `region`'s workers.
    pub fn region_jobs(&self, region: &str) -> String {
        format!("{}.jobs.{region}", self.prefix)
    }
}

/// The state of the broker link, as consumers and publishers see it.
#[derive(Clone)]
enum Link {
    /// Not connected (yet, or again).
    Down,
    /// Connected, topology declared.
    Up(Arc<Session>),
    /// Shut down for good.
    Closed,
}

/// One live connection and its publisher channel.
struct Session {
    conn: Connection,
    publisher: tokio::sync::Mutex<Option<Publisher>>,
    blocked: Arc<AtomicBool>,
    /// Region jobs queues declared on this connection (see the module docs).
    regions_declared: Mutex<std::collections::HashSet<String>>,
}

/// Work a `Drop` cannot do itself (it cannot await): done by the keeper
/// task.
enum Cleanup {
    /// A consumer went away: stop its deliveries and return what it had
    /// buffered but not handed out.
    Cancel {
        channel: Channel,
        consumer_tag: String,
        requeue: Vec<u64>,
    },
    /// A delivery was dropped unacknowledged: give it back to the queue.
    Requeue { channel: Channel, tag: u64 },
}

/// The RabbitMQ bus of one process.
pub struct RabbitBus {
    args: OpenConnectionArguments,
    endpoint: String,
    names: Names,
    opts: RabbitOptions,
    link: watch::Sender<Link>,
    events: broadcast::Sender<EventText>,
    schedule: broadcast::Sender<ScheduleSignal>,
    beats: broadcast::Sender<Beat>,
    want_events: AtomicBool,
    want_schedule: AtomicBool,
    want_beats: AtomicBool,
    events_bound: AtomicBool,
    beats_bound: AtomicBool,
    /// How often the events subscription was bound, to number the
    /// [`Resync`](crate::bus::Resync) marks of the re-binds.
    events_binds: AtomicU64,
    schedule_bound: AtomicBool,
    wants_changed: Notify,
    cleanup_tx: mpsc::UnboundedSender<Cleanup>,
    cleanup_rx: Mutex<Option<mpsc::UnboundedReceiver<Cleanup>>>,
    results_out: ResultsOut,
    votes_out: ResultsOut,
}

impl RabbitBus {
    /// Checks the URL and builds the (not yet connected) bus; run its
    /// [`Keeper`](crate::bus::Keeper) to connect.
    pub fn new(opts: RabbitOptions) -> Result<Self, BusError> {
        let (mut args, endpoint) = connection_args(&opts.url, opts.heartbeat_s)?;
        let endpoint = match &opts.url_source {
            Some(source) => format!("{endpoint} (queue.url from {source})"),
            None => endpoint,
        };
        args.connection_name(&format!(
            "healthmon {} pid {}",
            opts.prefix,
            std::process::id()
        ));
        let (cleanup_tx, cleanup_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(opts.caps.events.max(1));
        let (schedule, _) = broadcast::channel(opts.caps.schedule.max(1));
        Ok(Self {
            args,
            endpoint,
            names: Names::new(&opts.prefix),
            opts,
            link: watch::Sender::new(Link::Down),
            events,
            schedule,
            beats: broadcast::channel(super::in_process::BEATS_RING).0,
            want_events: AtomicBool::new(false),
            want_schedule: AtomicBool::new(false),
            want_beats: AtomicBool::new(false),
            events_bound: AtomicBool::new(false),
            beats_bound: AtomicBool::new(false),
            events_binds: AtomicU64::new(0),
            schedule_bound: AtomicBool::new(false),
            wants_changed: Notify::new(),
            cleanup_tx,
            cleanup_rx: Mutex::new(Some(cleanup_rx)),
            results_out: ResultsOut::default(),
            votes_out: ResultsOut::default(),
        })
    }

    /// The exchange and queue names in use.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Connected, topology declared, and the broker is not blocking
    /// publishers (a resource alarm).
    pub fn is_ready(&self) -> bool {
        match &*self.link.borrow() {
            Link::Up(s) => s.conn.is_open() && !s.blocked.load(Ordering::Relaxed),
            Link::Down | Link::Closed => false,
        }
    }

    /// Ready, and every fanout this process subscribed to is bound.
    pub fn subscriptions_ready(&self) -> bool {
        self.is_ready()
            && (!self.want_events.load(Ordering::Relaxed)
                || self.events_bound.load(Ordering::Relaxed))
            && (!self.want_schedule.load(Ordering::Relaxed)
                || self.schedule_bound.load(Ordering::Relaxed))
            && (!self.want_beats.load(Ordering::Relaxed)
                || self.beats_bound.load(Ordering::Relaxed))
    }

    pub(in crate::bus) fn subscribe_beats(&self) -> broadcast::Receiver<Beat> {
        let rx = self.beats.subscribe();
        if !self.want_beats.swap(true, Ordering::SeqCst) {
            self.wants_changed.notify_one();
        }
        rx
    }

    pub(in crate::bus) fn subscribe_events(&self) -> broadcast::Receiver<EventText> {
        let rx = self.events.subscribe();
        if !self.want_events.swap(true, Ordering::SeqCst) {
            self.wants_changed.notify_one();
        }
        rx
    }

    pub(in crate::bus) fn subscribe_schedule(&self) -> broadcast::Receiver<ScheduleSignal> {
        let rx = self.schedule.subscribe();
        if !self.want_schedule.swap(true, Ordering::SeqCst) {
            self.wants_changed.notify_one();
        }
        rx
    }

    /// Waits until connected, or until `deadline`.
    async fn wait_up(&self, deadline: Option<Instant>) -> Result<Arc<Session>, BusError> {
        let mut rx = self.link.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                Link::Up(s) => return Ok(Arc::clone(s)),
                Link::Closed => return Err(BusError::Closed),
                Link::Down => {}
            }
            let changed = match deadline {
                Some(d) => tokio::time::timeout_at(d, rx.changed())
                    .await
                    .map_err(|_| BusError::Unavailable)?,
                None => rx.changed().await,
            };
            changed.map_err(|_| BusError::Closed)?;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[allow(
    clippy::expect_used,
    reason = "called only with fixed header names, far below AMQP's 255 bytes"
)]
fn name(s: &str) -> amqprs::FieldName {
    s.try_into().expect("a short header name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert!(!redact_url("amqp://u:secret@h/").contains("secret"));
        let opts = RabbitOptions::new(
            "amqp://u:secret@h/",
            "p",
            1,
            1,
            Capacities {
                jobs: 1,
                results: 1,
                events: 1,
                schedule: 1,
            },
        );
        assert!(!format!("{opts:?}").contains("secret"));
    }

    #[test]
    fn the_results_bound_counts_whole_messages() {
        let caps = Capacities {
            jobs: 1,
            results: 1,
            events: 1,
            schedule: 1,
        };
        let mut opts = RabbitOptions::new("amqp://h/", "p", 1, 1, caps);
        for (results, messages) in [(64, 1), (65, 2), (1_280, 20), (1_000_000, 15_625)] {
            opts.results_max = results;
            assert_eq!(opts.results_max_messages(), messages, "{results}");
        }
        opts.results_max = 0;
        assert_eq!(opts.results_max_messages(), 1);
    }
}
