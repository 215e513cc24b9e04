//! `--bulk N`: registration through `POST /services/bulk` (a JSON array of
//! what `POST /services` takes, up to 1,000 in one request and one
//! transaction), N services a request. As with one service a request, the
//! requests are spread over one interval (batch k at k·N/services of it),
//! since a service keeps the phase it was created with: smaller batches
//! give a smoother load (N services are due together every interval).

use crate::Opts;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Requests in flight at once.
const PARALLEL: usize = 8;

/// Registers `o.services` http services in batches of `o.bulk`.
pub async fn register(api: &str, ports: &[u16], o: &Opts) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    let next = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let spacing = Duration::from_secs(o.interval).div_f64(o.services.max(1) as f64);
    let timeout = o.interval.min(5);
    let mut extra = if o.assert {
        crate::kinds::assert_fields()
    } else {
        serde_json::Map::new()
    };
    extra.extend(crate::regions::fields(o));
    let mut tasks = Vec::new();
    for _ in 0..PARALLEL {
        let (http, next, ports, extra) = (
            http.clone(),
            Arc::clone(&next),
            ports.to_vec(),
            extra.clone(),
        );
        let endpoint = format!("http://{api}/services/bulk");
        let (n, per, interval, kind) = (o.services, o.bulk.max(1), o.interval, o.kind);
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(per, Ordering::Relaxed);
                if first >= n {
                    return Ok::<(), String>(());
                }
                tokio::time::sleep_until(start + spacing.mul_f64(first as f64)).await;
                let items: Vec<serde_json::Value> = (first..(first + per).min(n))
                    .map(|i| {
                        let mut body = json!({
                            "name": format!("bench-{i}"),
                            "url": kind.url(ports[i % ports.len()], i),
                            "interval": interval,
                            "timeout": timeout,
                        });
                        if let Some(m) = body.as_object_mut() {
                            m.extend(extra.clone());
                        }
                        body
                    })
                    .collect();
                let mut tries = 0;
                loop {
                    tries += 1;
                    match http.post(&endpoint).json(&items).send().await {
                        Ok(r) if r.status().is_success() => break,
                        Ok(r)
                            if tries < 5 && (r.status().is_server_error() || r.status() == 429) =>
                        {
                            eprintln!("POST /services/bulk: {}; retrying", r.status());
                        }
                        Ok(r) => {
                            let status = r.status();
                            let text = r.text().await.unwrap_or_default();
                            return Err(format!("POST /services/bulk: {status}: {text}"));
                        }
                        // A timed-out batch may have been stored: sending it
                        // again would register it twice.
                        Err(e) => return Err(format!("POST /services/bulk: {e}")),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}
