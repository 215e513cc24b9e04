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
//! | `P.results` | durable quorum queue (default exchange) | results, one recorder each |
//! | `P.events` | durable fanout exchange | events; each subscribing process binds one exclusive, auto-delete, server-named queue |
//! | `P.schedule` | durable fanout exchange | schedule updates; same pattern |
//! | `P.dead` | durable fanout exchange + durable queue | poison jobs and results |
//!
//! Jobs and results are persistent, published with publisher confirms and
//! consumed with manual acks and a bounded prefetch. A message carries one
//! job or result as a JSON object, or several as a JSON array: the
//! scheduler's due jobs go up to [`JOBS_PER_MESSAGE`] to a message, and the
//! results a process publishes while the previous message awaits its confirm
//! go together, up to [`RESULTS_PER_MESSAGE`] (a message each cost the broker
//! about a core at 3,000 checks/s). Consumers hand the items out one by one;
//! the message is acked once every item is, and returned whole if any is
//! dropped unacked. A job message carries an `expiration` of what is left of
//! its longest-lived job's interval (at most the interval), so stale jobs die
//! on the bus instead of piling up after an outage; workers drop the stale
//! ones of a live message one by one. Events and schedule updates are the
//! serde JSON of [`Event`] and [`ScheduleUpdate`], as in-process.
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
//! a [`Delivery`] acks on the channel it came from. A delivery dropped
//! without an ack is nacked back to the queue; a dropped consumer cancels
//! and returns what it had buffered. The channel closes (returning anything
//! still unacknowledged) once the consumer and all its deliveries are gone.
//!
//! # Connection maintenance
//!
//! amqprs does not reconnect. [`Maintenance::run`], a supervised task of the
//! transport stage, owns the connection: `Connection::open` under a timeout,
//! a heartbeat of 10 s, connection and channel callbacks, and on every new
//! connection it declares the topology and re-binds the fanout subscriptions
//! (sending [`ScheduleUpdate::Resync`] to local schedule subscribers, which
//! may have missed updates). A lost connection is retried with capped
//! exponential backoff and jitter (100 ms doubling to 10 s). Queue consumers
//! re-create themselves on the new connection the next time they are polled.
//!
//! While disconnected, [`RabbitBus::is_ready`] is false (`/readyz` 503s),
//! publishing a job, result or schedule update waits up to `publish_timeout`
//! and then fails with [`BusError::Unavailable`], publishing an event fails at
//! once, and consumers simply wait.

use super::{Acker, BusError, Capacities, Delivery, EventText};
use crate::domain::event::ScheduleUpdate;
use crate::domain::time::now_ms;
use crate::domain::{CheckJob, CheckResult, Event};
use amqprs::callbacks::{ChannelCallback, ConnectionCallback};
use amqprs::channel::{
    BasicAckArguments, BasicCancelArguments, BasicConsumeArguments, BasicNackArguments,
    BasicPublishArguments, BasicQosArguments, Channel, ConfirmSelectArguments, ConsumerMessage,
    ExchangeDeclareArguments, ExchangeType, QueueBindArguments, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{
    Ack, BasicProperties, Cancel, Close, CloseChannel, DELIVERY_MODE_PERSISTENT, FieldTable,
    FieldValue, Nack, Return,
};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long declaring the topology and opening channels may take on a new
/// connection before it counts as failed.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the connection's state is polled besides its close signal.
const LIVENESS_POLL: Duration = Duration::from_millis(250);
/// Most messages `P.dead` keeps.
const DEAD_MAX_LENGTH: i64 = 100_000;

/// Most jobs in one message. The prefetch counts messages, so a worker
/// process may hold up to `jobs_prefetch` times this many jobs (a few MB),
/// while a message per job cost the broker about a core at 3,000 checks/s.
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
    /// First reconnect delay (doubles up to `max_backoff`, with jitter).
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
}

impl RabbitOptions {
    /// Options with the usual timings: 5 s connect and publish timeouts,
    /// 10 s heartbeat, 5 deliveries, backoff 100 ms to 10 s.
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
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for RabbitOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitOptions")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("jobs_prefetch", &self.jobs_prefetch)
            .field("results_prefetch", &self.results_prefetch)
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
    /// The events fanout exchange.
    pub events: String,
    /// The schedule-updates fanout exchange.
    pub schedule: String,
    /// The dead-letter exchange and queue (same name).
    pub dead: String,
}

impl Names {
    /// The names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            jobs: format!("{prefix}.jobs"),
            results: format!("{prefix}.results"),
            events: format!("{prefix}.events"),
            schedule: format!("{prefix}.schedule"),
            dead: format!("{prefix}.dead"),
        }
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
}

type Pending = Arc<Mutex<BTreeMap<u64, oneshot::Sender<bool>>>>;

/// A channel in confirm mode and the confirms it is waiting for.
struct Publisher {
    channel: Channel,
    next_tag: u64,
    pending: Pending,
}

/// Work a `Drop` cannot do itself (it cannot await): done by the
/// maintenance task.
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
    schedule: broadcast::Sender<ScheduleUpdate>,
    want_events: AtomicBool,
    want_schedule: AtomicBool,
    events_bound: AtomicBool,
    schedule_bound: AtomicBool,
    wants_changed: Notify,
    cleanup_tx: mpsc::UnboundedSender<Cleanup>,
    cleanup_rx: Mutex<Option<mpsc::UnboundedReceiver<Cleanup>>>,
    results_out: ResultsOut,
}

/// An encoded result and who waits for its confirm.
type QueuedResult = (Vec<u8>, oneshot::Sender<Result<(), BusError>>);

/// Results waiting to share the next message (see
/// [`RabbitBus::publish_result`]).
#[derive(Default)]
struct ResultsOut {
    /// Encoded results and who waits for each one's confirm.
    queued: Mutex<std::collections::VecDeque<QueuedResult>>,
    /// Held while a message of results is sent and confirmed.
    sending: tokio::sync::Mutex<()>,
}

impl RabbitBus {
    /// Checks the URL and builds the (not yet connected) bus; run
    /// [`Maintenance::run`] to connect.
    pub fn new(opts: RabbitOptions) -> Result<Self, BusError> {
        let (mut args, endpoint) = connection_args(&opts.url, opts.heartbeat_s)?;
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
            want_events: AtomicBool::new(false),
            want_schedule: AtomicBool::new(false),
            events_bound: AtomicBool::new(false),
            schedule_bound: AtomicBool::new(false),
            wants_changed: Notify::new(),
            cleanup_tx,
            cleanup_rx: Mutex::new(Some(cleanup_rx)),
            results_out: ResultsOut::default(),
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
    }

    pub(super) async fn publish_job(&self, job: CheckJob) -> Result<(), BusError> {
        self.publish_job_batch(std::slice::from_ref(&job)).await
    }

    /// Publishes jobs [`JOBS_PER_MESSAGE`] to a message, a bounded number of
    /// messages awaiting their confirms at once.
    pub(super) async fn publish_jobs(&self, jobs: Vec<CheckJob>) -> Result<(), BusError> {
        const MESSAGES_AT_ONCE: usize = 64;
        let mut messages = jobs.chunks(JOBS_PER_MESSAGE).peekable();
        while messages.peek().is_some() {
            let wave = messages
                .by_ref()
                .take(MESSAGES_AT_ONCE)
                .map(|batch| self.publish_job_batch(batch));
            for sent in futures_util::future::join_all(wave).await {
                sent?;
            }
        }
        Ok(())
    }

    /// One message: a single job as a JSON object, several as an array.
    async fn publish_job_batch(&self, jobs: &[CheckJob]) -> Result<(), BusError> {
        let (body, first) = match jobs {
            [] => return Ok(()),
            [job] => (serde_json::to_vec(job)?, job),
            [first, ..] => (serde_json::to_vec(jobs)?, first),
        };
        let now = now_ms();
        // What is left of the longest-lived job's life: the message must not
        // take a job with it before its time. Jobs that go stale on the way
        // are dropped one by one by the worker.
        let ttl = jobs
            .iter()
            .map(|job| (job.scheduled_at + job.interval_ms - now).clamp(1, job.interval_ms.max(1)))
            .max()
            .unwrap_or(1);
        let props = BasicProperties::default()
            .with_content_type("application/json")
            .with_delivery_mode(DELIVERY_MODE_PERSISTENT)
            .with_expiration(&ttl.to_string())
            .with_message_id(&format!("{}:{}", first.service_id, first.scheduled_at))
            .with_app_id("healthmon")
            .finish();
        self.publish_confirmed("", &self.names.jobs, props, body)
            .await
    }

    /// Publishes a result once the broker confirms it. Results published at
    /// once by this process share a message (up to [`RESULTS_PER_MESSAGE`]):
    /// while one message waits for its confirm, the results that arrive
    /// queue up and the next caller sends them all. Under load that is many
    /// results per message; alone, a result goes at once.
    pub(super) async fn publish_result(&self, result: CheckResult) -> Result<(), BusError> {
        let body = serde_json::to_vec(&result)?;
        let (tx, mut rx) = oneshot::channel();
        {
            let mut queued = lock(&self.results_out.queued);
            if queued.len() >= RESULTS_QUEUED_MAX {
                // Only reached with a worker concurrency above the cap
                // while the broker is slow or away.
                return Err(BusError::Unavailable);
            }
            queued.push_back((body, tx));
        }
        loop {
            let sending = tokio::select! {
                biased;
                done = &mut rx => return done.unwrap_or(Err(BusError::Closed)),
                guard = self.results_out.sending.lock() => guard,
            };
            if let Ok(done) = rx.try_recv() {
                return done;
            }
            let batch: Vec<_> = {
                let mut queued = lock(&self.results_out.queued);
                let n = queued.len().min(RESULTS_PER_MESSAGE);
                queued.drain(..n).collect()
            };
            if batch.is_empty() {
                continue;
            }
            let mut body =
                Vec::with_capacity(batch.iter().map(|(b, _)| b.len() + 1).sum::<usize>() + 1);
            body.push(b'[');
            for (i, (one, _)) in batch.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(one);
            }
            body.push(b']');
            let props = BasicProperties::default()
                .with_content_type("application/json")
                .with_delivery_mode(DELIVERY_MODE_PERSISTENT)
                .with_app_id("healthmon")
                .finish();
            let sent = self
                .publish_confirmed("", &self.names.results, props, body)
                .await;
            // A failed send fails what is queued behind it too: it would
            // only wait its turn to fail the same way, 64 results per
            // publish timeout, holding its worker's slot meanwhile.
            let failed_too: Vec<QueuedResult> = match sent {
                Ok(()) => Vec::new(),
                Err(_) => lock(&self.results_out.queued).drain(..).collect(),
            };
            drop(sending);
            for (_, waiter) in batch.into_iter().chain(failed_too) {
                let _ = waiter.send(match &sent {
                    Ok(()) => Ok(()),
                    Err(BusError::Closed) => Err(BusError::Closed),
                    Err(_) => Err(BusError::Unavailable),
                });
            }
        }
    }

    pub(super) fn consume_jobs(self: &Arc<Self>) -> QueueConsumer<CheckJob> {
        QueueConsumer::new(
            Arc::clone(self),
            self.names.jobs.clone(),
            self.opts.jobs_prefetch,
            decode::<CheckJob>,
        )
    }

    pub(super) fn consume_results(self: &Arc<Self>) -> QueueConsumer<CheckResult> {
        QueueConsumer::new(
            Arc::clone(self),
            self.names.results.clone(),
            self.opts.results_prefetch,
            decode::<CheckResult>,
        )
    }

    /// Publishes events, in one message, one per line (JSON text never
    /// holds a raw newline), without waiting for the broker: fails at once
    /// when disconnected.
    pub(super) async fn publish_events(&self, texts: &[EventText]) -> Result<(), BusError> {
        if texts.is_empty() {
            return Ok(());
        }
        let session = match &*self.link.borrow() {
            Link::Up(s) => Arc::clone(s),
            Link::Down => return Err(BusError::Unavailable),
            Link::Closed => return Err(BusError::Closed),
        };
        let props = BasicProperties::default()
            .with_content_type("application/json")
            .finish();
        let sent = tokio::time::timeout(
            self.opts.publish_timeout,
            session.send(
                &self.names.events,
                "",
                props,
                texts.join("\n").into_bytes(),
                false,
            ),
        )
        .await;
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(BusError::Unavailable),
        }
    }

    pub(super) fn subscribe_events(&self) -> broadcast::Receiver<EventText> {
        let rx = self.events.subscribe();
        if !self.want_events.swap(true, Ordering::SeqCst) {
            self.wants_changed.notify_one();
        }
        rx
    }

    pub(super) async fn publish_schedule(&self, update: ScheduleUpdate) -> Result<(), BusError> {
        let body = serde_json::to_vec(&update)?;
        let props = BasicProperties::default()
            .with_content_type("application/json")
            .finish();
        self.publish_confirmed(&self.names.schedule, "", props, body)
            .await
    }

    pub(super) fn subscribe_schedule(&self) -> broadcast::Receiver<ScheduleUpdate> {
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

    /// Publishes and waits for the broker's confirm, sending again on a new
    /// connection if the old one dies first; gives up at `publish_timeout`.
    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        props: BasicProperties,
        body: Vec<u8>,
    ) -> Result<(), BusError> {
        let deadline = Instant::now() + self.opts.publish_timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let session = self.wait_up(Some(deadline)).await?;
            let sent = tokio::time::timeout_at(
                deadline,
                session.send(exchange, routing_key, props.clone(), body.clone(), true),
            )
            .await
            .map_err(|_| BusError::Unavailable)?;
            let retry = match sent {
                Ok(Some(confirm)) => match tokio::time::timeout_at(deadline, confirm).await {
                    Ok(Ok(true)) => return Ok(()),
                    Ok(Ok(false)) => "the broker refused the message (nack)".to_owned(),
                    Ok(Err(_)) => "the channel closed before the confirm".to_owned(),
                    Err(_) => return Err(BusError::Unavailable),
                },
                Ok(None) => return Ok(()),
                Err(e) => e.to_string(),
            };
            tracing::debug!(exchange, routing_key, reason = %retry, "publishing again");
            // Give the maintenance task a moment to notice a dead connection.
            tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Connects, declares the topology and opens the publisher and fanout
    /// channels.
    async fn connect(&self) -> Result<(Arc<Session>, Fanouts), String> {
        let conn =
            match tokio::time::timeout(self.opts.connect_timeout, Connection::open(&self.args))
                .await
            {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => {
                    return Err(format!("no answer within {:?}", self.opts.connect_timeout));
                }
            };
        let blocked = Arc::new(AtomicBool::new(false));
        let setup = async {
            conn.register_callback(ConnEvents {
                blocked: Arc::clone(&blocked),
            })
            .await?;
            let control = conn.open_channel(None).await?;
            control
                .register_callback(ChanEvents::plain("topology"))
                .await?;
            self.declare(&control).await?;
            let _ = control.close().await;
            let publisher = Publisher::open(&conn).await?;
            let mut fanouts = Fanouts::default();
            self.bind_wanted(&conn, &mut fanouts).await?;
            Ok::<_, amqprs::error::Error>((publisher, fanouts))
        };
        match tokio::time::timeout(SETUP_TIMEOUT, setup).await {
            Ok(Ok((publisher, fanouts))) => Ok((
                Arc::new(Session {
                    conn,
                    publisher: tokio::sync::Mutex::new(Some(publisher)),
                    blocked,
                }),
                fanouts,
            )),
            failed => {
                let why = match failed {
                    Ok(Err(e)) => format!("setting up the topology failed: {e}"),
                    _ => format!("setting up the topology took over {SETUP_TIMEOUT:?}"),
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.close()).await;
                Err(why)
            }
        }
    }

    async fn declare(&self, ch: &Channel) -> Result<(), amqprs::error::Error> {
        let n = &self.names;
        for exchange in [&n.events, &n.schedule, &n.dead] {
            ch.exchange_declare(
                ExchangeDeclareArguments::of_type(exchange, ExchangeType::Fanout)
                    .durable(true)
                    .finish(),
            )
            .await?;
        }
        let limit = i64::from(self.opts.max_deliveries.max(1)) * 2;
        for queue in [&n.jobs, &n.results] {
            let mut args = FieldTable::new();
            args.insert(name("x-queue-type"), FieldValue::from("quorum"));
            args.insert(name("x-delivery-limit"), FieldValue::l(limit));
            ch.queue_declare(
                QueueDeclareArguments::durable_client_named(queue)
                    .arguments(args)
                    .finish(),
            )
            .await?;
        }
        let mut args = FieldTable::new();
        args.insert(name("x-max-length"), FieldValue::l(DEAD_MAX_LENGTH));
        ch.queue_declare(
            QueueDeclareArguments::durable_client_named(&n.dead)
                .arguments(args)
                .finish(),
        )
        .await?;
        ch.queue_bind(QueueBindArguments::new(&n.dead, &n.dead, ""))
            .await?;
        Ok(())
    }

    /// Binds a queue for every fanout wanted and not bound yet.
    async fn bind_wanted(
        &self,
        conn: &Connection,
        fanouts: &mut Fanouts,
    ) -> Result<(), amqprs::error::Error> {
        let want_events = self.want_events.load(Ordering::SeqCst) && fanouts.events.is_none();
        let want_schedule = self.want_schedule.load(Ordering::SeqCst) && fanouts.schedule.is_none();
        if !want_events && !want_schedule {
            return Ok(());
        }
        if fanouts.channel.as_ref().is_none_or(|c| !c.is_open()) {
            let ch = conn.open_channel(None).await?;
            ch.register_callback(ChanEvents::plain("fanout")).await?;
            fanouts.channel = Some(ch);
        }
        let Some(ch) = fanouts.channel.as_ref() else {
            return Ok(());
        };
        if want_events {
            fanouts.events = Some(subscribe_fanout(ch, &self.names.events).await?);
        }
        if want_schedule {
            fanouts.schedule = Some(subscribe_fanout(ch, &self.names.schedule).await?);
        }
        Ok(())
    }

    /// Keeps a connection up until `token` is cancelled.
    async fn maintain(self: Arc<Self>, token: CancellationToken) -> Result<(), BusError> {
        let Some(cleanup) = self.cleanup_rx.lock().ok().and_then(|mut s| s.take()) else {
            return Err(BusError::Busy("bus maintenance"));
        };
        let mut guard = MaintenanceGuard {
            bus: Arc::clone(&self),
            cleanup: Some(cleanup),
        };
        let mut backoff = self.opts.min_backoff;
        let mut failures = 0u32;
        let mut down_since = Instant::now();
        let mut ever_up = false;
        loop {
            let attempt = tokio::select! {
                () = token.cancelled() => break,
                a = self.connect() => a,
            };
            let (session, fanouts) = match attempt {
                Ok(ok) => ok,
                Err(e) => {
                    failures += 1;
                    let wait = jitter(backoff);
                    tracing::warn!(broker = %self.endpoint, error = %e, failures,
                        retry_in_ms = wait.as_millis() as u64, "cannot connect to RabbitMQ");
                    tokio::select! {
                        () = token.cancelled() => break,
                        () = tokio::time::sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(self.opts.max_backoff);
                    continue;
                }
            };
            backoff = self.opts.min_backoff;
            failures = 0;
            if ever_up {
                tracing::info!(broker = %self.endpoint,
                    down_ms = down_since.elapsed().as_millis() as u64, "reconnected to RabbitMQ");
            } else {
                tracing::info!(broker = %self.endpoint, prefix = %self.opts.prefix,
                    "connected to RabbitMQ");
            }
            ever_up = true;
            let cleanup = guard.cleanup.as_mut().expect("held while running");
            let end = self.serve(&session, fanouts, cleanup, &token).await;
            self.events_bound.store(false, Ordering::SeqCst);
            self.schedule_bound.store(false, Ordering::SeqCst);
            down_since = Instant::now();
            match end {
                Ok(()) => {
                    self.link.send_replace(Link::Closed);
                    if let Ok(mut p) = session.publisher.try_lock() {
                        p.take();
                    }
                    let close = session.conn.clone().close();
                    let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
                    tracing::info!("RabbitMQ connection closed");
                    return Ok(());
                }
                Err(why) => {
                    self.link.send_replace(Link::Down);
                    if let Ok(mut p) = session.publisher.try_lock() {
                        p.take();
                    }
                    tracing::warn!(broker = %self.endpoint, reason = %why,
                        "lost the RabbitMQ connection; reconnecting");
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), session.conn.clone().close())
                            .await;
                }
            }
        }
        self.link.send_replace(Link::Closed);
        Ok(())
    }

    /// Runs one connection: forwards fanout messages, binds new
    /// subscriptions, does cleanups, and returns `Err` when the connection
    /// is lost or `Ok` when `token` is cancelled.
    async fn serve(
        &self,
        session: &Arc<Session>,
        mut fanouts: Fanouts,
        cleanup: &mut mpsc::UnboundedReceiver<Cleanup>,
        token: &CancellationToken,
    ) -> Result<(), String> {
        let conn = &session.conn;
        let failure = conn.listen_network_io_failure();
        tokio::pin!(failure);
        let mut poll = tokio::time::interval(LIVENESS_POLL);
        self.mark_bound(&fanouts);
        self.link.send_replace(Link::Up(Arc::clone(session)));
        loop {
            tokio::select! {
                biased;
                () = token.cancelled() => return Ok(()),
                io = &mut failure => {
                    return Err(if io { "network failure" } else { "closed by the broker" }.into());
                }
                _ = poll.tick() => {
                    if !conn.is_open() {
                        return Err("the connection closed".into());
                    }
                }
                () = self.wants_changed.notified() => {
                    let bound = tokio::time::timeout(
                        SETUP_TIMEOUT,
                        self.bind_wanted(conn, &mut fanouts),
                    ).await;
                    match bound {
                        Ok(Ok(())) => self.mark_bound(&fanouts),
                        Ok(Err(e)) => return Err(format!("cannot subscribe: {e}")),
                        Err(_) => return Err("subscribing took too long".into()),
                    }
                }
                msg = recv_opt(&mut fanouts.events) => match msg {
                    Some(m) => self.forward_event(m),
                    None => return Err("the events subscription ended".into()),
                },
                msg = recv_opt(&mut fanouts.schedule) => match msg {
                    Some(m) => self.forward_schedule(m),
                    None => return Err("the schedule subscription ended".into()),
                },
                Some(job) = cleanup.recv() => do_cleanup(job).await,
            }
        }
    }

    /// Records which fanouts are bound; a (re)bound schedule subscription
    /// may have missed updates, so local subscribers are told to resync.
    fn mark_bound(&self, fanouts: &Fanouts) {
        if fanouts.events.is_some() {
            self.events_bound.store(true, Ordering::SeqCst);
        }
        if fanouts.schedule.is_some() && !self.schedule_bound.swap(true, Ordering::SeqCst) {
            let _ = self.schedule.send(ScheduleUpdate::Resync);
        }
    }

    /// Passes on each line of an events message (see `publish_events`).
    fn forward_event(&self, msg: ConsumerMessage) {
        let Some(body) = msg.content else { return };
        let Ok(body) = std::str::from_utf8(&body) else {
            tracing::warn!("dropping an events message that is not text");
            return;
        };
        for text in body.lines() {
            if serde_json::from_str::<Event>(text).is_ok() {
                // An error only means nobody is listening right now.
                let _ = self.events.send(text.into());
            } else {
                tracing::warn!("dropping an event that is not an event");
            }
        }
    }

    fn forward_schedule(&self, msg: ConsumerMessage) {
        let Some(body) = msg.content else { return };
        match serde_json::from_slice::<ScheduleUpdate>(&body) {
            Ok(update) => {
                let _ = self.schedule.send(update);
            }
            Err(e) => tracing::warn!(error = %e, "dropping an undecodable schedule update"),
        }
    }

    /// Moves a poison message to `P.dead`, then acks it; if that fails it
    /// goes back to its queue.
    async fn dead_letter(&self, channel: &Channel, queue: &str, poison: Box<Poison>) {
        let mut headers = poison.props.headers().cloned().unwrap_or_default();
        headers.insert(
            name("x-healthmon-reason"),
            FieldValue::from(poison.reason.as_str()),
        );
        headers.insert(name("x-healthmon-queue"), FieldValue::from(queue));
        headers.insert(
            name("x-healthmon-deliveries"),
            FieldValue::l(i64::from(poison.deliveries)),
        );
        let mut props = poison.props.clone();
        props
            .with_headers(headers)
            .with_delivery_mode(DELIVERY_MODE_PERSISTENT);
        // A dead letter must not expire.
        let props = strip_expiration(props);
        match self
            .publish_confirmed(&self.names.dead, "", props, poison.body)
            .await
        {
            Ok(()) => {
                tracing::warn!(queue, reason = %poison.reason, "moved a poison message to {}", self.names.dead);
                if channel.is_open() {
                    let _ = channel
                        .basic_ack(BasicAckArguments::new(poison.tag, false))
                        .await;
                }
            }
            Err(e) => {
                tracing::warn!(queue, error = %e, "cannot move a poison message; returning it");
                if channel.is_open() {
                    let _ = channel
                        .basic_nack(BasicNackArguments::new(poison.tag, false, true))
                        .await;
                }
            }
        }
    }
}

/// Returns the cleanup receiver when the maintenance task ends, however it
/// ends, so a restarted task can take it again.
struct MaintenanceGuard {
    bus: Arc<RabbitBus>,
    cleanup: Option<mpsc::UnboundedReceiver<Cleanup>>,
}

impl Drop for MaintenanceGuard {
    fn drop(&mut self) {
        self.bus.events_bound.store(false, Ordering::SeqCst);
        self.bus.schedule_bound.store(false, Ordering::SeqCst);
        self.bus.link.send_if_modified(|l| {
            if matches!(l, Link::Up(_)) {
                *l = Link::Down;
                true
            } else {
                false
            }
        });
        if let (Some(rx), Ok(mut slot)) = (self.cleanup.take(), self.bus.cleanup_rx.lock()) {
            *slot = Some(rx);
        }
    }
}

/// The connection-maintenance task of a RabbitMQ bus (see the module docs).
#[derive(Clone)]
pub struct Maintenance(pub(super) Arc<RabbitBus>);

impl Maintenance {
    /// Connects and keeps reconnecting until `token` is cancelled, then
    /// closes the connection. Only one may run at a time per bus.
    pub fn run(
        &self,
        token: CancellationToken,
    ) -> impl Future<Output = Result<(), BusError>> + Send + use<> {
        Arc::clone(&self.0).maintain(token)
    }
}

impl Session {
    /// Sends one message on the publisher channel (opening one if needed);
    /// with `confirm`, returns the receiver of its confirm.
    async fn send(
        &self,
        exchange: &str,
        routing_key: &str,
        props: BasicProperties,
        body: Vec<u8>,
        confirm: bool,
    ) -> Result<Option<oneshot::Receiver<bool>>, amqprs::error::Error> {
        let mut guard = self.publisher.lock().await;
        if guard.as_ref().is_none_or(|p| !p.channel.is_open()) {
            *guard = Some(Publisher::open(&self.conn).await?);
        }
        let Some(p) = guard.as_mut() else {
            unreachable!("opened above")
        };
        let tag = p.next_tag;
        let rx = confirm.then(|| {
            let (tx, rx) = oneshot::channel();
            lock(&p.pending).insert(tag, tx);
            rx
        });
        let args = BasicPublishArguments::new(exchange, routing_key);
        if let Err(e) = p.channel.basic_publish(props, body, args).await {
            lock(&p.pending).remove(&tag);
            *guard = None;
            return Err(e);
        }
        p.next_tag += 1;
        Ok(rx)
    }
}

impl Publisher {
    async fn open(conn: &Connection) -> Result<Self, amqprs::error::Error> {
        let channel = conn.open_channel(None).await?;
        let pending: Pending = Arc::default();
        channel
            .register_callback(ChanEvents {
                role: "publisher",
                pending: Some(Arc::clone(&pending)),
            })
            .await?;
        channel
            .confirm_select(ConfirmSelectArguments::default())
            .await?;
        Ok(Self {
            channel,
            next_tag: 1,
            pending,
        })
    }
}

/// The fanout subscriptions of one connection.
#[derive(Default)]
struct Fanouts {
    channel: Option<Channel>,
    events: Option<mpsc::UnboundedReceiver<ConsumerMessage>>,
    schedule: Option<mpsc::UnboundedReceiver<ConsumerMessage>>,
}

/// Declares this process's exclusive queue on a fanout exchange and
/// consumes it (auto-ack: fan-outs are best effort, like in-process).
async fn subscribe_fanout(
    ch: &Channel,
    exchange: &str,
) -> Result<mpsc::UnboundedReceiver<ConsumerMessage>, amqprs::error::Error> {
    let declared = ch
        .queue_declare(
            QueueDeclareArguments::exclusive_server_named()
                .auto_delete(true)
                .finish(),
        )
        .await?;
    let Some((queue, _, _)) = declared else {
        return Err(amqprs::error::Error::ChannelUseError(
            "no queue name from the broker".into(),
        ));
    };
    ch.queue_bind(QueueBindArguments::new(&queue, exchange, ""))
        .await?;
    let (_, rx) = ch
        .basic_consume_rx(
            BasicConsumeArguments::new(&queue, "")
                .manual_ack(false)
                .exclusive(true)
                .finish(),
        )
        .await?;
    Ok(rx)
}

async fn recv_opt<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn do_cleanup(job: Cleanup) {
    let budget = Duration::from_secs(1);
    match job {
        Cleanup::Cancel {
            channel,
            consumer_tag,
            requeue,
        } => {
            if !channel.is_open() {
                return;
            }
            let _ = tokio::time::timeout(
                budget,
                channel.basic_cancel(BasicCancelArguments::new(&consumer_tag)),
            )
            .await;
            for tag in requeue {
                if !channel.is_open() {
                    return;
                }
                let _ = channel
                    .basic_nack(BasicNackArguments::new(tag, false, true))
                    .await;
            }
        }
        Cleanup::Requeue { channel, tag } => {
            if channel.is_open() {
                let _ = channel
                    .basic_nack(BasicNackArguments::new(tag, false, true))
                    .await;
            }
        }
    }
}

/// The receiving end of the jobs or results queue in this process. It
/// (re)creates its broker consumer, on its own channel, when polled.
pub struct QueueConsumer<T> {
    bus: Arc<RabbitBus>,
    queue: String,
    prefetch: u16,
    decode: fn(&[u8]) -> serde_json::Result<Vec<T>>,
    live: Option<Live>,
    /// The rest of the last message's items, handed out before the next
    /// message is taken.
    parts: std::collections::VecDeque<Delivery<T>>,
    /// A poison message met by `try_next`, which cannot await to move it.
    stash: Option<(Channel, Box<Poison>)>,
}

struct Live {
    channel: Channel,
    consumer_tag: String,
    rx: mpsc::UnboundedReceiver<ConsumerMessage>,
}

struct Poison {
    tag: u64,
    props: BasicProperties,
    body: Vec<u8>,
    reason: String,
    deliveries: u32,
}

enum Classified<T> {
    Good(std::collections::VecDeque<Delivery<T>>),
    Poison(Box<Poison>),
    Empty,
}

impl<T> QueueConsumer<T> {
    fn new(
        bus: Arc<RabbitBus>,
        queue: String,
        prefetch: u16,
        decode: fn(&[u8]) -> serde_json::Result<Vec<T>>,
    ) -> Self {
        Self {
            bus,
            queue,
            prefetch,
            decode,
            live: None,
            parts: std::collections::VecDeque::new(),
            stash: None,
        }
    }

    /// The next message; waits through reconnects. `None` once the bus has
    /// shut down.
    pub async fn next(&mut self) -> Option<Delivery<T>> {
        loop {
            if let Some(part) = self.parts.pop_front() {
                return Some(part);
            }
            if let Some((channel, poison)) = self.stash.take() {
                self.bus.dead_letter(&channel, &self.queue, poison).await;
                continue;
            }
            if self.live.as_ref().is_none_or(|l| !l.channel.is_open()) {
                self.live = None;
                let session = self.bus.wait_up(None).await.ok()?;
                match tokio::time::timeout(SETUP_TIMEOUT, self.start(&session)).await {
                    Ok(Ok(live)) => self.live = Some(live),
                    failed => {
                        let error = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out".into(),
                        };
                        tracing::warn!(queue = %self.queue, %error, "cannot start consuming; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let Some(live) = self.live.as_mut() else {
                continue;
            };
            let Some(msg) = live.rx.recv().await else {
                // The channel closed: the messages it held go back to the
                // queue and come again on a new one.
                self.live = None;
                continue;
            };
            let channel = live.channel.clone();
            match self.classify(msg, &channel) {
                Classified::Good(parts) => self.parts = parts,
                Classified::Poison(p) => self.bus.dead_letter(&channel, &self.queue, p).await,
                Classified::Empty => {}
            }
        }
    }

    /// A message already received, without waiting.
    pub fn try_next(&mut self) -> Option<Delivery<T>> {
        loop {
            if let Some(part) = self.parts.pop_front() {
                return Some(part);
            }
            if self.stash.is_some() {
                return None;
            }
            let live = self.live.as_mut()?;
            let msg = live.rx.try_recv().ok()?;
            let channel = live.channel.clone();
            match self.classify(msg, &channel) {
                Classified::Good(parts) => self.parts = parts,
                Classified::Poison(p) => {
                    self.stash = Some((channel, p));
                    return None;
                }
                Classified::Empty => {}
            }
        }
    }

    async fn start(&self, session: &Session) -> Result<Live, amqprs::error::Error> {
        let channel = session.conn.open_channel(None).await?;
        channel
            .register_callback(ChanEvents::plain("consumer"))
            .await?;
        channel
            .basic_qos(BasicQosArguments::new(0, self.prefetch, false))
            .await?;
        let (consumer_tag, rx) = channel
            .basic_consume_rx(
                BasicConsumeArguments::new(&self.queue, "")
                    .manual_ack(true)
                    .finish(),
            )
            .await?;
        tracing::debug!(queue = %self.queue, prefetch = self.prefetch, "consuming");
        Ok(Live {
            channel,
            consumer_tag,
            rx,
        })
    }

    fn classify(&self, msg: ConsumerMessage, channel: &Channel) -> Classified<T> {
        let (Some(deliver), Some(body)) = (msg.deliver, msg.content) else {
            return Classified::Empty;
        };
        let tag = deliver.delivery_tag();
        let props = msg.basic_properties.unwrap_or_default();
        // Quorum queues count earlier deliveries that came back.
        let before = delivery_count(&props);
        let poison = |reason: String, body: Vec<u8>| {
            Classified::Poison(Box::new(Poison {
                tag,
                props: props.clone(),
                body,
                reason,
                deliveries: before.saturating_add(1),
            }))
        };
        match (self.decode)(&body) {
            Err(e) => poison(format!("undecodable: {e}"), body),
            Ok(items) if items.is_empty() => poison("an empty batch".into(), body),
            Ok(_) if before >= self.bus.opts.max_deliveries => {
                poison(format!("delivered more than {} times", before), body)
            }
            Ok(items) => {
                let settle = Arc::new(Settle {
                    channel: channel.clone(),
                    tag,
                    cleanup: self.bus.cleanup_tx.clone(),
                    parts_left: AtomicUsize::new(items.len()),
                    failed: AtomicBool::new(false),
                });
                Classified::Good(
                    items
                        .into_iter()
                        .map(|msg| Delivery {
                            msg,
                            acker: Acker::Amqp(AmqpAcker {
                                settle: Some(Arc::clone(&settle)),
                            }),
                        })
                        .collect(),
                )
            }
        }
    }
}

impl<T> Drop for QueueConsumer<T> {
    fn drop(&mut self) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        let mut requeue = Vec::new();
        while let Ok(msg) = live.rx.try_recv() {
            if let Some(d) = msg.deliver {
                requeue.push(d.delivery_tag());
            }
        }
        if let Some((_, poison)) = self.stash.take() {
            requeue.push(poison.tag);
        }
        let _ = self.bus.cleanup_tx.send(Cleanup::Cancel {
            channel: live.channel,
            consumer_tag: live.consumer_tag,
            requeue,
        });
    }
}

/// Settles one item of a delivery. A message of several items is acked on
/// the channel it came from once every item is acked; if any item is
/// dropped unacked, the whole message goes back to the queue once the last
/// item is settled (its other items come again: jobs are run again, results
/// recorded again, which the store ignores).
pub struct AmqpAcker {
    settle: Option<Arc<Settle>>,
}

/// One broker message and how many of its items are still unsettled.
struct Settle {
    channel: Channel,
    tag: u64,
    cleanup: mpsc::UnboundedSender<Cleanup>,
    parts_left: AtomicUsize,
    failed: AtomicBool,
}

impl Settle {
    /// Settles one item; true for the last one.
    fn last(&self) -> bool {
        self.parts_left.fetch_sub(1, Ordering::AcqRel) == 1
    }

    fn requeue(&self) {
        if self.channel.is_open() {
            let _ = self.cleanup.send(Cleanup::Requeue {
                channel: self.channel.clone(),
                tag: self.tag,
            });
        }
    }
}

impl AmqpAcker {
    pub(super) async fn ack(mut self) -> Result<(), BusError> {
        let Some(settle) = self.settle.take() else {
            return Err(BusError::Closed);
        };
        if !settle.last() {
            return Ok(());
        }
        if settle.failed.load(Ordering::Acquire) {
            settle.requeue();
            return Ok(());
        }
        // Acking on a closed channel would be a connection error; its
        // messages are back in the queue anyway.
        if !settle.channel.is_open() {
            return Err(BusError::Closed);
        }
        settle
            .channel
            .basic_ack(BasicAckArguments::new(settle.tag, false))
            .await
            .map_err(|_| BusError::Closed)
    }
}

impl Drop for AmqpAcker {
    fn drop(&mut self) {
        if let Some(settle) = self.settle.take() {
            settle.failed.store(true, Ordering::Release);
            if settle.last() {
                settle.requeue();
            }
        }
    }
}

impl fmt::Debug for AmqpAcker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpAcker")
            .field("tag", &self.settle.as_ref().map(|s| s.tag))
            .field("settled", &self.settle.is_none())
            .finish()
    }
}

struct ConnEvents {
    blocked: Arc<AtomicBool>,
}

#[async_trait]
impl ConnectionCallback for ConnEvents {
    async fn close(&mut self, _: &Connection, close: Close) -> Result<(), amqprs::error::Error> {
        tracing::warn!(code = close.reply_code(), reason = %close.reply_text(),
            "RabbitMQ closed the connection");
        Ok(())
    }

    async fn blocked(&mut self, _: &Connection, reason: String) {
        tracing::warn!(%reason, "RabbitMQ blocks publishers");
        self.blocked.store(true, Ordering::Relaxed);
    }

    async fn unblocked(&mut self, _: &Connection) {
        tracing::info!("RabbitMQ unblocked publishers");
        self.blocked.store(false, Ordering::Relaxed);
    }

    async fn secret_updated(&mut self, _: &Connection) {}
}

/// Channel callbacks: logs closes and cancels, and settles confirms on the
/// publisher channel. Dropped when the channel's dispatcher ends, which
/// fails every confirm still awaited so its publisher sends again.
struct ChanEvents {
    role: &'static str,
    pending: Option<Pending>,
}

impl ChanEvents {
    fn plain(role: &'static str) -> Self {
        Self {
            role,
            pending: None,
        }
    }

    fn settle(&self, tag: u64, multiple: bool, ok: bool) {
        let Some(pending) = &self.pending else { return };
        let settled = {
            let mut map = lock(pending);
            if multiple {
                let rest = map.split_off(&(tag + 1));
                std::mem::replace(&mut *map, rest)
            } else {
                map.remove(&tag)
                    .map(|tx| BTreeMap::from([(tag, tx)]))
                    .unwrap_or_default()
            }
        };
        for tx in settled.into_values() {
            let _ = tx.send(ok);
        }
    }
}

#[async_trait]
impl ChannelCallback for ChanEvents {
    async fn close(
        &mut self,
        _: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        tracing::warn!(channel = self.role, code = close.reply_code(),
            reason = %close.reply_text(), "RabbitMQ closed a channel");
        Ok(())
    }

    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        tracing::warn!(
            channel = self.role,
            "RabbitMQ cancelled a consumer; it will be re-created"
        );
        Ok(())
    }

    async fn flow(&mut self, _: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }

    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        self.settle(ack.delivery_tag(), ack.mutiple(), true);
    }

    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        self.settle(nack.delivery_tag(), nack.multiple(), false);
    }

    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

impl Drop for ChanEvents {
    fn drop(&mut self) {
        if let Some(pending) = &self.pending {
            lock(pending).clear();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A message's items: a JSON array of them, or one as an object.
fn decode<T: DeserializeOwned>(body: &[u8]) -> serde_json::Result<Vec<T>> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(body),
        _ => serde_json::from_slice(body).map(|one| vec![one]),
    }
}

fn name(s: &str) -> amqprs::FieldName {
    s.try_into().expect("a short header name")
}

/// `x-delivery-count`: how many earlier deliveries of this message came back.
fn delivery_count(props: &BasicProperties) -> u32 {
    let Some(value) = props
        .headers()
        .and_then(|h| h.get(&name("x-delivery-count")))
    else {
        return 0;
    };
    let n: i64 = match value {
        FieldValue::b(v) => i64::from(*v),
        FieldValue::B(v) => i64::from(*v),
        FieldValue::s(v) => i64::from(*v),
        FieldValue::u(v) => i64::from(*v),
        FieldValue::I(v) => i64::from(*v),
        FieldValue::i(v) => i64::from(*v),
        FieldValue::l(v) => *v,
        _ => 0,
    };
    n.clamp(0, i64::from(u32::MAX)) as u32
}

/// The same properties without `expiration` (not removable in place).
fn strip_expiration(props: BasicProperties) -> BasicProperties {
    let mut out = BasicProperties::default();
    if let Some(v) = props.content_type() {
        out.with_content_type(v);
    }
    if let Some(v) = props.headers() {
        out.with_headers(v.clone());
    }
    if let Some(v) = props.delivery_mode() {
        out.with_delivery_mode(v);
    }
    if let Some(v) = props.message_id() {
        out.with_message_id(v);
    }
    if let Some(v) = props.app_id() {
        out.with_app_id(v);
    }
    if let Some(v) = props.timestamp() {
        out.with_timestamp(v);
    }
    out
}

/// A delay between `d / 2` and `d`.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.as_nanos())
            .unwrap_or_default(),
    );
    let half = d / 2;
    let spread = half.as_millis().max(1) as u64;
    half + Duration::from_millis(h.finish() % spread)
}

/// Connection arguments from an `amqp://` URL, and `host:port/vhost` for logs
/// (never the password).
fn connection_args(
    url: &str,
    heartbeat_s: u16,
) -> Result<(OpenConnectionArguments, String), BusError> {
    let bad = |why: String| BusError::InvalidUrl(why);
    let u = url::Url::parse(url).map_err(|e| bad(format!("{}: {e}", redact(url))))?;
    match u.scheme() {
        "amqp" => {}
        "amqps" => {
            return Err(bad(
                "amqps:// (TLS) is not supported by this build; use amqp:// (for example \
                 through a local TLS tunnel)"
                    .into(),
            ));
        }
        other => return Err(bad(format!("unknown scheme {other:?}; use amqp://"))),
    }
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host".into()))?;
    let port = u.port().unwrap_or(5672);
    let user = match percent_decode(u.username()) {
        s if s.is_empty() => "guest".to_owned(),
        s => s,
    };
    let password = u
        .password()
        .map(percent_decode)
        .unwrap_or_else(|| "guest".to_owned());
    let vhost = match u.path() {
        "" | "/" => "/".to_owned(),
        p => percent_decode(&p[1..]),
    };
    let mut heartbeat = heartbeat_s;
    for (k, v) in u.query_pairs() {
        if k == "heartbeat" {
            heartbeat = v
                .parse()
                .map_err(|_| bad(format!("heartbeat={v} is not a number of seconds")))?;
        }
    }
    let mut args = OpenConnectionArguments::new(host, port, &user, &password);
    args.virtual_host(&vhost).heartbeat(heartbeat);
    Ok((args, format!("{host}:{port}/{vhost}")))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL with its password replaced by `***`.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_vhost_and_credentials() {
        let (a, shown) = connection_args("amqp://u%40x:p%2Fw@10.0.0.1:5673/%2f", 10).unwrap();
        assert_eq!(shown, "10.0.0.1:5673//");
        assert_eq!(a.get_virtual_host(), "/");
        assert_eq!(a.get_heartbeat(), 10);
        let (a, _) = connection_args("amqp://h/prod?heartbeat=3", 10).unwrap();
        assert_eq!(a.get_virtual_host(), "prod");
        assert_eq!(a.get_port(), 5672);
        assert_eq!(a.get_heartbeat(), 3);
        let (a, _) = connection_args("amqp://h", 10).unwrap();
        assert_eq!(a.get_virtual_host(), "/");
        assert!(matches!(
            connection_args("amqps://h/", 10),
            Err(BusError::InvalidUrl(_))
        ));
        assert!(matches!(
            connection_args("http://h/", 10),
            Err(BusError::InvalidUrl(_))
        ));
    }

    #[test]
    fn passwords_never_reach_logs() {
        assert!(!redact("amqp://u:secret@h/").contains("secret"));
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
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%40"), "a/b@");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn jitter_stays_between_half_and_whole() {
        for ms in [1u64, 100, 10_000] {
            let d = Duration::from_millis(ms);
            let j = jitter(d);
            assert!(j >= d / 2 && j <= d, "{j:?} for {d:?}");
        }
    }

    #[test]
    fn confirms_settle_one_or_many() {
        let pending: Pending = Arc::default();
        let cb = ChanEvents {
            role: "t",
            pending: Some(Arc::clone(&pending)),
        };
        let mut rxs: Vec<_> = (1..=4)
            .map(|t| {
                let (tx, rx) = oneshot::channel();
                lock(&pending).insert(t, tx);
                rx
            })
            .collect();
        cb.settle(2, true, true);
        assert_eq!(rxs[0].try_recv(), Ok(true));
        assert_eq!(rxs[1].try_recv(), Ok(true));
        assert!(rxs[2].try_recv().is_err());
        cb.settle(4, false, false);
        assert_eq!(rxs[3].try_recv(), Ok(false));
        drop(cb);
        assert!(matches!(
            rxs[2].try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }
}
