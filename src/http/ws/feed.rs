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
use super::snapshot::{Load, RESYNC_MESSAGE, Snapshots};
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
                    Poll::Ready(Ok(pages)) => {
                        self.awaiting = None;
                        self.outbox.extend(pages.iter().cloned());
                        continue;
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
mod tests {
    use super::*;
    use crate::domain::Service;
    use crate::http::ws::snapshot::{PAGE_SERVICES, tests::service};
    use futures_util::FutureExt;
    use std::sync::atomic::AtomicUsize;
    use std::task::Waker;
    use std::time::Duration;
    use tokio::sync::{Semaphore, oneshot};

    fn slot() -> OwnedSemaphorePermit {
        Arc::new(Semaphore::new(1))
            .try_acquire_owned()
            .expect("a fresh semaphore has a permit")
    }

    /// A snapshot of one tiny message.
    fn tiny() -> Vec<Bytes> {
        vec![Bytes::from_static(b"{}")]
    }

    /// Snapshots for a feed whose ring holds no mark.
    fn no_resync() -> Arc<Snapshots> {
        Arc::new(Snapshots::new(Box::new(|| {
            async { Err("no snapshot expected".to_owned()) }.boxed()
        })))
    }

    /// Polls the feed once, as the dispatcher does when it can write.
    fn poll(feed: &mut Feed) -> Poll<Option<Bytes>> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(feed)
            .poll_next(&mut cx)
            .map(|item| item.map(|chunk| chunk.unwrap_or_else(|e| match e {})))
    }

    /// Everything the feed gives before it would wait, as a client sees it:
    /// (fin, opcode, payload) per frame, and whether the body ended.
    fn drain(feed: &mut Feed) -> (Vec<(bool, OpCode, Vec<u8>)>, bool) {
        let mut wire = BytesMut::new();
        let ended = loop {
            match poll(feed) {
                Poll::Ready(Some(chunk)) => wire.extend_from_slice(&chunk),
                Poll::Ready(None) => break true,
                Poll::Pending => break false,
            }
        };
        let mut frames = Vec::new();
        while let Ok(Some((fin, op, payload))) = Parser::parse(&mut wire, false, usize::MAX) {
            frames.push((fin, op, payload.map(|p| p.to_vec()).unwrap_or_default()));
        }
        assert!(wire.is_empty(), "a partial frame was left over");
        (frames, ended)
    }

    /// A feed on a ring of `ring` events, its tiny snapshot already sent.
    fn started(ring: usize) -> (broadcast::Sender<EventText>, Feed, Link) {
        let (tx, rx) = broadcast::channel(ring);
        let (mut feed, link) = Feed::new(tiny(), rx, slot(), no_resync());
        drain(&mut feed);
        (tx, feed, link)
    }

    fn event(n: usize) -> EventText {
        EventText::from(format!("{{\"type\":\"check\",\"n\":{n}}}"))
    }

    #[test]
    fn a_large_snapshot_goes_as_one_fragmented_message_before_any_event() {
        let (tx, rx) = broadcast::channel(16);
        let snapshot = format!("{{\"services\":\"{}\"}}", "s".repeat(3 * CHUNK_BYTES));
        let (mut feed, _link) =
            Feed::new(vec![Bytes::from(snapshot.clone())], rx, slot(), no_resync());
        tx.send(event(1)).ok();
        let (frames, ended) = drain(&mut feed);
        assert!(!ended);
        let (parts, last) = frames.split_at(frames.len() - 1);
        assert!(parts.len() > 2);
        let mut whole = Vec::new();
        for (i, (fin, op, payload)) in parts.iter().enumerate() {
            let want = if i == 0 {
                OpCode::Text
            } else {
                OpCode::Continue
            };
            assert_eq!((*op, *fin), (want, i == parts.len() - 1), "frame {i}");
            assert!(payload.len() <= SNAPSHOT_FRAME_BYTES);
            whole.extend_from_slice(payload);
        }
        assert!(
            whole == snapshot.as_bytes(),
            "the snapshot came back different"
        );
        assert_eq!(last, &[(true, OpCode::Text, event(1).as_bytes().to_vec())]);
    }

    #[test]
    fn waiting_events_arrive_in_order_each_as_its_own_message() {
        let (tx, mut feed, _link) = started(4096);
        for n in 0..2000 {
            tx.send(event(n)).ok();
        }
        // Chunks are capped, so it takes several polls; none is lost.
        let mut chunks = 0;
        let mut wire = BytesMut::new();
        while let Poll::Ready(Some(chunk)) = poll(&mut feed) {
            assert!(
                chunk.len() < CHUNK_BYTES + 64,
                "a chunk of {} bytes",
                chunk.len()
            );
            wire.extend_from_slice(&chunk);
            chunks += 1;
        }
        assert!(chunks > 1);
        for n in 0..2000 {
            let frame = Parser::parse(&mut wire, false, usize::MAX);
            let Ok(Some((true, OpCode::Text, Some(payload)))) = frame else {
                panic!("event {n}: {frame:?}");
            };
            assert_eq!(&payload[..], event(n).as_bytes());
        }
        assert!(wire.is_empty());
        // Once drained it waits, then wakes for the next event.
        assert!(poll(&mut feed).is_pending());
        tx.send(event(2000)).ok();
        assert_eq!(drain(&mut feed).0.len(), 1);
    }

    #[test]
    fn a_client_that_falls_a_ring_behind_gets_a_policy_close_and_the_body_ends() {
        let (tx, mut feed, link) = started(4);
        for n in 0..10 {
            tx.send(event(n)).ok();
        }
        let (frames, ended) = drain(&mut feed);
        assert!(ended);
        assert_eq!(frames.len(), 1, "only the close frame: {frames:?}");
        let (_, op, payload) = &frames[0];
        assert_eq!(*op, OpCode::Close);
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1008);
        assert!(String::from_utf8_lossy(&payload[2..]).contains("too slow"));
        drop(feed);
        assert!(
            link.gone.is_cancelled(),
            "the session is told the connection is gone"
        );
    }

    #[test]
    fn shutdown_closes_with_going_away() {
        let (tx, mut feed, _link) = started(4);
        drop(tx);
        let (frames, ended) = drain(&mut feed);
        assert!(ended);
        let (_, op, payload) = &frames[0];
        assert_eq!(*op, OpCode::Close);
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    }

    #[test]
    fn control_frames_jump_the_queue_and_a_close_ends_the_body() {
        let (tx, mut feed, link) = started(16);
        tx.send(event(1)).ok();
        let ping = control_frame(OpCode::Ping, b"p");
        assert!(link.control.try_send(Control::Frame(ping)).is_ok());
        let (frames, _) = drain(&mut feed);
        assert_eq!(frames[0], (true, OpCode::Ping, b"p".to_vec()));
        assert_eq!(frames[1].1, OpCode::Text);
        let close = close_frame(CloseCode::Normal, "bye");
        assert!(link.control.try_send(Control::Close(close)).is_ok());
        tx.send(event(2)).ok();
        let (frames, ended) = drain(&mut feed);
        assert!(ended);
        assert_eq!(frames.len(), 1, "nothing after the close: {frames:?}");
        assert_eq!(frames[0].1, OpCode::Close);
    }

    #[test]
    fn a_client_holds_its_slot_until_the_connection_is_gone() {
        let slots = Arc::new(Semaphore::new(1));
        let held = Arc::clone(&slots).try_acquire_owned().expect("a permit");
        let (_tx, rx) = broadcast::channel(16);
        let (feed, link) = Feed::new(tiny(), rx, held, no_resync());
        // The session giving up does not free the slot: the connection, and
        // whatever it has not sent, is still there.
        drop(link);
        assert_eq!(slots.available_permits(), 0);
        drop(feed);
        assert_eq!(slots.available_permits(), 1);
    }

    #[test]
    fn the_body_ends_when_its_session_is_gone() {
        let (_tx, mut feed, link) = started(16);
        drop(link);
        assert!(matches!(poll(&mut feed), Poll::Ready(None)));
    }

    #[test]
    fn a_stall_is_output_taken_and_not_come_back_for() {
        let pause = Duration::from_millis(30);
        let (tx, rx) = broadcast::channel(16);
        let (mut feed, link) = Feed::new(tiny(), rx, slot(), no_resync());
        // Drained to Pending: waiting for events is not a stall.
        drain(&mut feed);
        std::thread::sleep(pause);
        assert_eq!(link.stalled_for(), Duration::ZERO);
        // Handed a chunk the dispatcher does not come back for: a stall, as
        // long as it has been since.
        tx.send(event(1)).ok();
        assert!(matches!(poll(&mut feed), Poll::Ready(Some(_))));
        std::thread::sleep(pause);
        assert!(link.stalled_for() >= pause);
        // Polled again: the socket took it.
        assert!(poll(&mut feed).is_pending());
        assert_eq!(link.stalled_for(), Duration::ZERO);
    }

    /// The messages a client reads from `frames`: fragments joined.
    fn messages(frames: &[(bool, OpCode, Vec<u8>)]) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut part = Vec::new();
        for (fin, op, payload) in frames {
            assert!(matches!(op, OpCode::Text | OpCode::Continue), "{op:?}");
            part.extend_from_slice(payload);
            if *fin {
                let text = std::mem::take(&mut part);
                out.push(serde_json::from_slice(&text).unwrap_or_else(|e| panic!("not JSON: {e}")));
            }
        }
        out
    }

    /// Snapshots of `services`, counting reads, each read held until
    /// `release` is sent when there is one.
    fn snapshots_of(
        services: Vec<Service>,
        release: Option<oneshot::Receiver<()>>,
    ) -> (Arc<Snapshots>, Arc<AtomicUsize>) {
        let reads = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&reads);
        let release = std::sync::Mutex::new(release);
        let snapshots = Snapshots::new(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let services = services.clone();
            let gate = release.lock().ok().and_then(|mut r| r.take());
            async move {
                if let Some(gate) = gate {
                    let _ = gate.await;
                }
                Ok(services)
            }
            .boxed()
        }));
        (Arc::new(snapshots), reads)
    }

    fn check(n: usize) -> serde_json::Value {
        serde_json::json!({"type": "check", "n": n})
    }

    #[test]
    fn a_mark_becomes_resync_then_a_fresh_snapshot_in_pages_before_the_events_after_it() {
        let services: Vec<Service> = (1..=PAGE_SERVICES as i64 + 5).map(service).collect();
        let (snapshots, reads) = snapshots_of(services, None);
        let (tx, rx) = broadcast::channel(64);
        let (mut feed, _link) = Feed::new(tiny(), rx, slot(), snapshots);
        drain(&mut feed);
        tx.send(event(1)).ok();
        tx.send(Resync(1).text()).ok();
        tx.send(event(2)).ok();
        let (frames, ended) = drain(&mut feed);
        assert!(!ended);
        let got = messages(&frames);
        assert_eq!(got.len(), 5, "event, resync, two pages, event: {got:?}");
        assert_eq!(got[0], check(1));
        assert_eq!(
            got[1],
            serde_json::json!({"type": "resync"}),
            "the mark's number stays inside"
        );
        for (page, (len, last)) in got[2..4].iter().zip([(PAGE_SERVICES, false), (5, true)]) {
            assert_eq!(page["type"], "snapshot");
            assert_eq!(page["services"].as_array().map(Vec::len), Some(len));
            assert_eq!(page["last"], last);
        }
        assert_eq!(got[2]["services"][0]["last_status"], "UP");
        assert_eq!(got[4], check(2));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn no_event_after_a_mark_goes_out_before_its_snapshot_is_read() {
        let (release, gate) = oneshot::channel();
        let (snapshots, _reads) = snapshots_of(vec![service(8)], Some(gate));
        let (tx, rx) = broadcast::channel(64);
        let (mut feed, _link) = Feed::new(tiny(), rx, slot(), snapshots);
        drain(&mut feed);
        tx.send(Resync(1).text()).ok();
        tx.send(event(1)).ok();
        // The resync goes at once; the event waits for the snapshot.
        let (frames, ended) = drain(&mut feed);
        assert!(!ended);
        assert_eq!(messages(&frames), [serde_json::json!({"type": "resync"})]);
        assert!(poll(&mut feed).is_pending());
        release.send(()).ok();
        let got = messages(&drain(&mut feed).0);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0]["services"][0]["id"], 8);
        assert_eq!(got[0]["last"], true);
        assert_eq!(got[1], check(1));
    }

    #[test]
    fn every_client_at_a_mark_shares_one_read() {
        let (release, gate) = oneshot::channel();
        let (snapshots, reads) = snapshots_of(vec![service(1)], Some(gate));
        let (tx, _) = broadcast::channel(64);
        let mut feeds: Vec<(Feed, Link)> = (0..10)
            .map(|_| Feed::new(tiny(), tx.subscribe(), slot(), Arc::clone(&snapshots)))
            .collect();
        for (feed, _) in &mut feeds {
            drain(feed);
        }
        tx.send(Resync(3).text()).ok();
        // Every feed meets the mark while the one read is under way.
        for (feed, _) in &mut feeds {
            assert_eq!(
                messages(&drain(feed).0),
                [serde_json::json!({"type": "resync"})]
            );
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        release.send(()).ok();
        for (feed, _) in &mut feeds {
            let got = messages(&drain(feed).0);
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0]["last"], true);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_snapshot_that_cannot_be_read_closes_with_1011() {
        let (tx, mut feed, _link) = started(16);
        tx.send(Resync(1).text()).ok();
        tx.send(event(1)).ok();
        let (frames, ended) = drain(&mut feed);
        assert!(ended);
        assert_eq!(frames.len(), 2, "the resync, then the close: {frames:?}");
        let (_, op, payload) = &frames[1];
        assert_eq!(*op, OpCode::Close);
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1011);
    }
}
