//! The bus: how the scheduler, workers, recorder and API talk.
//!
//! Four streams cross it: check jobs (scheduler -> one worker), results
//! (worker -> one recorder), events (recorder -> every API process, as JSON
//! text ready for WebSocket clients) and schedule updates (API -> scheduler).
//! [`Bus`] is an enum so each backend is a variant; today there is the
//! in-process one, built on bounded tokio channels.

pub mod in_process;

use crate::domain::event::ScheduleUpdate;
use crate::domain::{CheckJob, CheckResult, Event};
use std::sync::Arc;
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
        }
    }
}

/// The bus a process uses.
#[derive(Clone)]
pub enum Bus {
    /// Channels inside this process.
    InProcess(Arc<in_process::InProcessBus>),
}

/// Capacities of the in-process channels.
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

    /// Queues a check job, waiting while the queue is full.
    pub async fn publish_job(&self, job: CheckJob) -> Result<(), BusError> {
        match self {
            Bus::InProcess(b) => b.publish_job(job).await,
        }
    }

    /// Takes the job stream for this process's worker pool.
    pub fn consume_jobs(&self) -> Result<Consumer<CheckJob>, BusError> {
        match self {
            Bus::InProcess(b) => b.consume_jobs().map(Consumer::InProcess),
        }
    }

    /// Queues a result, waiting while the queue is full.
    pub async fn publish_result(&self, result: CheckResult) -> Result<(), BusError> {
        match self {
            Bus::InProcess(b) => b.publish_result(result).await,
        }
    }

    /// Takes the result stream for this process's recorder.
    pub fn consume_results(&self) -> Result<Consumer<CheckResult>, BusError> {
        match self {
            Bus::InProcess(b) => b.consume_results().map(Consumer::InProcess),
        }
    }

    /// Fans an event out to every subscriber. Never waits: a subscriber that
    /// falls behind loses its place (and its WebSocket client is dropped).
    pub async fn publish_event(&self, event: &Event) -> Result<(), BusError> {
        let text: Arc<str> = serde_json::to_string(event)?.into();
        match self {
            Bus::InProcess(b) => {
                b.publish_event(text);
                Ok(())
            }
        }
    }

    /// Subscribes to events, as JSON text.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<str>> {
        match self {
            Bus::InProcess(b) => b.subscribe_events(),
        }
    }

    /// Tells the scheduler a service changed.
    pub async fn publish_schedule(&self, update: ScheduleUpdate) -> Result<(), BusError> {
        match self {
            Bus::InProcess(b) => {
                b.publish_schedule(update);
                Ok(())
            }
        }
    }

    /// Subscribes to schedule updates. A lagging subscriber gets
    /// `RecvError::Lagged` and must reload the schedule from the store.
    pub fn subscribe_schedule(&self) -> broadcast::Receiver<ScheduleUpdate> {
        match self {
            Bus::InProcess(b) => b.subscribe_schedule(),
        }
    }

    /// Whether the bus can carry messages now (for `/readyz`).
    pub fn is_ready(&self) -> bool {
        match self {
            Bus::InProcess(_) => true,
        }
    }
}

/// The receiving end of a queue.
pub enum Consumer<T> {
    /// An in-process channel.
    InProcess(in_process::Consumer<T>),
}

impl<T> Consumer<T> {
    /// The next message, or `None` once the bus is closed.
    pub async fn next(&mut self) -> Option<Delivery<T>> {
        match self {
            Consumer::InProcess(c) => c.next().await.map(Delivery::local),
        }
    }

    /// A message already waiting, without waiting for one.
    pub fn try_next(&mut self) -> Option<Delivery<T>> {
        match self {
            Consumer::InProcess(c) => c.try_next().map(Delivery::local),
        }
    }
}
