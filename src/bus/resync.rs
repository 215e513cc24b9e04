//! The mark a bus leaves in the event stream where events may have been
//! lost, so that whoever forwards the stream (the WebSocket feed) can send
//! a fresh snapshot at exactly that place.
//!
//! A broker bus loses the events published while its connection is down;
//! when its events subscription is bound again it puts a [`Resync`] in its
//! local ring, ahead of every event of the new subscription. A reader that
//! meets it knows the events before it are complete and the events after it
//! are all there will be, so a snapshot read after meeting it, followed by
//! the events after it, leaves no status stale. The in-process bus never
//! loses events (a subscriber that falls a ring behind is told by
//! `RecvError::Lagged` instead), so it never puts one.
//!
//! The mark travels as the ring's own item type, an [`EventText`]: every
//! subscriber keeps one `broadcast::Receiver<EventText>` and nothing in the
//! hot path changes for events. It is never sent to a client as is.

use super::EventText;

/// A point in the event stream where events may have been lost. The number
/// counts the re-binds of this process's events subscription, from 1, so
/// readers that meet the same mark can share one snapshot read after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resync(pub u64);

/// How a mark's text starts; no event starts so (events are tagged
/// `check`, `status_change`, ...).
const PREFIX: &str = r#"{"type":"resync","generation":"#;

impl Resync {
    /// The mark as it goes into the ring.
    pub fn text(self) -> EventText {
        EventText::from(format!("{PREFIX}{}}}", self.0))
    }

    /// The mark `text` is, or `None` for an event. Cheap enough for every
    /// event: an event's text differs from the mark's by its tenth byte.
    pub fn find(text: &str) -> Option<Resync> {
        let n = text.strip_prefix(PREFIX)?.strip_suffix('}')?;
        n.parse().ok().map(Resync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_found_and_an_event_is_not() {
        let mark = Resync(7).text();
        assert_eq!(Resync::find(&mark), Some(Resync(7)));
        assert_eq!(Resync::find(r#"{"type":"resync"}"#), None);
        assert_eq!(Resync::find(r#"{"type":"check","service_id":1}"#), None);
        assert_eq!(Resync::find(r#"{"type":"resync","generation":x}"#), None);
    }
}
