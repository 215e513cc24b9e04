//! Publishing: jobs, results and schedule updates wait for the broker's
//! confirm (sent again on a new connection if the old one dies first);
//! events go without one. Jobs travel many to a message, and results
//! published while a message awaits its confirm share the next one.

use super::{
    JOBS_PER_MESSAGE, Link, RESULTS_PER_MESSAGE, RESULTS_QUEUED_MAX, RabbitBus, Session, lock,
};
use crate::bus::{Beat, BusError, EventText};
use crate::domain::event::ScheduleUpdate;
use crate::domain::time::now_ms;
use crate::domain::{CheckJob, CheckResult};
use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{BasicPublishArguments, Channel, ConfirmSelectArguments};
use amqprs::connection::Connection;
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, DELIVERY_MODE_PERSISTENT, Nack, Return};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub(super) type Pending = Arc<Mutex<BTreeMap<u64, oneshot::Sender<bool>>>>;

/// A channel in confirm mode and the confirms it is waiting for.
pub(super) struct Publisher {
    channel: Channel,
    next_tag: u64,
    pending: Pending,
}

/// An encoded result and who waits for its confirm.
type QueuedResult = (Vec<u8>, oneshot::Sender<Result<(), BusError>>);

/// Results waiting to share the next message (see
/// [`RabbitBus::publish_result`]).
#[derive(Default)]
pub(super) struct ResultsOut {
    /// Encoded results and who waits for each one's confirm.
    queued: Mutex<std::collections::VecDeque<QueuedResult>>,
    /// Held while a message of results is sent and confirmed.
    sending: tokio::sync::Mutex<()>,
}

impl RabbitBus {
    pub(in crate::bus) async fn publish_job(&self, job: CheckJob) -> Result<(), BusError> {
        self.publish_jobs(vec![job]).await
    }

    /// Publishes jobs [`JOBS_PER_MESSAGE`] to a message, a bounded number of
    /// messages awaiting their confirms at once; a job with a region goes
    /// to that region's queue, declared first if this connection has not
    /// yet.
    pub(in crate::bus) async fn publish_jobs(&self, jobs: Vec<CheckJob>) -> Result<(), BusError> {
        const MESSAGES_AT_ONCE: usize = 64;
        // Most rounds have no region: they go as they come, uncopied.
        let (anywhere, regional): (Vec<CheckJob>, Vec<CheckJob>) =
            if jobs.iter().all(|j| j.region.is_none()) {
                (jobs, Vec::new())
            } else {
                jobs.into_iter().partition(|j| j.region.is_none())
            };
        let mut by_queue: std::collections::BTreeMap<String, Vec<CheckJob>> = Default::default();
        for job in regional {
            let region = job.region.as_deref().unwrap_or_default();
            let queue = self.names.region_jobs(region);
            by_queue.entry(queue).or_default().push(job);
        }
        for queue in by_queue.keys() {
            self.ensure_jobs_queue(queue).await?;
        }
        let mut messages: Vec<(&str, &[CheckJob])> = Vec::new();
        for batch in anywhere.chunks(JOBS_PER_MESSAGE) {
            messages.push((self.names.jobs.as_str(), batch));
        }
        for (queue, jobs) in &by_queue {
            for batch in jobs.chunks(JOBS_PER_MESSAGE) {
                messages.push((queue.as_str(), batch));
            }
        }
        for wave in messages.chunks(MESSAGES_AT_ONCE) {
            let sends = wave
                .iter()
                .map(|(queue, batch)| self.publish_job_batch_to(queue, batch));
            for sent in futures_util::future::join_all(sends).await {
                sent?;
            }
        }
        Ok(())
    }

    /// Declares a region's jobs queue once per connection, so its jobs are
    /// never published to a queue that is not there (the default exchange
    /// would drop them, confirmed).
    async fn ensure_jobs_queue(&self, queue: &str) -> Result<(), BusError> {
        let deadline = Instant::now() + self.opts.publish_timeout;
        let session = self.wait_up(Some(deadline)).await?;
        if lock(&session.regions_declared).contains(queue) {
            return Ok(());
        }
        let declare = async {
            let ch = session.conn.open_channel(None).await?;
            ch.register_callback(ChanEvents::plain("topology")).await?;
            let declared = self.declare_jobs_queue(&ch, queue).await;
            if ch.is_open() {
                let _ = ch.close().await;
            }
            declared
        };
        match tokio::time::timeout_at(deadline, declare).await {
            Ok(Ok(())) => {
                lock(&session.regions_declared).insert(queue.to_owned());
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::warn!(queue, error = %e, "cannot declare a region's jobs queue");
                Err(BusError::Unavailable)
            }
            Err(_) => Err(BusError::Unavailable),
        }
    }

    /// Sends a heartbeat without a confirm (fails at once when
    /// disconnected, as an event does).
    pub(in crate::bus) async fn publish_beat(&self, beat: &Beat) -> Result<(), BusError> {
        let body = serde_json::to_vec(beat)?;
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
            session.send(&self.names.heartbeats, "", props, body, false),
        )
        .await;
        match sent {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(BusError::Unavailable),
        }
    }

    /// One message on `queue`: a single job as a JSON object, several as
    /// an array.
    async fn publish_job_batch_to(&self, queue: &str, jobs: &[CheckJob]) -> Result<(), BusError> {
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
        self.publish_confirmed("", queue, props, body).await
    }

    /// Publishes a result once the broker confirms it. Results published at
    /// once by this process share a message (up to [`RESULTS_PER_MESSAGE`]):
    /// while one message waits for its confirm, the results that arrive
    /// queue up and the next caller sends them all. Under load that is many
    /// results per message; alone, a result goes at once.
    /// A result with a region (a vote) goes to `P.votes` instead, batched
    /// the same way.
    pub(in crate::bus) async fn publish_result(&self, result: CheckResult) -> Result<(), BusError> {
        let (out, queue, what) = match result.region {
            Some(_) => (&self.votes_out, &self.names.votes, "votes"),
            None => (&self.results_out, &self.names.results, "results"),
        };
        let body = serde_json::to_vec(&result)?;
        self.publish_result_to(out, queue, what, body).await
    }

    async fn publish_result_to(
        &self,
        out: &ResultsOut,
        queue: &str,
        what: &'static str,
        body: Vec<u8>,
    ) -> Result<(), BusError> {
        let (tx, mut rx) = oneshot::channel();
        {
            let mut queued = lock(&out.queued);
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
                guard = out.sending.lock() => guard,
            };
            if let Ok(done) = rx.try_recv() {
                return done;
            }
            let batch: Vec<_> = {
                let mut queued = lock(&out.queued);
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
                .publish_confirmed_or_full("", queue, props, body, what)
                .await;
            // A failed send fails what is queued behind it too: it would
            // only wait its turn to fail the same way, 64 results per
            // publish timeout, holding its worker's slot meanwhile.
            let failed_too: Vec<QueuedResult> = match sent {
                Ok(()) => Vec::new(),
                Err(_) => lock(&out.queued).drain(..).collect(),
            };
            drop(sending);
            for (_, waiter) in batch.into_iter().chain(failed_too) {
                let _ = waiter.send(match &sent {
                    Ok(()) => Ok(()),
                    Err(BusError::Closed) => Err(BusError::Closed),
                    Err(BusError::Full(queue)) => Err(BusError::Full(queue)),
                    Err(_) => Err(BusError::Unavailable),
                });
            }
        }
    }

    /// Publishes events, in one message, one per line (JSON text never
    /// holds a raw newline), without waiting for the broker: fails at once
    /// when disconnected.
    pub(in crate::bus) async fn publish_events(&self, texts: &[EventText]) -> Result<(), BusError> {
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

    pub(in crate::bus) async fn publish_schedule(
        &self,
        update: ScheduleUpdate,
    ) -> Result<(), BusError> {
        let body = serde_json::to_vec(&update)?;
        let props = BasicProperties::default()
            .with_content_type("application/json")
            .finish();
        self.publish_confirmed(&self.names.schedule, "", props, body)
            .await
    }

    /// Publishes and waits for the broker's confirm, sending again on a new
    /// connection if the old one dies first; gives up at `publish_timeout`.
    pub(super) async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        props: BasicProperties,
        body: Vec<u8>,
    ) -> Result<(), BusError> {
        self.send_confirmed(exchange, routing_key, props, body, None)
            .await
    }

    /// As [`RabbitBus::publish_confirmed`], to a queue with a length limit:
    /// a nack means the queue is full (`x-overflow: reject-publish`), and is
    /// returned at once as [`BusError::Full`] instead of being sent again,
    /// so the caller can back off (a worker keeps its job meanwhile).
    pub(super) async fn publish_confirmed_or_full(
        &self,
        exchange: &str,
        routing_key: &str,
        props: BasicProperties,
        body: Vec<u8>,
        queue: &'static str,
    ) -> Result<(), BusError> {
        self.send_confirmed(exchange, routing_key, props, body, Some(queue))
            .await
    }

    /// The body of the two above; `full` names the queue whose nacks mean
    /// it is full.
    async fn send_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        props: BasicProperties,
        body: Vec<u8>,
        full: Option<&'static str>,
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
                    Ok(Ok(false)) => match full {
                        Some(queue) => return Err(BusError::Full(queue)),
                        None => "the broker refused the message (nack)".to_owned(),
                    },
                    Ok(Err(_)) => "the channel closed before the confirm".to_owned(),
                    Err(_) => return Err(BusError::Unavailable),
                },
                Ok(None) => return Ok(()),
                Err(e) => e.to_string(),
            };
            tracing::debug!(exchange, routing_key, reason = %retry, "publishing again");
            // Give the keeper task a moment to notice a dead connection.
            tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

impl Session {
    /// Sends one message on the publisher channel (opening one if needed);
    /// with `confirm`, returns the receiver of its confirm.
    pub(super) async fn send(
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
    pub(super) async fn open(conn: &Connection) -> Result<Self, amqprs::error::Error> {
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

/// Channel callbacks: logs closes and cancels, and settles confirms on the
/// publisher channel. Dropped when the channel's dispatcher ends, which
/// fails every confirm still awaited so its publisher sends again.
pub(super) struct ChanEvents {
    role: &'static str,
    pending: Option<Pending>,
}

impl ChanEvents {
    pub(super) fn plain(role: &'static str) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

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
