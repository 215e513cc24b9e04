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

use super::SNAPSHOT_FRAME_BYTES;
use crate::bus::EventText;
use actix_http::ws::{CloseCode, CloseReason, OpCode, Parser};
use actix_web::web::{Bytes, BytesMut};
use futures_util::Stream;
use std::convert::Infallible;
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
}

/// The response body: the snapshot, then every event, with the session's
/// control frames slipped in between.
pub struct Feed {
    control: mpsc::Receiver<Control>,
    /// The snapshot and how much of it has been sent.
    snapshot: Option<(Bytes, usize)>,
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
    /// A feed that sends `snapshot` as one message, then the events from
    /// `events`, and the [`Link`] the session task steers it by.
    pub fn new(
        snapshot: String,
        events: broadcast::Receiver<EventText>,
        slot: OwnedSemaphorePermit,
    ) -> (Self, Link) {
        let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
        let stall = Arc::new(Stall {
            opened: Instant::now(),
            since_ms: AtomicU64::new(0),
        });
        let gone = CancellationToken::new();
        let feed = Feed {
            control: rx,
            snapshot: Some((Bytes::from(snapshot), 0)),
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

    /// Frames the rest of the snapshot, or as much as fits in a chunk. A
    /// snapshot larger than [`SNAPSHOT_FRAME_BYTES`] goes as a text frame
    /// followed by continuations (a frame may end inside a UTF-8 character;
    /// the message as a whole is valid, which is what WebSocket requires).
    /// True once it is all out.
    fn frame_snapshot(&mut self) -> bool {
        let Some((whole, sent)) = self.snapshot.as_mut() else {
            return true;
        };
        loop {
            let end = (*sent + SNAPSHOT_FRAME_BYTES).min(whole.len());
            let op = if *sent == 0 {
                OpCode::Text
            } else {
                OpCode::Continue
            };
            let last = end == whole.len();
            Parser::write_message(&mut self.out, &whole[*sent..end], op, last, false);
            *sent = end;
            if last {
                self.snapshot = None;
                return true;
            }
            if self.out.len() >= CHUNK_BYTES {
                return false;
            }
        }
    }

    /// Frames the events waiting in the ring, up to a chunk. `Some` when the
    /// feed must close the connection instead.
    fn frame_events(&mut self, cx: &mut Context<'_>) -> Option<Ended> {
        while self.out.len() < CHUNK_BYTES {
            match self.events.poll_recv(cx) {
                Poll::Ready(Ok(text)) => {
                    Parser::write_message(
                        &mut self.out,
                        text.as_bytes(),
                        OpCode::Text,
                        true,
                        false,
                    );
                }
                Poll::Ready(Err(RecvError::Lagged(missed))) => return Some(Ended::Lagged(missed)),
                Poll::Ready(Err(RecvError::Closed)) => return Some(Ended::Shutdown),
                Poll::Pending => break,
            }
        }
        None
    }

    fn close(&mut self, ended: Ended) {
        let (code, why) = match ended {
            Ended::Lagged(missed) => {
                tracing::info!(missed, "disconnecting a WebSocket client that fell behind");
                (CloseCode::Policy, "too slow: events were missed")
            }
            Ended::Shutdown => (CloseCode::Away, "server shutting down"),
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
            && this.frame_snapshot()
            && let Some(ended) = this.frame_events(cx)
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
    use std::task::Waker;
    use std::time::Duration;
    use tokio::sync::Semaphore;

    fn slot() -> OwnedSemaphorePermit {
        Arc::new(Semaphore::new(1))
            .try_acquire_owned()
            .expect("a fresh semaphore has a permit")
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
        let (mut feed, link) = Feed::new("{}".into(), rx, slot());
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
        let (mut feed, _link) = Feed::new(snapshot.clone(), rx, slot());
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
        let (feed, link) = Feed::new("{}".into(), rx, held);
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
        let (mut feed, link) = Feed::new("{}".into(), rx, slot());
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
}
