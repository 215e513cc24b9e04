//! The connection keeper: amqprs does not reconnect, so one supervised task
//! ([`Keeper::run`](crate::bus::Keeper::run)) opens the connection, declares the topology, binds
//! the fanout subscriptions, forwards what they carry to the local rings,
//! and on a lost connection tries again with capped, jittered backoff.

use super::publisher::{ChanEvents, Publisher};
use super::{Cleanup, Link, RabbitBus, SETUP_TIMEOUT, Session, name};
use crate::bus::{Beat, BusError, Resync, ScheduleSignal};
use crate::domain::Event;
use crate::domain::event::ScheduleUpdate;
use amqprs::callbacks::ConnectionCallback;
use amqprs::channel::{
    BasicCancelArguments, BasicConsumeArguments, BasicNackArguments, Channel, ConsumerMessage,
    ExchangeDeclareArguments, ExchangeType, QueueBindArguments, QueueDeclareArguments,
};
use amqprs::connection::Connection;
use amqprs::{Close, FieldTable, FieldValue};
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why a connection failed, as a person would say it: amqprs keeps a
/// network error's io error only as text ("AMQP network error: network io
/// error: Connection refused (os error 111)"); the warning that carries
/// this already names the broker's host and port.
fn plain_cause(e: &amqprs::error::Error) -> String {
    match e {
        amqprs::error::Error::NetworkError(msg) if msg.contains("Connection refused") => {
            "connection refused".to_owned()
        }
        amqprs::error::Error::NetworkError(msg) => {
            msg.trim_start_matches("network io error: ").to_owned()
        }
        other => other.to_string(),
    }
}

/// How often the connection's state is polled besides its close signal.
const LIVENESS_POLL: Duration = Duration::from_millis(250);
/// Most messages `P.dead` keeps.
pub(super) const DEAD_MAX_LENGTH: i64 = 100_000;

impl RabbitBus {
    /// Connects, declares the topology and opens the publisher and fanout
    /// channels.
    async fn connect(&self) -> Result<(Arc<Session>, Fanouts), String> {
        let conn =
            match tokio::time::timeout(self.opts.connect_timeout, Connection::open(&self.args))
                .await
            {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(plain_cause(&e)),
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
            // A refused results declare closes `control` (see `declare`).
            self.declare(&conn, &control).await?;
            if control.is_open() {
                let _ = control.close().await;
            }
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
                    regions_declared: Default::default(),
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

    async fn declare(&self, conn: &Connection, ch: &Channel) -> Result<(), amqprs::error::Error> {
        let n = &self.names;
        for exchange in [&n.events, &n.schedule, &n.dead, &n.heartbeats] {
            ch.exchange_declare(
                ExchangeDeclareArguments::of_type(exchange, ExchangeType::Fanout)
                    .durable(true)
                    .finish(),
            )
            .await?;
        }
        self.declare_jobs_queue(ch, &n.jobs).await?;
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
        // The votes: bounded like the results (below), and consumed by one
        // recorder at a time (see the module docs). A new queue, so no
        // earlier declaration can differ.
        let mut args = self.quorum_args();
        args.insert(
            name("x-max-length"),
            FieldValue::l(self.opts.results_max_messages()),
        );
        args.insert(name("x-overflow"), FieldValue::from("reject-publish"));
        args.insert(name("x-single-active-consumer"), FieldValue::t(true));
        ch.queue_declare(
            QueueDeclareArguments::durable_client_named(&n.votes)
                .arguments(args)
                .finish(),
        )
        .await?;
        // Last, because a refusal closes the channel. The length limit makes
        // the broker nack results beyond it (reject-publish, not drop-head:
        // a dropped result would be a check lost), and the workers wait.
        let mut args = self.quorum_args();
        let max_messages = self.opts.results_max_messages();
        args.insert(name("x-max-length"), FieldValue::l(max_messages));
        args.insert(name("x-overflow"), FieldValue::from("reject-publish"));
        let declared = ch
            .queue_declare(
                QueueDeclareArguments::durable_client_named(&n.results)
                    .arguments(args)
                    .finish(),
            )
            .await;
        if let Err(refused) = declared {
            // PRECONDITION_FAILED: the queue exists with other arguments (an
            // earlier healthmon without the limit, or another
            // `queue.results_max`), and a durable queue's arguments cannot
            // change. Refusing to start would stop the whole fleet for a
            // setting, so the queue is used as it is, if it is there, and
            // the operator is told how to apply the limit.
            let check = conn.open_channel(None).await?;
            check
                .register_callback(ChanEvents::plain("topology"))
                .await?;
            let exists = check
                .queue_declare(
                    QueueDeclareArguments::new(&n.results)
                        .passive(true)
                        .finish(),
                )
                .await;
            if check.is_open() {
                let _ = check.close().await;
            }
            if exists.is_err() {
                return Err(refused);
            }
            tracing::warn!(queue = %n.results, max_messages, error = %refused,
                "the results queue exists with other arguments, so it is used as it is and \
                 queue.results_max may not bound it; apply it with a policy or re-create the \
                 queue while it is empty (docs/scaling-out.md, \"Bounding the results backlog\")");
        }
        Ok(())
    }

    /// A quorum queue's arguments: its type, and the backstop delivery limit
    /// (see the module docs).
    pub(super) fn quorum_args(&self) -> FieldTable {
        let limit = i64::from(self.opts.max_deliveries.max(1)) * 2;
        let mut args = FieldTable::new();
        args.insert(name("x-queue-type"), FieldValue::from("quorum"));
        args.insert(name("x-delivery-limit"), FieldValue::l(limit));
        args
    }

    /// Declares a jobs queue (`P.jobs` or a region's), all with the same
    /// arguments, so every process declares each alike.
    pub(super) async fn declare_jobs_queue(
        &self,
        ch: &Channel,
        queue: &str,
    ) -> Result<(), amqprs::error::Error> {
        ch.queue_declare(
            QueueDeclareArguments::durable_client_named(queue)
                .arguments(self.quorum_args())
                .finish(),
        )
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
        let want_beats = self.want_beats.load(Ordering::SeqCst) && fanouts.beats.is_none();
        if !want_events && !want_schedule && !want_beats {
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
        if want_beats {
            fanouts.beats = Some(subscribe_fanout(ch, &self.names.heartbeats).await?);
        }
        Ok(())
    }

    /// Keeps a connection up until `token` is cancelled (the body of
    /// [`Keeper::run`](crate::bus::Keeper::run)).
    pub(in crate::bus) async fn keep(
        self: Arc<Self>,
        token: CancellationToken,
    ) -> Result<(), BusError> {
        let Some(cleanup) = self.cleanup_rx.lock().ok().and_then(|mut s| s.take()) else {
            return Err(BusError::Busy("broker connection keeper"));
        };
        let mut guard = KeeperGuard {
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
            // The guard holds the receiver from the start of `run` until
            // its drop; without it there is nothing to serve.
            let Some(cleanup) = guard.cleanup.as_mut() else {
                break;
            };
            let end = self.serve(&session, fanouts, cleanup, &token).await;
            self.events_bound.store(false, Ordering::SeqCst);
            self.schedule_bound.store(false, Ordering::SeqCst);
            self.beats_bound.store(false, Ordering::SeqCst);
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
                msg = recv_opt(&mut fanouts.beats) => match msg {
                    Some(m) => self.forward_beat(m),
                    None => return Err("the heartbeats subscription ended".into()),
                },
                Some(job) = cleanup.recv() => do_cleanup(job).await,
            }
        }
    }

    /// Records which fanouts are bound; a (re)bound schedule subscription
    /// may have missed updates, so local subscribers are told to resync.
    /// A re-bound events subscription has missed the events published while
    /// it was away, so a [`Resync`] mark goes into the ring ahead of its
    /// first event (this runs before the connection's messages are
    /// forwarded). The first bind has no mark: nothing was subscribed before.
    fn mark_bound(&self, fanouts: &Fanouts) {
        if fanouts.events.is_some() && !self.events_bound.swap(true, Ordering::SeqCst) {
            let rebinds = self.events_binds.fetch_add(1, Ordering::SeqCst);
            if rebinds > 0 {
                tracing::info!(
                    generation = rebinds,
                    "events were lost while away from RabbitMQ; clients resync"
                );
                // An error only means nobody is listening right now.
                let _ = self.events.send(Resync(rebinds).text());
            }
        }
        if fanouts.schedule.is_some() && !self.schedule_bound.swap(true, Ordering::SeqCst) {
            let _ = self.schedule.send(ScheduleSignal::Resync);
        }
        // Lost beats need no mark: the next ones tell who is alive.
        if fanouts.beats.is_some() {
            self.beats_bound.store(true, Ordering::SeqCst);
        }
    }

    fn forward_beat(&self, msg: ConsumerMessage) {
        let Some(body) = msg.content else { return };
        match serde_json::from_slice::<Beat>(&body) {
            Ok(beat) => {
                // An error only means nobody is listening right now.
                let _ = self.beats.send(beat);
            }
            Err(e) => tracing::debug!(error = %e, "dropping an undecodable heartbeat"),
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
                let _ = self.schedule.send(ScheduleSignal::Update(update));
            }
            Err(e) => tracing::warn!(error = %e, "dropping an undecodable schedule update"),
        }
    }
}

/// Returns the cleanup receiver when the keeper task ends, however it ends,
/// so a restarted task can take it again.
struct KeeperGuard {
    bus: Arc<RabbitBus>,
    cleanup: Option<mpsc::UnboundedReceiver<Cleanup>>,
}

impl Drop for KeeperGuard {
    fn drop(&mut self) {
        self.bus.events_bound.store(false, Ordering::SeqCst);
        self.bus.schedule_bound.store(false, Ordering::SeqCst);
        self.bus.beats_bound.store(false, Ordering::SeqCst);
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

/// The fanout subscriptions of one connection.
#[derive(Default)]
pub(super) struct Fanouts {
    channel: Option<Channel>,
    events: Option<mpsc::UnboundedReceiver<ConsumerMessage>>,
    schedule: Option<mpsc::UnboundedReceiver<ConsumerMessage>>,
    beats: Option<mpsc::UnboundedReceiver<ConsumerMessage>>,
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

/// A delay between `d / 2` and `d`, so a fleet that lost its broker at once
/// does not knock on it again all at the same moment.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + half.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_whole() {
        for ms in [1u64, 100, 10_000] {
            let d = Duration::from_millis(ms);
            let j = jitter(d);
            assert!(j >= d / 2 && j <= d, "{j:?} for {d:?}");
        }
    }
}
