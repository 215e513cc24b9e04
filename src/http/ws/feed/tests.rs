//! The feed's unit tests, driven by polling it as actix's dispatcher does.

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
    let (mut feed, _link) = Feed::new(vec![Bytes::from(snapshot.clone())], rx, slot(), no_resync());
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
            Ok((services, crate::store::OpenWindows::default()))
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

#[test]
fn a_filtered_client_gets_only_its_services_in_a_fresh_snapshot_and_in_events() {
    let services: Vec<Service> = (1..=5).map(service).collect();
    let (snapshots, _reads) = snapshots_of(services, None);
    let (tx, rx) = broadcast::channel(64);
    let (feed, _link) = Feed::new(tiny(), rx, slot(), snapshots);
    let filter = crate::http::ws::filter::Filter::parse("service_id=2,4").expect("filter");
    let mut feed = feed.with_filter(filter);
    drain(&mut feed);
    let deleted =
        |id: i64| EventText::from(format!(r#"{{"type":"service_deleted","service_id":{id}}}"#));
    tx.send(deleted(1)).ok();
    tx.send(Resync(1).text()).ok();
    tx.send(deleted(4)).ok();
    let (frames, ended) = drain(&mut feed);
    assert!(!ended);
    let got = messages(&frames);
    assert_eq!(got.len(), 3, "resync, snapshot, service 4's event: {got:?}");
    assert_eq!(got[0], serde_json::json!({"type": "resync"}));
    let ids: Vec<_> = got[1]["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(ids, [2, 4]);
    assert_eq!(got[2]["service_id"], 4);
}
