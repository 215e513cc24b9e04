//! The bus: how the scheduler, workers, recorder and API talk.
//!
//! Five streams cross it: check jobs (scheduler -> one worker; a regional
//! service's jobs -> one worker of each listed region), results (worker ->
//! one recorder), events (recorder -> every API process, as JSON text ready
//! for WebSocket clients), schedule updates (API -> scheduler) and
//! heartbeats ([`beat`]: every process -> whoever watches regions).
//! [`Bus`] hides which backend carries them: the in-process one, built on
//! bounded tokio channels, or RabbitMQ ([`rabbitmq`]) for a fleet of
//! processes. Nothing outside this module names a backend's types: a
//! [`Delivery`] settles itself, a [`Consumer`] receives, a [`Keeper`] keeps
//! a broker connection up, and the schedule stream carries
//! [`ScheduleSignal`]s.

pub mod beat;
mod depth;
pub mod in_process;
pub mod rabbitmq;
mod resync;
pub mod roster;

pub use beat::Beat;
pub use depth::QueueDepth;
pub use resync::Resync;
pub use roster::Roster;

use crate::domain::event::ScheduleUpdate;
use crate::domain::{CheckJob, CheckResult, Event};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// What can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The other side is gone (shutting down).
    #[error("the bus is closed")]
    Closed,
    /// A consumer for this stream is already running in this process.
    #[error("the {0} stream already has a consumer in this process")]
    Busy(&'static str),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(#[from] serde_json::Error),
    /// The broker is unreachable (or did not confirm) within the publish
    /// timeout.
    #[error("the message broker is unavailable")]
    Unavailable,
    /// The broker URL cannot be used.
    #[error("queue.url: {0}")]
    InvalidUrl(String),
    /// The queue is at its length limit and refused the message (nothing
    /// was queued); publish again later.
    #[error("the {0} queue is full")]
    Full(&'static str),
}

/// What the schedule stream carries: the updates the API publishes, and,
/// from the bus itself, word that some may have been lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleSignal {
    /// A service's schedule changed.
    Update(ScheduleUpdate),
    /// Updates may have been missed (the broker subscription was bound
    /// again after a reconnect): reload the whole schedule from the store.
    /// Only the bus sends it; it never travels over a broker.
    Resync,
}

/// A message taken from a queue, to acknowledge once its work is done.
///
/// With a broker, an unacknowledged message is redelivered if the consumer
/// dies; in-process there is nothing to redeliver to, so `ack` is a no-op.
#[derive(Debug)]
pub struct Delivery<T> {
    /// The message.
    pub msg: T,
    /// How to settle it with whatever delivered it.
    acker: Acker,
}

/// Settles a delivery with its source.
#[derive(Debug)]
enum Acker {
    /// In-process: nothing to settle.
    None,
    /// A RabbitMQ delivery, acked on the channel it came from (and returned
    /// to its queue if dropped unacked).
    Amqp(rabbitmq::AmqpAcker),
}

impl<T> Delivery<T> {
    /// A delivery that needs no settling.
    pub(crate) fn local(msg: T) -> Self {
        Self {
            msg,
            acker: Acker::None,
        }
    }

    /// Confirms the message is fully handled.
    pub async fn ack(self) -> Result<(), BusError> {
        match self.acker {
            Acker::None => Ok(()),
            Acker::Amqp(a) => a.ack().await,
        }
    }
}

/// The bus a process uses. Cloning it is cheap: clones share one bus (and
/// one [`Roster`]).
#[derive(Clone)]
pub struct Bus(Backend, Arc<std::sync::OnceLock<Arc<Roster>>>);

/// Which backend carries the streams; private, so nothing outside the bus
/// depends on the choice.
#[derive(Clone)]
enum Backend {
    /// Channels inside this process.
    InProcess(Arc<in_process::InProcessBus>),
    /// A RabbitMQ broker shared by every process.
    Rabbit(Arc<rabbitmq::RabbitBus>),
}

/// The task that keeps a broker connection up (connects, declares the
/// topology, re-binds subscriptions, reconnects with backoff), to run under
/// the supervisor in the transport stage. Not to be confused with log
/// maintenance (`crate::maintenance`).
#[derive(Clone)]
pub struct Keeper(Arc<rabbitmq::RabbitBus>);

impl Keeper {
    /// Connects and keeps reconnecting until `token` is cancelled, then
    /// closes the connection. Only one may run at a time per bus.
    pub fn run(
        &self,
        token: CancellationToken,
    ) -> impl Future<Output = Result<(), BusError>> + Send + use<> {
        Arc::clone(&self.0).keep(token)
    }
}

/// An event's JSON text. Every subscriber shares one copy: a clone is a
/// reference count, and each WebSocket client's feed frames it from there
/// (with 1,000 clients, copying each event per client cost a million
/// allocations a second).
pub type EventText = bytestring::ByteString;

/// Most events in one broker message.
pub const EVENTS_PER_MESSAGE: usize = 256;

/// Capacities of the in-process channels (RabbitMQ uses `events` and
/// `schedule` for its local fan-out rings).
#[derive(Debug, Clone, Copy)]
pub struct Capacities {
    /// Jobs waiting for a worker.
    pub jobs: usize,
    /// Results waiting for the recorder.
    pub results: usize,
    /// Events a subscriber may lag behind by.
    pub events: usize,
    /// Schedule updates the scheduler may lag behind by.
    pub schedule: usize,
}

impl Bus {
    /// An in-process bus with these capacities.
    pub fn in_process(caps: Capacities) -> Self {
        Bus(
            Backend::InProcess(Arc::new(in_process::InProcessBus::new(caps))),
            Arc::default(),
        )
    }

    /// A RabbitMQ bus; it connects once its [`Bus::keeper`] task runs.
    /// Fails only on an unusable URL.
    pub fn rabbit(opts: rabbitmq::RabbitOptions) -> Result<Self, BusError> {
        Ok(Bus(
            Backend::Rabbit(Arc::new(rabbitmq::RabbitBus::new(opts)?)),
            Arc::default(),
        ))
    }

    /// The task that keeps the broker connection up, to run under the
    /// supervisor in the transport stage; `None` for the in-process bus.
    pub fn keeper(&self) -> Option<Keeper> {
        match &self.0 {
            Backend::InProcess(_) => None,
            Backend::Rabbit(b) => Some(Keeper(Arc::clone(b))),
        }
    }

    /// Queues a check job, waiting while the queue is full.
    pub async fn publish_job(&self, job: CheckJob) -> Result<(), BusError> {
        match &self.0 {
            Backend::InProcess(b) => b.publish_job(job).await,
            Backend::Rabbit(b) => b.publish_job(job).await,
        }
    }

    /// Queues several jobs. With a broker they are sent together and their
    /// confirms awaited together (one confirmed publish at a time manages
    /// about 1,000 jobs a second; together, over 10,000), each job with a
    /// `region` on that region's queue. In-process, where there is one
    /// region, this is `publish_job` for each. The first failure is
    /// returned; jobs before it may have been queued.
    pub async fn publish_jobs(&self, jobs: Vec<CheckJob>) -> Result<(), BusError> {
        match &self.0 {
            Backend::InProcess(b) => {
                for job in jobs {
                    b.publish_job(job).await?;
                }
                Ok(())
            }
            Backend::Rabbit(b) => b.publish_jobs(jobs).await,
        }
    }

    /// Takes the job stream for this process's worker pool (jobs of any
    /// region: see [`Bus::consume_jobs_in`] for a worker with a region).
    pub fn consume_jobs(&self) -> Result<Consumer<CheckJob>, BusError> {
        match &self.0 {
            Backend::InProcess(b) => b.consume_jobs().map(|c| Consumer(Source::InProcess(c))),
            Backend::Rabbit(b) => Ok(Consumer(Source::Rabbit(Box::new(b.consume_jobs(None))))),
        }
    }

    /// Takes the job stream of a worker pool in `region`: the jobs any
    /// worker may run and those of its region's queue. In-process there is
    /// one region, so this is [`Bus::consume_jobs`].
    pub fn consume_jobs_in(&self, region: &str) -> Result<Consumer<CheckJob>, BusError> {
        match &self.0 {
            Backend::InProcess(b) => b.consume_jobs().map(|c| Consumer(Source::InProcess(c))),
            Backend::Rabbit(b) => Ok(Consumer(Source::Rabbit(Box::new(
                b.consume_jobs(Some(region)),
            )))),
        }
    }

    /// Sends a heartbeat to every process that watches them. Never waits;
    /// a beat lost while the broker is away is made good by the next one.
    pub async fn publish_beat(&self, beat: &Beat) -> Result<(), BusError> {
        match &self.0 {
            Backend::InProcess(b) => {
                b.publish_beat(beat.clone());
                Ok(())
            }
            Backend::Rabbit(b) => b.publish_beat(beat).await,
        }
    }

    /// This process's view of the regions, from the heartbeats it receives;
    /// subscribed at the first call, so a process that shows regions calls
    /// this at start-up.
    pub fn roster(&self) -> Arc<Roster> {
        Arc::clone(
            self.1
                .get_or_init(|| Arc::new(Roster::new(self.subscribe_beats()))),
        )
    }

    /// Subscribes to heartbeats. A reader that falls behind gets
    /// `RecvError::Lagged` and goes on with the newest ones, which is all a
    /// view of who is alive needs.
    pub fn subscribe_beats(&self) -> broadcast::Receiver<Beat> {
        match &self.0 {
            Backend::InProcess(b) => b.subscribe_beats(),
            Backend::Rabbit(b) => b.subscribe_beats(),
        }
    }

    /// Queues a result. In-process it waits while the channel is full; with
    /// a broker a full results queue (`queue.results_max`) refuses it with
    /// [`BusError::Full`], and the caller waits and tries again.
    pub async fn publish_result(&self, result: CheckResult) -> Result<(), BusError> {
        match &self.0 {
            Backend::InProcess(b) => b.publish_result(result).await,
            Backend::Rabbit(b) => b.publish_result(result).await,
        }
    }

    /// Takes the result stream for this process's recorder.
    pub fn consume_results(&self) -> Result<Consumer<CheckResult>, BusError> {
        match &self.0 {
            Backend::InProcess(b) => b.consume_results().map(|c| Consumer(Source::InProcess(c))),
            Backend::Rabbit(b) => Ok(Consumer(Source::Rabbit(Box::new(b.consume_results())))),
        }
    }

    /// Fans an event out to every subscriber. Never waits: a subscriber that
    /// falls behind loses its place (and its WebSocket client is dropped).
    pub async fn publish_event(&self, event: &Event) -> Result<(), BusError> {
        self.publish_events(std::slice::from_ref(event)).await
    }

    /// Fans events out in order, as [`Bus::publish_event`] does each. With a
    /// broker they travel together, up to [`EVENTS_PER_MESSAGE`] to a
    /// message (one per line): a message per event cost the broker as much
    /// as the checks' jobs and results together.
    pub async fn publish_events(&self, events: &[Event]) -> Result<(), BusError> {
        if let Backend::InProcess(b) = &self.0
            && !b.has_event_subscribers()
        {
            // Nobody to tell (no WebSocket client): each check's event was
            // serialised to JSON for no reader, 5,000 a second at 100,000
            // services (BENCHMARKS.md "The price of a check").
            return Ok(());
        }
        let texts = events
            .iter()
            .map(|e| serde_json::to_string(e).map(EventText::from))
            .collect::<Result<Vec<_>, _>>()?;
        match &self.0 {
            Backend::InProcess(b) => {
                for text in texts {
                    b.publish_event(text);
                }
                Ok(())
            }
            Backend::Rabbit(b) => {
                for chunk in texts.chunks(EVENTS_PER_MESSAGE) {
                    b.publish_events(chunk).await?;
                }
                Ok(())
            }
        }
    }

    /// Subscribes to events, as JSON text. Where events may have been lost
    /// (a broker reconnect) the stream holds a [`Resync`] mark instead.
    pub fn subscribe_events(&self) -> broadcast::Receiver<EventText> {
        match &self.0 {
            Backend::InProcess(b) => b.subscribe_events(),
            Backend::Rabbit(b) => b.subscribe_events(),
        }
    }

    /// Tells the scheduler a service changed.
    pub async fn publish_schedule(&self, update: ScheduleUpdate) -> Result<(), BusError> {
        match &self.0 {
            Backend::InProcess(b) => {
                b.publish_schedule(update);
                Ok(())
            }
            Backend::Rabbit(b) => b.publish_schedule(update).await,
        }
    }

    /// Subscribes to schedule updates. A lagging subscriber gets
    /// `RecvError::Lagged`, and one that may have missed updates gets
    /// [`ScheduleSignal::Resync`]; either must reload the schedule from the
    /// store.
    pub fn subscribe_schedule(&self) -> broadcast::Receiver<ScheduleSignal> {
        match &self.0 {
            Backend::InProcess(b) => b.subscribe_schedule(),
            Backend::Rabbit(b) => b.subscribe_schedule(),
        }
    }

    /// Whether the bus can carry messages now (for `/readyz`).
    pub fn is_ready(&self) -> bool {
        match &self.0 {
            Backend::InProcess(_) => true,
            Backend::Rabbit(b) => b.is_ready(),
        }
    }

    /// Waits up to `within` until the bus is ready and every subscription
    /// this process made is live on the broker (a broker-side subscription
    /// is bound shortly after `subscribe_*` returns). Whether it got there.
    pub async fn ready(&self, within: Duration) -> bool {
        let Backend::Rabbit(b) = &self.0 else {
            return true;
        };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if b.subscriptions_ready() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The receiving end of a queue.
pub struct Consumer<T>(Source<T>);

/// Where a [`Consumer`] receives from.
enum Source<T> {
    /// An in-process channel.
    InProcess(in_process::Consumer<T>),
    /// A RabbitMQ queue consumer.
    Rabbit(Box<rabbitmq::QueueConsumer<T>>),
}

impl<T> Consumer<T> {
    /// The next message, or `None` once the bus is closed.
    pub async fn next(&mut self) -> Option<Delivery<T>> {
        match &mut self.0 {
            Source::InProcess(c) => c.next().await.map(Delivery::local),
            Source::Rabbit(c) => c.next().await,
        }
    }

    /// A message already waiting, without waiting for one.
    pub fn try_next(&mut self) -> Option<Delivery<T>> {
        match &mut self.0 {
            Source::InProcess(c) => c.try_next().map(Delivery::local),
            Source::Rabbit(c) => c.try_next(),
        }
    }
}
