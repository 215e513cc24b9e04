//! The snapshot: every service, as `snapshot` messages of at most
//! [`PAGE_SERVICES`] services each, the last with `"last": true`. A client
//! gets one when it connects, and again after its API process lost events
//! (a broker reconnect), so no dashboard keeps showing a stale status.
//!
//! Pages keep each message under a client's default 1 MiB limit (about 250
//! bytes a service) however many services there are. After a reconnect
//! every client of the process needs a snapshot at once; [`Snapshots`] reads
//! the store once for all of them. Clients that connect together share
//! reads too ([`Snapshots::fresh`]): one read at a time, each for every
//! client that subscribed to the events before it started, so a thousand
//! dashboards opening at once cost a few reads, not a thousand.

use crate::bus::Resync;
use crate::domain::Service;
#[cfg(test)]
use crate::domain::ServiceId;
use crate::http::windows::WithMaintenance;
use crate::store::OpenWindows;
use actix_web::web::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared, WeakShared};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Most services in one `snapshot` message.
pub const PAGE_SERVICES: usize = 1000;

/// The message a client gets where its process lost events, right before
/// the fresh snapshot.
pub const RESYNC_MESSAGE: &str = r#"{"type":"resync"}"#;

/// One `snapshot` message.
#[derive(serde::Serialize)]
struct Page<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    services: Vec<WithMaintenance<&'a Service>>,
    last: bool,
}

/// The snapshot of `services` as whole messages (JSON text), in order, each
/// service with `in_maintenance` as the REST API shows it (from `open`). No
/// services is still one message, so a client always sees `"last": true`.
pub fn pages(services: &[Service], open: &OpenWindows) -> Result<Vec<Bytes>, serde_json::Error> {
    let refs: Vec<&Service> = services.iter().collect();
    pages_of(&refs, open)
}

/// [`pages`] of some services (a filtered client's).
pub fn pages_of(
    services: &[&Service],
    open: &OpenWindows,
) -> Result<Vec<Bytes>, serde_json::Error> {
    let count = services.len().div_ceil(PAGE_SERVICES).max(1);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let start = i * PAGE_SERVICES;
        let end = (start + PAGE_SERVICES).min(services.len());
        let page = Page {
            kind: "snapshot",
            services: services[start..end]
                .iter()
                .map(|service| WithMaintenance {
                    service: *service,
                    in_maintenance: open.covers(service.id),
                })
                .collect(),
            last: i + 1 == count,
        };
        out.push(Bytes::from(serde_json::to_vec(&page)?));
    }
    Ok(out)
}

/// A snapshot's messages, shared by every client that sends it.
pub type Pages = Arc<[Bytes]>;

/// A snapshot read after a mark: its messages for every client that gets
/// every service, and what they were made from, for a client limited to
/// some services to make its own.
pub struct Listing {
    /// Every service, in id order.
    pub services: Vec<Service>,
    /// The maintenance windows open when they were read.
    pub open: OpenWindows,
    /// The messages of every service.
    pub pages: Pages,
}

/// Why a snapshot could not be made (the store's error, as text: every
/// waiting client gets a copy).
pub type LoadError = Arc<str>;

/// Reading a snapshot.
pub type Read = BoxFuture<'static, Result<Arc<Listing>, LoadError>>;

/// A snapshot being read, awaited by every client that needs it.
pub type Load = Shared<Read>;

/// Every service, in id order, and the maintenance windows open as they
/// were read.
pub type Listed = (Vec<Service>, OpenWindows);

/// Reads every service, in id order, and the open maintenance windows.
pub type ListServices = Box<dyn Fn() -> BoxFuture<'static, Result<Listed, String>> + Send + Sync>;

/// Fresh snapshots after a [`Resync`] mark, one store read shared by every
/// client of this process that meets the mark; and for clients that
/// connect, reads shared by all that subscribed before each started.
pub struct Snapshots {
    list: ListServices,
    /// The latest read and the mark it was started after. Weak, so the
    /// pages are freed once the last client has sent them.
    latest: Mutex<Option<(Resync, WeakShared<Read>)>>,
    /// The next read for connecting clients, and whether it has started.
    /// Weak, like `latest`.
    next: Mutex<Option<(Arc<AtomicBool>, WeakShared<Read>)>>,
}

impl Snapshots {
    /// Snapshots read through `list`.
    pub fn new(list: ListServices) -> Self {
        Self {
            list,
            latest: Mutex::new(None),
            next: Mutex::new(None),
        }
    }

    /// A snapshot for a client that has just subscribed to the events: a
    /// read that starts after this call. Clients share the next read until
    /// it starts; it starts once the read before it is done, so a burst of
    /// connections makes one read at a time, each for everyone waiting.
    pub fn fresh(&self) -> Load {
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let pending = next
            .as_ref()
            .and_then(|(started, weak)| Some((Arc::clone(started), weak.upgrade()?)));
        if let Some((started, load)) = &pending
            && !started.load(Ordering::Acquire)
        {
            return load.clone();
        }
        // None waiting, or it has started: a new one after it.
        let before = pending.map(|(_, load)| load);
        let started = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&started);
        let read = (self.list)();
        let load = async move {
            if let Some(before) = before {
                // Only its end matters: one read at a time.
                let _ = before.await;
            }
            flag.store(true, Ordering::Release);
            listing(read.await).await
        }
        .boxed()
        .shared();
        *next = load.downgrade().map(|weak| (started, weak));
        load
    }

    /// Snapshots of `store`.
    pub fn of_store(store: crate::store::Store) -> Self {
        Self::new(Box::new(move || {
            let store = store.clone();
            async move {
                let services = store.list_services().await.map_err(|e| e.to_string())?;
                let open = store
                    .open_windows(crate::domain::time::now_ms())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((services, open))
            }
            .boxed()
        }))
    }

    /// A snapshot read after `mark` entered the event ring: the one being
    /// read or just read for this mark or a later one, if a client is still
    /// using it, else a new read. A read started for an earlier mark may
    /// predate this one's lost events, so it is never reused for it.
    pub fn after(&self, mark: Resync) -> Load {
        let mut latest = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((read_after, weak)) = latest.as_ref()
            && *read_after >= mark
            && let Some(load) = weak.upgrade()
        {
            return load;
        }
        let read = (self.list)();
        let load = async move { listing(read.await).await }.boxed().shared();
        *latest = load.downgrade().map(|weak| (mark, weak));
        load
    }
}

/// The listing of what a read returned.
async fn listing(read: Result<Listed, String>) -> Result<Arc<Listing>, LoadError> {
    let (services, open) = read.map_err(LoadError::from)?;
    let pages = pages(&services, &open).map_err(|e| LoadError::from(e.to_string()))?;
    Ok(Arc::new(Listing {
        services,
        open,
        pages: Pages::from(pages),
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::Status;
    use crate::domain::time::Seconds;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub(crate) fn service(id: i64) -> Service {
        Service {
            id: ServiceId(id),
            name: format!("s{id}"),
            url: "http://127.0.0.1:1/".into(),
            interval: Seconds(30),
            timeout: Seconds(10),
            timeout_follows_interval: false,
            expected_statuses: None,
            failure_threshold: 1,
            success_threshold: 1,
            retry_interval: Seconds(30),
            retry_interval_set: None,
            channels: Vec::new(),
            tags: Vec::new(),
            check: Default::default(),
            last_status: Status::Up,
            last_check: None,
            last_latency_ms: None,
            paused: false,
            created_at: 0,
            updated_at: 0,
            last_scheduled_at: None,
            version: 0,
            regions: Vec::new(),
            quorum: None,
        }
    }

    fn json(page: &Bytes) -> serde_json::Value {
        serde_json::from_slice(page).unwrap_or_else(|e| panic!("not JSON: {e}"))
    }

    #[test]
    fn pages_hold_at_most_a_thousand_services_and_only_the_last_says_so() {
        let services: Vec<Service> = (1..=2500).map(service).collect();
        let pages = pages(&services, &OpenWindows::default()).expect("serialisable");
        let sizes: Vec<usize> = pages
            .iter()
            .map(|p| json(p)["services"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let lasts: Vec<bool> = pages.iter().map(|p| json(p)["last"] == true).collect();
        assert_eq!(lasts, [false, false, true]);
        assert!(pages.iter().all(|p| json(p)["type"] == "snapshot"));
        let ids: Vec<i64> = pages
            .iter()
            .flat_map(|p| json(p)["services"].as_array().cloned().unwrap_or_default())
            .filter_map(|s| s["id"].as_i64())
            .collect();
        assert_eq!(
            ids,
            (1..=2500).collect::<Vec<_>>(),
            "every service once, in order"
        );
    }

    #[test]
    fn no_services_is_one_last_empty_page() {
        let pages = pages(&[], &OpenWindows::default()).expect("serialisable");
        assert_eq!(pages.len(), 1);
        assert_eq!(
            json(&pages[0]),
            serde_json::json!({"type": "snapshot", "services": [], "last": true})
        );
    }

    /// Snapshots whose reads are counted.
    fn counted() -> (Snapshots, Arc<AtomicUsize>) {
        let reads = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&reads);
        let snapshots = Snapshots::new(Box::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) as i64 + 1;
            async move { Ok((vec![service(n)], OpenWindows::default())) }.boxed()
        }));
        (snapshots, reads)
    }

    #[test]
    fn clients_at_one_mark_share_one_read_and_a_later_mark_reads_again() {
        let (snapshots, reads) = counted();
        let a = snapshots.after(Resync(1));
        let b = snapshots.after(Resync(1));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        let a = a.now_or_never().expect("ready").expect("read");
        let b = b.now_or_never().expect("ready").expect("read");
        assert!(Arc::ptr_eq(&a, &b), "the same pages");
        // A later mark may have lost events the first read saw as current.
        let c = snapshots.after(Resync(2));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // A client still at the first mark may use the later read.
        let d = snapshots.after(Resync(1));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        drop((c, d));
        // Once nobody holds a read it is gone: a late client reads anew.
        let _e = snapshots.after(Resync(2));
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_failed_read_reaches_every_waiting_client() {
        let snapshots = Snapshots::new(Box::new(|| async { Err("store down".to_owned()) }.boxed()));
        let a = snapshots.after(Resync(1));
        let b = snapshots.after(Resync(1));
        for load in [a, b] {
            let failed = load.now_or_never().expect("ready");
            assert_eq!(failed.err().as_deref(), Some("store down"));
        }
    }

    /// Snapshots whose reads wait for a permit of `gate` each, counting
    /// the reads that started.
    fn gated() -> (Snapshots, Arc<AtomicUsize>, Arc<tokio::sync::Semaphore>) {
        let started = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (s, g) = (Arc::clone(&started), Arc::clone(&gate));
        let snapshots = Snapshots::new(Box::new(move || {
            let (started, gate) = (Arc::clone(&s), Arc::clone(&g));
            async move {
                let n = started.fetch_add(1, Ordering::SeqCst) as i64 + 1;
                let permit = gate.acquire().await.map_err(|e| e.to_string())?;
                permit.forget();
                Ok((vec![service(n)], OpenWindows::default()))
            }
            .boxed()
        }));
        (snapshots, started, gate)
    }

    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn clients_connecting_together_share_reads_one_at_a_time() {
        let (snapshots, started, gate) = gated();
        // Two clients before any read started: one read for both.
        let a = tokio::spawn(snapshots.fresh());
        let b = tokio::spawn(snapshots.fresh());
        until("the first read starts", || {
            started.load(Ordering::SeqCst) == 1
        })
        .await;
        // Subscribed after it started: that read may miss their events, so
        // they share the next one, which waits for the first to end.
        let c = tokio::spawn(snapshots.fresh());
        let d = tokio::spawn(snapshots.fresh());
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(started.load(Ordering::SeqCst), 1, "two reads at once");
        gate.add_permits(1);
        let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
        assert!(Arc::ptr_eq(&a, &b), "the first two share a read");
        assert_eq!(a.services[0].id, ServiceId(1));
        until("the second read starts", || {
            started.load(Ordering::SeqCst) == 2
        })
        .await;
        gate.add_permits(1);
        let (c, d) = (c.await.unwrap().unwrap(), d.await.unwrap().unwrap());
        assert!(Arc::ptr_eq(&c, &d), "the next two share the second read");
        assert_eq!(c.services[0].id, ServiceId(2));
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "two reads for four clients"
        );
        // Nobody waiting, nothing held: the next client reads anew.
        drop((a, b, c, d));
        gate.add_permits(1);
        let e = snapshots.fresh().await.unwrap();
        assert_eq!(e.services[0].id, ServiceId(3));
    }
}
