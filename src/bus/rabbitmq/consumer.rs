//! Consuming the jobs and results queues: a consumer per queue on its own
//! channel with a bounded prefetch, re-created after a reconnect; each
//! message's items handed out one by one and the message settled once all
//! are; poison moved to `P.dead` by the consumer itself (the parent module's
//! docs say why).

use super::publisher::ChanEvents;
use super::{Cleanup, RabbitBus, SETUP_TIMEOUT, Session, name};
use crate::bus::{Acker, BusError, Delivery};
use crate::domain::{CheckJob, CheckResult};
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicNackArguments, BasicQosArguments, Channel,
    ConsumerMessage,
};
use amqprs::{BasicProperties, DELIVERY_MODE_PERSISTENT, FieldValue};
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

impl RabbitBus {
    /// The jobs any worker may run, and with a region that region's too
    /// (its queue declared when the consumer starts, so a worker that comes
    /// before any job for its region still finds it).
    pub(in crate::bus) fn consume_jobs(
        self: &Arc<Self>,
        region: Option<&str>,
    ) -> QueueConsumer<CheckJob> {
        let mut c = QueueConsumer::new(
            Arc::clone(self),
            self.names.jobs.clone(),
            self.opts.jobs_prefetch,
            decode::<CheckJob>,
        );
        if let Some(region) = region {
            c.regional = Some(self.names.region_jobs(region));
            c.declare_regional = true;
        }
        c
    }

    /// The results, and on the same channel the regional votes
    /// (`P.votes`), of which this process gets all or none: that queue has
    /// a single active consumer, so one recorder sees every vote of every
    /// round (see the module docs of [`super`]).
    pub(in crate::bus) fn consume_results(self: &Arc<Self>) -> QueueConsumer<CheckResult> {
        let mut c = QueueConsumer::new(
            Arc::clone(self),
            self.names.results.clone(),
            self.opts.results_prefetch,
            decode::<CheckResult>,
        );
        c.regional = Some(self.names.votes.clone());
        c
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

/// The receiving end of the jobs or results queue in this process. It
/// (re)creates its broker consumer, on its own channel, when polled.
pub struct QueueConsumer<T> {
    bus: Arc<RabbitBus>,
    queue: String,
    /// A second queue consumed on the same channel as `queue`: a region's
    /// jobs, or the regional votes beside the results.
    regional: Option<String>,
    /// Whether `regional` is a jobs queue this consumer declares when it
    /// starts (the votes queue is declared with the topology).
    declare_regional: bool,
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
    /// One consumer per queue (`queue`, then `regional`), all on `channel`
    /// (delivery tags are per channel, so each acks there).
    subs: Vec<Sub>,
    /// Which consumer is asked first next time, so a busy queue does not
    /// starve the other.
    turn: usize,
}

struct Sub {
    consumer_tag: String,
    rx: mpsc::UnboundedReceiver<ConsumerMessage>,
}

impl Live {
    /// The next message of any of its consumers, and its consumer's index;
    /// `None` once any consumer's stream ends (the channel closed).
    async fn recv(&mut self) -> Option<(usize, ConsumerMessage)> {
        let n = self.subs.len();
        let start = self.turn;
        self.turn = (self.turn + 1) % n.max(1);
        std::future::poll_fn(|cx| {
            for k in 0..n {
                let i = (start + k) % n;
                match self.subs[i].rx.poll_recv(cx) {
                    std::task::Poll::Ready(Some(m)) => return std::task::Poll::Ready(Some((i, m))),
                    std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
                    std::task::Poll::Pending => {}
                }
            }
            std::task::Poll::Pending
        })
        .await
    }

    fn try_recv(&mut self) -> Option<(usize, ConsumerMessage)> {
        let n = self.subs.len();
        let start = self.turn;
        self.turn = (self.turn + 1) % n.max(1);
        (0..n).find_map(|k| {
            let i = (start + k) % n;
            self.subs[i].rx.try_recv().ok().map(|m| (i, m))
        })
    }
}

struct Poison {
    /// Which of the live channel's consumers received it.
    sub: usize,
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
            regional: None,
            declare_regional: false,
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
                let queue = self.queue_of(poison.sub).to_owned();
                self.bus.dead_letter(&channel, &queue, poison).await;
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
            let Some((sub, msg)) = live.recv().await else {
                // The channel closed: the messages it held go back to the
                // queue and come again on a new one.
                self.live = None;
                continue;
            };
            let channel = live.channel.clone();
            match self.classify(msg, &channel, sub) {
                Classified::Good(parts) => self.parts = parts,
                Classified::Poison(p) => {
                    let queue = self.queue_of(sub).to_owned();
                    self.bus.dead_letter(&channel, &queue, p).await
                }
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
            let (sub, msg) = live.try_recv()?;
            let channel = live.channel.clone();
            match self.classify(msg, &channel, sub) {
                Classified::Good(parts) => self.parts = parts,
                Classified::Poison(p) => {
                    self.stash = Some((channel, p));
                    return None;
                }
                Classified::Empty => {}
            }
        }
    }

    /// The queue consumer `sub` of a live channel reads.
    fn queue_of(&self, sub: usize) -> &str {
        match (sub, &self.regional) {
            (1, Some(regional)) => regional,
            _ => &self.queue,
        }
    }

    async fn start(&self, session: &Session) -> Result<Live, amqprs::error::Error> {
        let channel = session.conn.open_channel(None).await?;
        channel
            .register_callback(ChanEvents::plain("consumer"))
            .await?;
        // Per consumer: a regional worker may hold a prefetch of each
        // queue's jobs, but runs only as many at once as its concurrency.
        channel
            .basic_qos(BasicQosArguments::new(0, self.prefetch, false))
            .await?;
        if let Some(regional) = &self.regional
            && self.declare_regional
        {
            self.bus.declare_jobs_queue(&channel, regional).await?;
        }
        let mut subs = Vec::with_capacity(2);
        for queue in std::iter::once(&self.queue).chain(&self.regional) {
            let (consumer_tag, rx) = channel
                .basic_consume_rx(
                    BasicConsumeArguments::new(queue, "")
                        .manual_ack(true)
                        .finish(),
                )
                .await?;
            tracing::debug!(queue = %queue, prefetch = self.prefetch, "consuming");
            subs.push(Sub { consumer_tag, rx });
        }
        Ok(Live {
            channel,
            subs,
            turn: 0,
        })
    }

    fn classify(&self, msg: ConsumerMessage, channel: &Channel, sub: usize) -> Classified<T> {
        let (Some(deliver), Some(body)) = (msg.deliver, msg.content) else {
            return Classified::Empty;
        };
        let tag = deliver.delivery_tag();
        let props = msg.basic_properties.unwrap_or_default();
        // Quorum queues count earlier deliveries that came back.
        let before = delivery_count(&props);
        let poison = |reason: String, body: Vec<u8>| {
            Classified::Poison(Box::new(Poison {
                sub,
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
        let Some(live) = self.live.take() else {
            return;
        };
        let mut requeue = Vec::new();
        if let Some((_, poison)) = self.stash.take() {
            requeue.push(poison.tag);
        }
        for mut sub in live.subs {
            while let Ok(msg) = sub.rx.try_recv() {
                if let Some(d) = msg.deliver {
                    requeue.push(d.delivery_tag());
                }
            }
            let _ = self.bus.cleanup_tx.send(Cleanup::Cancel {
                channel: live.channel.clone(),
                consumer_tag: sub.consumer_tag,
                requeue: std::mem::take(&mut requeue),
            });
        }
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
    pub(in crate::bus) async fn ack(mut self) -> Result<(), BusError> {
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

/// A message's items: a JSON array of them, or one as an object.
fn decode<T: DeserializeOwned>(body: &[u8]) -> serde_json::Result<Vec<T>> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(body),
        _ => serde_json::from_slice(body).map(|one| vec![one]),
    }
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
