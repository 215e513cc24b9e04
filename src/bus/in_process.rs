//! The in-process bus: bounded tokio channels.
//!
//! Queues (jobs, results) are mpsc channels with one consumer each. The
//! receiver lives in a slot so a restarted consumer task can take it again:
//! the [`Consumer`] puts it back when dropped. Fan-outs (events, schedule
//! updates) are broadcast rings, bounded by construction.

use super::{Beat, BusError, Capacities, EventText, ScheduleSignal};
use crate::domain::event::ScheduleUpdate;
use crate::domain::{CheckJob, CheckResult};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};

type Slot<T> = Arc<Mutex<Option<mpsc::Receiver<T>>>>;

/// Bounded channels standing in for a broker.
pub struct InProcessBus {
    jobs_tx: mpsc::Sender<CheckJob>,
    jobs_rx: Slot<CheckJob>,
    results_tx: mpsc::Sender<CheckResult>,
    results_rx: Slot<CheckResult>,
    events: broadcast::Sender<EventText>,
    schedule: broadcast::Sender<ScheduleSignal>,
    beats: broadcast::Sender<Beat>,
}

/// Beats a reader may lag behind by; a reader only needs the last few
/// seconds' (see [`super::beat`]).
pub const BEATS_RING: usize = 1024;

impl InProcessBus {
    /// Builds the channels.
    pub fn new(caps: Capacities) -> Self {
        let (jobs_tx, jobs_rx) = mpsc::channel(caps.jobs.max(1));
        let (results_tx, results_rx) = mpsc::channel(caps.results.max(1));
        let (events, _) = broadcast::channel(caps.events.max(1));
        let (schedule, _) = broadcast::channel(caps.schedule.max(1));
        Self {
            jobs_tx,
            jobs_rx: Arc::new(Mutex::new(Some(jobs_rx))),
            results_tx,
            results_rx: Arc::new(Mutex::new(Some(results_rx))),
            events,
            schedule,
            beats: broadcast::channel(BEATS_RING).0,
        }
    }

    pub(super) fn publish_beat(&self, beat: Beat) {
        // An error only means nobody is listening right now.
        let _ = self.beats.send(beat);
    }

    pub(super) fn subscribe_beats(&self) -> broadcast::Receiver<Beat> {
        self.beats.subscribe()
    }

    /// The two queues' fill: what waits in each channel, and whether its
    /// consumer is taken (its receiver out of the slot).
    pub(super) fn depths(&self) -> Vec<super::QueueDepth> {
        fn depth<T>(queue: &'static str, tx: &mpsc::Sender<T>, rx: &Slot<T>) -> super::QueueDepth {
            let max = tx.max_capacity();
            let taken = rx.lock().map(|slot| slot.is_none()).unwrap_or(false);
            super::QueueDepth {
                queue: queue.into(),
                // Permits reserved by a sender count as queued: they are
                // about to be.
                messages: (max - tx.capacity()) as u64,
                consumers: u64::from(taken),
                capacity: Some(max as u64),
            }
        }
        vec![
            depth("jobs", &self.jobs_tx, &self.jobs_rx),
            depth("results", &self.results_tx, &self.results_rx),
        ]
    }

    pub(super) async fn publish_job(&self, job: CheckJob) -> Result<(), BusError> {
        self.jobs_tx.send(job).await.map_err(|_| BusError::Closed)
    }

    pub(super) fn consume_jobs(&self) -> Result<Consumer<CheckJob>, BusError> {
        Consumer::take(&self.jobs_rx, "jobs")
    }

    pub(super) async fn publish_result(&self, result: CheckResult) -> Result<(), BusError> {
        self.results_tx
            .send(result)
            .await
            .map_err(|_| BusError::Closed)
    }

    pub(super) fn consume_results(&self) -> Result<Consumer<CheckResult>, BusError> {
        Consumer::take(&self.results_rx, "results")
    }

    /// Whether anyone listens to events now. With nobody (no WebSocket
    /// client: `app` drops the subscription it takes at start) the events
    /// need not be serialised at all; a client that subscribes later reads
    /// its snapshot after this moment, which already holds what they said.
    pub(super) fn has_event_subscribers(&self) -> bool {
        self.events.receiver_count() > 0
    }

    pub(super) fn publish_event(&self, text: EventText) {
        // An error only means nobody is listening right now.
        let _ = self.events.send(text);
    }

    pub(super) fn subscribe_events(&self) -> broadcast::Receiver<EventText> {
        self.events.subscribe()
    }

    pub(super) fn publish_schedule(&self, update: ScheduleUpdate) {
        let _ = self.schedule.send(ScheduleSignal::Update(update));
    }

    pub(super) fn subscribe_schedule(&self) -> broadcast::Receiver<ScheduleSignal> {
        self.schedule.subscribe()
    }
}

/// The one consumer of an in-process queue; gives the receiver back on drop.
pub struct Consumer<T> {
    rx: Option<mpsc::Receiver<T>>,
    slot: Slot<T>,
}

impl<T> Consumer<T> {
    fn take(slot: &Slot<T>, name: &'static str) -> Result<Self, BusError> {
        let rx = slot
            .lock()
            .map_err(|_| BusError::Busy(name))?
            .take()
            .ok_or(BusError::Busy(name))?;
        Ok(Self {
            rx: Some(rx),
            slot: Arc::clone(slot),
        })
    }

    /// Waits for the next message.
    pub async fn next(&mut self) -> Option<T> {
        self.rx.as_mut()?.recv().await
    }

    /// A message already queued, if any.
    pub fn try_next(&mut self) -> Option<T> {
        self.rx.as_mut()?.try_recv().ok()
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        if let (Some(rx), Ok(mut slot)) = (self.rx.take(), self.slot.lock()) {
            *slot = Some(rx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Bus;
    use super::*;
    use crate::domain::ServiceId;

    fn caps(n: usize) -> Capacities {
        Capacities {
            jobs: n,
            results: n,
            events: n,
            schedule: n,
        }
    }

    fn job(id: i64) -> CheckJob {
        CheckJob {
            service_id: ServiceId(id),
            url: "http://127.0.0.1:1/".into(),
            timeout_ms: 1000,
            interval_ms: 1000,
            expected_statuses: None,
            scheduled_at: 0,
            check: Default::default(),
            region: None,
        }
    }

    #[tokio::test]
    async fn a_queue_has_one_consumer_that_can_be_taken_again() {
        let bus = Bus::in_process(caps(4));
        let first = bus.consume_jobs().unwrap();
        assert!(matches!(bus.consume_jobs(), Err(BusError::Busy("jobs"))));
        drop(first);
        let mut again = bus.consume_jobs().unwrap();
        bus.publish_job(job(7)).await.unwrap();
        assert_eq!(again.next().await.unwrap().msg.service_id, ServiceId(7));
    }

    #[tokio::test]
    async fn depths_count_what_waits_and_whether_a_consumer_took_the_queue() {
        let bus = Bus::in_process(caps(4));
        let depths = bus.queue_depths(std::time::Duration::from_secs(1)).await;
        let jobs = |d: &Option<Vec<super::super::QueueDepth>>| {
            d.as_ref()
                .and_then(|d| d.iter().find(|q| q.queue == "jobs").cloned())
                .map(|q| (q.messages, q.consumers, q.capacity))
        };
        assert_eq!(jobs(&depths), Some((0, 0, Some(4))));
        bus.publish_job(job(1)).await.unwrap();
        bus.publish_job(job(2)).await.unwrap();
        let mut c = bus.consume_jobs().unwrap();
        let depths = bus.queue_depths(std::time::Duration::from_secs(1)).await;
        assert_eq!(jobs(&depths), Some((2, 1, Some(4))));
        c.next().await.unwrap();
        let depths = bus.queue_depths(std::time::Duration::from_secs(1)).await;
        assert_eq!(jobs(&depths), Some((1, 1, Some(4))));
        assert!(depths.unwrap().iter().any(|q| q.queue == "results"));
    }

    #[tokio::test]
    async fn a_full_queue_makes_the_publisher_wait_not_grow() {
        let bus = Bus::in_process(caps(2));
        bus.publish_job(job(1)).await.unwrap();
        bus.publish_job(job(2)).await.unwrap();
        let third = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            bus.publish_job(job(3)),
        );
        assert!(third.await.is_err(), "the third job must wait for room");
        let mut c = bus.consume_jobs().unwrap();
        assert_eq!(c.next().await.unwrap().msg.service_id, ServiceId(1));
        bus.publish_job(job(3)).await.unwrap();
    }

    #[tokio::test]
    async fn every_subscriber_sees_every_event_and_laggards_are_told() {
        let bus = Bus::in_process(caps(2));
        let mut a = bus.subscribe_events();
        let mut b = bus.subscribe_events();
        let ev = crate::domain::Event::Check {
            service_id: ServiceId(1),
            name: "x".into(),
            status: crate::domain::Status::Up,
            latency: 1,
            status_code: Some(200),
            error: None,
            checked_at: 0,
            region: None,
        };
        bus.publish_event(&ev).await.unwrap();
        assert!(a.recv().await.unwrap().contains("\"type\":\"check\""));
        assert!(b.recv().await.unwrap().contains("\"type\":\"check\""));
        for _ in 0..3 {
            bus.publish_event(&ev).await.unwrap();
        }
        assert!(matches!(
            a.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }
}
