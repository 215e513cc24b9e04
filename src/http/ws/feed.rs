//! The server-to-client half of a WebSocket: the HTTP response body.
//!
//! actix-ws gives each connection a session task that pushes messages one
//! at a time through a 32-slot channel to the connection's dispatcher. At
//! 1,000 clients and 1,000 events a second that is a million task hand-offs
//! a second, and the last client on an HTTP worker got its events a third of
//! a second after the first. Here the dispatcher pulls instead: whenever it
//! can write, it polls the [`Feed`], which frames every event already
//! waiting in the shared ring into one buffer. Events never pass through the
//! session task, which only handles what the client sends, pings, and
//! decides when to close.
//!
//! Where the ring holds a [`Resync`] mark (its process lost events to a
//! broker reconnect), the feed sends `{"type":"resync"}` and a fresh
//! snapshot before any event after the mark, so a dashboard never keeps a
//! status whose change it missed. The snapshot is read after the mark, from
//! [`Snapshots`], which reads once for every client of the process.

use super::SNAPSHOT_FRAME_BYTES;
use super::filter::Filter;
use super::snapshot::{Load, RESYNC_MESSAGE, Snapshots, pages};
use crate::bus::{EventText, Resync};
use crate::http::log_budget::LogBudget;
use actix_http::ws::{CloseCode, CloseReason, OpCode, Parser};
use actix_web::web::{Bytes, BytesMut};
use futures_util::Stream;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, ReusableBoxFuture};

/// Most bytes handed to the dispatcher per poll, so one client's backlog
/// is written in a few large writes without holding up the HTTP worker's
/// other connections for long.
pub const CHUNK_BYTES: usize = 16 * 1024;
/// Control frames (pings, pongs, a close) the session may queue ahead of
/// the feed. A client that leaves this many unwritten is not reading.
pub const CONTROL_QUEUE: usize = 8;

/// A frame the session task asks the feed to send.
pub enum Control {
    /// A ping or pong, sent ahead of any waiting events.
    Frame(Bytes),
    /// A close frame; the body ends after it.
    Close(Bytes),
}

/// What the session task holds of its connection's feed.
pub struct Link {
    /// Frames to send ahead of events. Dropping the sender ends the body.
    pub control: mpsc::Sender<Control>,
    /// Cancelled when the body is dropped: the connection is gone.
    pub gone: CancellationToken,
    stall: Arc<Stall>,
}

impl Link {
    /// How long the dispatcher has held bytes from the feed without coming
    /// back for more. It comes back while its write buffer (32 KiB) has room,
    /// so this counts from when that buffer and the kernel's send buffer are
    /// full: how long the client's socket has since taken too little.
    pub fn stalled_for(&self) -> std::time::Duration {
        self.stall.stalled_for()
    }
}

/// Since when the feed has had output taken but not been polled again, in
/// milliseconds after `opened` plus one (0: not stalled).
struct Stall {
    opened: Instant,
    since_ms: AtomicU64,
}

impl Stall {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn stalled_for(&self) -> std::time::Duration {
        match self.since_ms.load(Ordering::Relaxed) {
            0 => std::time::Duration::ZERO,
            since => std::time::Duration::from_millis(self.now_ms().saturating_sub(since)),
        }
    }
}

/// Why a feed closed the connection by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client fell more than the ring behind.
    Lagged(u64),
    /// The event stream ended: the server is shutting down.
    Shutdown,
    /// Events were lost and no fresh snapshot could be read to make up for
    /// them; the client is better off reconnecting than staying stale.
    NoSnapshot,
}

/// What reading the ring came to.
enum Next {
    /// The ring is empty for now (the feed is woken by the next event).
    Wait,
    /// A chunk is full; the rest waits for the next poll.
    Full,
    /// The ring holds a mark: events before it may have been lost.
    Resync(Resync),
    /// The connection must close.
    End(Ended),
}

/// At most one line a second about snapshots that could not be read: every
/// client of the process meets the same failure at once.
static SNAPSHOT_ERRORS: LogBudget = LogBudget::new(1);

/// The response body: the snapshot, then every event, with the session's
/// control frames slipped in between, and a fresh snapshot where events
/// were lost.
pub struct Feed {
    control: mpsc::Receiver<Control>,
    /// Whole messages to send before the next event (snapshot pages, a
    /// resync), and how much of the first has been sent.
    outbox: VecDeque<Bytes>,
    sent: usize,
    /// The snapshot a resync waits for; no event is sent meanwhile.
    awaiting: Option<Load>,
    snapshots: Arc<Snapshots>,
    events: Ring,
    /// Which events (and which services of a fresh snapshot) the client
    /// asked for.
    filter: Filter,
    out: BytesMut,
    stall: Arc<Stall>,
    gone: CancellationToken,
    done: bool,
    /// The client's slot under `ws.max_clients`, held for as long as the
    /// connection is: a client that stops reading keeps it open (and its
    /// unsent bytes) after its session has given up on it.
    _slot: OwnedSemaphorePermit,
}

impl Feed {
    /// A feed that sends the `snapshot` messages, then the events from
    /// `events` (with a fresh snapshot from `snapshots` at each [`Resync`]
    /// mark), and the [`Link`] the session task steers it by.
    pub fn new(
        snapshot: Vec<Bytes>,
        events: broadcast::Receiver<EventText>,
        slot: OwnedSemaphorePermit,
        snapshots: Arc<Snapshots>,
    ) -> (Self, Link) {
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        let stall = Arc::new(Stall {
            opened: Instant::now(),
            since_ms: AtomicU64::new(0),
        });
        let gone = CancellationToken::new();
        let feed = Feed {
            control: rx,
            outbox: snapshot.into(),
            sent: 0,
            awaiting: None,
            snapshots,
            events: Ring {
                rx: Some(events),
                waiting: None,
            },
            filter: Filter::default(),
            out: BytesMut::new(),
            stall: Arc::clone(&stall),
            gone: gone.clone(),
            done: false,
            _slot: slot,
        };
        (
            feed,
            Link {
                control: tx,
                gone,
                stall,
            },
        )
    }

    /// Sends only what `filter` lets through: of the events, and of the
    /// services in a fresh snapshot after lost events. The first snapshot,
    /// given to [`Feed::new`], is already filtered.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Frames the queued messages, or as much as fits in a chunk. A message
    /// larger than [`SNAPSHOT_FRAME_BYTES`] goes as a text frame followed by
    /// continuations (a frame may end inside a UTF-8 character; the message
    /// as a whole is valid, which is what WebSocket requires). True once
    /// they are all out.
    fn frame_outbox(&mut self) -> bool {
        while let Some(whole) = self.outbox.front() {
            loop {
                let end = (self.sent + SNAPSHOT_FRAME_BYTES).min(whole.len());
                let op = if self.sent == 0 {
                    OpCode::Text
                } else {
                    OpCode::Continue
                };
                let last = end == whole.len();
                Parser::write_message(&mut self.out, &whole[self.sent..end], op, last, false);
                self.sent = end;
                if last {
                    break;
                }
                if self.out.len() >= CHUNK_BYTES {
                    return false;
                }
            }
            self.outbox.pop_front();
            self.sent = 0;
            if self.out.len() >= CHUNK_BYTES {
                return self.outbox.is_empty();
            }
        }
        true
    }

    /// Frames the events waiting in the ring, up to a chunk or a mark.
    fn frame_events(&mut self, cx: &mut Context<'_>) -> Next {
        while self.out.len() < CHUNK_BYTES {
            match self.events.poll_recv(cx) {
                Poll::Ready(Ok(text)) => {
                    if let Some(mark) = Resync::find(&text) {
                        return Next::Resync(mark);
                    }
                    if !self.filter.passes(&text) {
                        continue;
                    }
                    Parser::write_message(
                        &mut self.out,
                        text.as_bytes(),
                        OpCode::Text,
                        true,
                        false,
                    );
                }
                Poll::Ready(Err(RecvError::Lagged(missed))) => {
                    return Next::End(Ended::Lagged(missed));
                }
                Poll::Ready(Err(RecvError::Closed)) => return Next::End(Ended::Shutdown),
                Poll::Pending => return Next::Wait,
            }
        }
        Next::Full
    }

    /// Frames what is due, up to a chunk: queued messages first, then
    /// events. At a mark it queues the resync message and waits for a
    /// snapshot read after the mark; events after the mark stay in the ring
    /// until that snapshot is queued, so the client sees them after it.
    /// `Some` when the feed must close the connection instead.
    fn fill(&mut self, cx: &mut Context<'_>) -> Option<Ended> {
        loop {
            if !self.frame_outbox() {
                return None;
            }
            if let Some(load) = self.awaiting.as_mut() {
                match Pin::new(load).poll(cx) {
                    Poll::Pending => return None,
                    Poll::Ready(Ok(listing)) => {
                        self.awaiting = None;
                        if !self.filter.limits_services() {
                            self.outbox.extend(listing.pages.iter().cloned());
                            continue;
                        }
                        let shown: Vec<_> = listing
                            .services
                            .iter()
                            .filter(|s| self.filter.shows(s))
                            .cloned()
                            .collect();
                        match pages(&shown, &listing.open) {
                            Ok(own) => {
                                self.outbox.extend(own);
                                continue;
                            }
                            Err(error) => {
                                if let Some(suppressed) = SNAPSHOT_ERRORS.take() {
                                    tracing::warn!(%error, suppressed,
                                        "cannot encode the snapshot due after lost events; closing the WebSocket");
                                }
                                return Some(Ended::NoSnapshot);
                            }
                        }
                    }
                    Poll::Ready(Err(error)) => {
                        self.awaiting = None;
                        if let Some(suppressed) = SNAPSHOT_ERRORS.take() {
                            tracing::warn!(%error, suppressed,
                                "cannot read the snapshot due after lost events; closing the WebSocket");
                        }
                        return Some(Ended::NoSnapshot);
                    }
                }
            }
            match self.frame_events(cx) {
                Next::Wait | Next::Full => return None,
                Next::Resync(mark) => {
                    self.outbox
                        .push_back(Bytes::from_static(RESYNC_MESSAGE.as_bytes()));
                    self.awaiting = Some(self.snapshots.after(mark));
                }
                Next::End(ended) => return Some(ended),
            }
        }
    }

    fn close(&mut self, ended: Ended) {
        let (code, why) = match ended {
            Ended::Lagged(missed) => {
                tracing::info!(missed, "disconnecting a WebSocket client that fell behind");
                (CloseCode::Policy, "too slow: events were missed")
            }
            Ended::Shutdown => (CloseCode::Away, "server shutting down"),
            Ended::NoSnapshot => (
                CloseCode::Error,
                "events were lost and no snapshot could be read",
            ),
        };
        self.out.extend_from_slice(&close_frame(code, why));
        self.done = true;
    }
}

/// A client's position in the event ring, pollable. Events already waiting
/// are taken with `try_recv`; only when the ring is empty is a `recv`
/// future made (in a reused box) to be woken by the next event. Making one
/// per event, as tokio-stream's `BroadcastStream` does, was the largest
/// single cost of the feed at a million events a second.
struct Ring {
    /// Here while no `recv` is waiting; inside `waiting` while one is.
    rx: Option<broadcast::Receiver<EventText>>,
    waiting: Option<ReusableBoxFuture<'static, Received>>,
}

type Received = (Result<EventText, RecvError>, broadcast::Receiver<EventText>);

async fn recv_owned(mut rx: broadcast::Receiver<EventText>) -> Received {
    let result = rx.recv().await;
    (result, rx)
}

impl Ring {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<EventText, RecvError>> {
        if let Some(rx) = self.rx.as_mut() {
            match rx.try_recv() {
                Ok(text) => return Poll::Ready(Ok(text)),
                Err(TryRecvError::Lagged(missed)) => {
                    return Poll::Ready(Err(RecvError::Lagged(missed)));
                }
                Err(TryRecvError::Closed) => return Poll::Ready(Err(RecvError::Closed)),
                Err(TryRecvError::Empty) => {}
            }
        }
        if let Some(rx) = self.rx.take() {
            match self.waiting.as_mut() {
                Some(waiting) => waiting.set(recv_owned(rx)),
                None => self.waiting = Some(ReusableBoxFuture::new(recv_owned(rx))),
            }
        }
        let Some(waiting) = self.waiting.as_mut() else {
            // Unreachable: the receiver is always in one place or the other.
            return Poll::Ready(Err(RecvError::Closed));
        };
        let (result, rx) = std::task::ready!(waiting.poll(cx));
        self.rx = Some(rx);
        Poll::Ready(result)
    }
}

/// Encodes a control frame (ping, pong) for [`Control::Frame`].
pub fn control_frame(op: OpCode, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(payload.len() + 2);
    Parser::write_message(&mut buf, payload, op, true, false);
    buf.freeze()
}

/// Encodes a close frame, for [`Control::Close`] and the feed's own closes.
pub fn close_frame(code: CloseCode, why: &str) -> Bytes {
    let reason = CloseReason {
        code,
        description: Some(why.to_owned()),
    };
    let mut buf = BytesMut::new();
    Parser::write_close(&mut buf, Some(reason), false);
    buf.freeze()
}

impl Stream for Feed {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        this.stall.since_ms.store(0, Ordering::Relaxed);
        if !this.done {
            loop {
                match this.control.poll_recv(cx) {
                    Poll::Ready(Some(Control::Frame(frame))) => this.out.extend_from_slice(&frame),
                    Poll::Ready(Some(Control::Close(frame))) => {
                        this.out.extend_from_slice(&frame);
                        this.done = true;
                        break;
                    }
                    // The session has ended without a word: so does the body.
                    Poll::Ready(None) => {
                        this.done = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        if !this.done
            && let Some(ended) = this.fill(cx)
        {
            this.close(ended);
        }
        if this.out.is_empty() {
            return if this.done {
                Poll::Ready(None)
            } else {
                Poll::Pending
            };
        }
        this.stall
            .since_ms
            .store(this.stall.now_ms(), Ordering::Relaxed);
        Poll::Ready(Some(Ok(this.out.split().freeze())))
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.gone.cancel();
    }
}

#[cfg(test)]
mod tests;
