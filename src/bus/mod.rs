//! The bus: how the scheduler, workers, recorder and API talk.
//!
//! Four streams cross it: check jobs (scheduler -> one worker), results
//! (worker -> one recorder), events (recorder -> every API process, as JSON
//! text ready for WebSocket clients) and schedule updates (API -> scheduler).
//! [`Bus`] is an enum so each backend is a variant: the in-process one, built
//! on bounded tokio channels, and RabbitMQ ([`rabbitmq`]) for a fleet of
//! processes.

pub mod in_process;
pub mod rabbitmq;
mod resync;

pub use resync::Resync;

use crate::domain::event::ScheduleUpdate;
use crate::domain::{CheckJob, CheckResult, Event};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

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
    pub acker: Acker,
}

/// Settles a delivery with its source.
#[derive(Debug)]
pub enum Acker {
    /// In-process: nothing to settle.
    None,
    /// A RabbitMQ delivery, acked on the channel it came from (and returned
    /// to its queue if dropped unacked).
    Amqp(rabbitmq::AmqpAcker),
}

impl<T> Delivery<T> {
    /// A delivery that needs no settling.
    pub fn local(msg: T) -> Self {
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

/// The bus a process uses.
#[derive(Clone)]
pub enum Bus {
    /// Channels inside this process.
    InProcess(Arc<in_process::InProcessBus>),
    /// A RabbitMQ broker shared by every process.
    Rabbit(Arc<rabbitmq::RabbitBus>),
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
        Bus::InProcess(Arc::new(in_process::InProcessBus::new(caps)))
    }

    /// A RabbitMQ bus; it connects once its [`Bus::maintenance`] task runs.
    /// Fails only on an unusable URL.
    pub fn rabbit(opts: rabbitmq::RabbitOptions) -> Result<Self, BusError> {
        Ok(Bus::Rabbit(Arc::new(rabbitmq::RabbitBus::new(opts)?)))
    }

    /// The task that keeps a broker connection up, to run under the
    /// supervisor in the transport stage; `None` for the in-process bus.
    pub fn maintenance(&self) -> Option<rabbitmq::Maintenance> {
        match self {
            Bus::InProcess(_) => None,
            Bus::Rabbit(b) => Some(rabbitmq::Maintenance(Arc::clone(b))),
        }
    }

    /// Queues a check job, waiting while the queue is full.
    pub async fn publish_job(&self, job: CheckJob) -> Result<(), BusError> {
        match self {
            Bus::InProcess(b) => b.publish_job(job).await,
            Bus::Rabbit(b) => b.publish_job(job).await,
        }
    }

    /// Queues several jobs. With a broker they are sent together and their
    /// confirms awaited together (one confirmed publish at a time manages
    /// about 1,000 jobs a second; together, over 10,000). In-process this is
    /// `publish_job` for each. The first failure is returned; jobs before it
    /// may have been queued.
    pub async fn publish_jobs(&self, jobs: Vec<CheckJob>) -> Result<(), BusError> {
        match self {
            Bus::InProcess(b) => {
                for job in jobs {
                    b.publish_job(job).await?;
                }
                Ok(())
            }
            Bus::Rabbit(b) => b.publish_jobs(jobs).await,
        }
    }

    /// Takes the job stream for this process's worker pool.
    pub fn consume_jobs(&self) -> Result<Consumer<CheckJob>, BusError> {
        match self {
            Bus::InProcess(b) => b.consume_jobs().map(Consumer::InProcess),
            Bus::Rabbit(b) => Ok(Consumer::Rabbit(Box::new(b.consume_jobs()))),
        }
    }

    /// Queues a result, waiting while the queue is full.
    pub async fn publish_result(&self, result: CheckResult) -> Result<(), BusError> {
        match self {
            Bus::InProcess(b) => b.publish_result(result).await,
            Bus::Rabbit(b) => b.publish_result(result).await,
        }
    }

    /// Takes the result stream for this process's recorder.
    pub fn consume_results(&self) -> Result<Consumer<CheckResult>, BusError> {
        match self {
            Bus::InProcess(b) => b.consume_results().map(Consumer::InProcess),
            Bus::Rabbit(b) => Ok(Consumer::Rabbit(Box::new(b.consume_results()))),
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
        let texts = events
            .iter()
            .map(|e| serde_json::to_string(e).map(EventText::from))
            .collect::<Result<Vec<_>, _>>()?;
        match self {
            Bus::InProcess(b) => {
                for text in texts {
                    b.publish_event(text);
                }
                Ok(())
            }
            Bus::Rabbit(b) => {
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
        match self {
            Bus::InProcess(b) => b.subscribe_events(),
            Bus::Rabbit(b) => b.subscribe_events(),
        }
    }

    /// Tells the scheduler a service changed.
    pub async fn publish_schedule(&self, update: ScheduleUpdate) -> Result<(), BusError> {
        match self {
            Bus::InProcess(b) => {
                b.publish_schedule(update);
                Ok(())
            }
            Bus::Rabbit(b) => b.publish_schedule(update).await,
        }
    }

    /// Subscribes to schedule updates. A lagging subscriber gets
    /// `RecvError::Lagged` and must reload the schedule from the store.
    pub fn subscribe_schedule(&self) -> broadcast::Receiver<ScheduleUpdate> {
        match self {
            Bus::InProcess(b) => b.subscribe_schedule(),
            Bus::Rabbit(b) => b.subscribe_schedule(),
        }
    }

    /// Whether the bus can carry messages now (for `/readyz`).
    pub fn is_ready(&self) -> bool {
        match self {
            Bus::InProcess(_) => true,
            Bus::Rabbit(b) => b.is_ready(),
        }
    }

    /// Waits up to `within` until the bus is ready and every subscription
    /// this process made is live on the broker (a broker-side subscription
    /// is bound shortly after `subscribe_*` returns). Whether it got there.
    pub async fn ready(&self, within: Duration) -> bool {
        let Bus::Rabbit(b) = self else {
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
pub enum Consumer<T> {
    /// An in-process channel.
    InProcess(in_process::Consumer<T>),
    /// A RabbitMQ queue consumer.
    Rabbit(Box<rabbitmq::QueueConsumer<T>>),
}

impl<T> Consumer<T> {
    /// The next message, or `None` once the bus is closed.
    pub async fn next(&mut self) -> Option<Delivery<T>> {
        match self {
            Consumer::InProcess(c) => c.next().await.map(Delivery::local),
            Consumer::Rabbit(c) => c.next().await,
        }
    }

    /// A message already waiting, without waiting for one.
    pub fn try_next(&mut self) -> Option<Delivery<T>> {
        match self {
            Consumer::InProcess(c) => c.try_next().map(Delivery::local),
            Consumer::Rabbit(c) => c.try_next(),
        }
    }
}
