//! `--kind push`: the benchmark's pinger. Each `push://` service is pinged
//! at its interval with `GET /push/{token}` (the token from `push_url` in
//! the 201 answer to its registration), as a cron job would report in; the
//! pings are spread over the interval like the registrations, so the API
//! sees the steady N/S pings a second the run is named for.
//!
//! One driver task hands each due ping to [`WORKERS`] tasks on keep-alive
//! connections to the API; a ping that waits for a free worker goes late,
//! and `pinger_late_*` says by how much (the pinger's own lateness, not
//! healthmon's). Figures (the `push` object):
//! - `pings_due` in the window (by due time), `pings_sent`, `pings_ok` (a
//!   2xx answer), `pings_refused` by status (`0`: no answer at all);
//! - `answer_*_ms`: the API's answer time for the window's pings;
//! - the run's `checks`, `checks_up` are the logs stored with `checked_at`
//!   in the window (a push log is written when its ping arrives), compared
//!   with `pings_ok` by the sanity check, and `cpu_s_per_1k_checks` is the
//!   CPU per 1,000 pings recorded.

use super::measure::percentile;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Pings in flight at most.
pub const WORKERS: usize = 64;

/// The URL to ping for a service, from its 201 answer: the path of its
/// `push_url` on the API's actual address (a configured public base URL
/// would not be this run's port).
pub fn ping_url(api: &str, created: &Value) -> Result<String, String> {
    let given = created["push_url"]
        .as_str()
        .ok_or_else(|| format!("POST /services: no push_url in the answer: {created}"))?;
    let at = given
        .find("/push/")
        .ok_or_else(|| format!("push_url {given:?} has no /push/ path"))?;
    Ok(format!("http://{api}{}", &given[at..]))
}

/// One ping: when it was due and sent, how long its answer took, and the
/// answer's status (0: the request failed).
#[derive(Clone, Copy, Debug)]
struct Ping {
    due: i64,
    sent: i64,
    answer_ms: i64,
    status: u16,
}

/// Every ping the pinger made.
#[derive(Default)]
pub struct Pings {
    list: Mutex<Vec<Ping>>,
}

impl Pings {
    fn in_window(&self, from: i64, to: i64) -> Vec<Ping> {
        self.list
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|p| (from..to).contains(&p.sent))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pings sent in [from, to) and answered 2xx.
    pub fn ok_in(&self, from: i64, to: i64) -> i64 {
        self.in_window(from, to)
            .iter()
            .filter(|p| (200..300).contains(&p.status))
            .count() as i64
    }

    /// Pings due in [from, to) (sent or not).
    pub fn due_in(&self, from: i64, to: i64, services: usize, interval_ms: i64) -> f64 {
        // Every service is pinged once an interval: the schedule, not what
        // the pinger managed, is what was due.
        services as f64 * (to - from) as f64 / interval_ms as f64
    }

    /// The `push` object for the window [from, to).
    pub fn figures(&self, from: i64, to: i64, services: usize, interval_ms: i64) -> Value {
        let pings = self.in_window(from, to);
        let mut refused: BTreeMap<String, i64> = BTreeMap::new();
        for p in pings.iter().filter(|p| !(200..300).contains(&p.status)) {
            *refused.entry(p.status.to_string()).or_default() += 1;
        }
        let mut answers: Vec<i64> = pings.iter().map(|p| p.answer_ms).collect();
        answers.sort_unstable();
        let mut late: Vec<i64> = pings.iter().map(|p| p.sent - p.due).collect();
        late.sort_unstable();
        let ok = self.ok_in(from, to);
        println!(
            "[push] window: {} pings sent, {ok} answered 2xx, refused {refused:?}; answer p50 {} ms, \
             p99 {} ms, max {} ms; the pinger sent them p99 {} ms after due",
            pings.len(),
            percentile(&answers, 0.5),
            percentile(&answers, 0.99),
            answers.last().copied().unwrap_or(0),
            percentile(&late, 0.99),
        );
        json!({
            "pings_due": self.due_in(from, to, services, interval_ms).round() as i64,
            "pings_sent": pings.len(),
            "pings_ok": ok,
            "pings_refused": refused,
            "answer_p50_ms": percentile(&answers, 0.5),
            "answer_p99_ms": percentile(&answers, 0.99),
            "answer_max_ms": answers.last().copied().unwrap_or(0),
            "pinger_late_p50_ms": percentile(&late, 0.5),
            "pinger_late_p99_ms": percentile(&late, 0.99),
            "workers": WORKERS,
        })
    }
}

/// A running pinger.
pub struct Pinger {
    pub pings: Arc<Pings>,
    stop: tokio::sync::watch::Sender<bool>,
    driver: tokio::task::JoinHandle<()>,
}

impl Pinger {
    /// Stops pinging and waits for the pings in flight (each bounded by
    /// the client's timeout).
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.driver.await;
    }
}

/// Pings `urls[i]` every `interval` from `start + interval * i / n` on,
/// until [`Pinger::finish`].
pub fn spawn_pinger(
    urls: Vec<String>,
    interval: Duration,
    start: tokio::time::Instant,
) -> Result<Pinger, String> {
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(WORKERS)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let pings = Arc::new(Pings::default());
    let (tx, rx) = tokio::sync::mpsc::channel::<(usize, i64)>(4 * WORKERS);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let urls = Arc::new(urls);
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (http, rx, urls, pings) = (
            http.clone(),
            Arc::clone(&rx),
            Arc::clone(&urls),
            Arc::clone(&pings),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some((i, due)) = next else { return };
                let sent = super::now_ms();
                let status = match http.get(&urls[i]).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        // Read the answer so the connection can be reused.
                        let _ = r.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                let answer_ms = super::now_ms() - sent;
                if let Ok(mut l) = pings.list.lock() {
                    l.push(Ping {
                        due,
                        sent,
                        answer_ms,
                        status,
                    });
                }
            }
        }));
    }
    let n = urls.len().max(1);
    let spacing = interval.div_f64(n as f64);
    // `start` in epoch ms, for the due times the figures compare.
    let (now, now_ms) = (tokio::time::Instant::now(), super::now_ms());
    let start_ms = if start >= now {
        now_ms + (start - now).as_millis() as i64
    } else {
        now_ms - (now - start).as_millis() as i64
    };
    let driver = tokio::spawn(async move {
        // The k-th ping is service k mod n's, due at start + k * spacing:
        // each service once an interval, at its own phase.
        for k in 0u64.. {
            let offset = spacing.mul_f64(k as f64);
            tokio::select! {
                _ = stop.changed() => break,
                () = tokio::time::sleep_until(start + offset) => {}
            }
            if *stop.borrow() {
                break;
            }
            let due = start_ms + offset.as_millis() as i64;
            if tx.send(((k % n as u64) as usize, due)).await.is_err() {
                break;
            }
        }
        drop(tx);
        for w in workers {
            let _ = w.await;
        }
    });
    Ok(Pinger {
        pings,
        stop: stop_tx,
        driver,
    })
}
