//! A token-bucket rate limit on writes, per caller (an API key, or the
//! client's IP while the API is open).

use super::problem::ApiError;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Largest total size of a request's header names and values. actix-http
/// itself stops reading a request head at 128 KiB (and 96 headers).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Refuses requests whose headers add up to more than [`MAX_HEADER_BYTES`]
/// with 431, before any handler (or authentication) runs.
pub async fn header_size(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let total: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if total > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge(MAX_HEADER_BYTES).into());
    }
    next.call(req).await
}

/// Most callers tracked at once; idle ones are forgotten first.
const MAX_CALLERS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Writes allowed per caller: `burst` at once, then `rate` per second.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter; a `rate` of 0 allows everything.
    pub fn new(rate_per_s: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate_per_s),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one write for `caller` at `now`, or says how long to wait.
    pub fn take(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_CALLERS && !buckets.contains_key(caller) {
            // Forget callers whose bucket has refilled: they lose nothing.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_CALLERS {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

/// How long a count of the services stands before it is taken again.
pub const RECOUNT_EVERY: Duration = Duration::from_secs(1);

/// The number of registered services, as `api.max_services` needs it.
///
/// Counting the table on every registration made registering N services
/// cost O(N²) (at 100,000 services, a few hundred a second); instead the
/// store is counted at most once per [`RECOUNT_EVERY`] and this process's
/// own registrations and deletions are added in between. Other API
/// processes' registrations show at the next recount, and a registration
/// that commits during a recount may be counted twice until the next: the
/// limit guards against runaway scripts, not races.
#[derive(Debug, Default)]
pub struct ServiceCount {
    counted: tokio::sync::Mutex<Option<(Instant, i64)>>,
}

impl ServiceCount {
    /// The current count: the last recount plus the changes since, or a
    /// fresh count when that is older than [`RECOUNT_EVERY`].
    pub async fn get(&self, store: &crate::store::Store) -> Result<i64, ApiError> {
        let mut counted = self.counted.lock().await;
        match *counted {
            Some((at, n)) if at.elapsed() < RECOUNT_EVERY => Ok(n),
            _ => {
                let n = store.count_services().await?;
                *counted = Some((Instant::now(), n));
                Ok(n)
            }
        }
    }

    /// Adds `delta` services (negative for deletions) made by this process.
    pub async fn add(&self, delta: i64) {
        if let Some((_, n)) = self.counted.lock().await.as_mut() {
            *n = (*n + delta).max(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = RateLimiter::new(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take("k", t0).is_ok());
        }
        let wait = limiter.take("k", t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(limiter.take("k", t0 + Duration::from_millis(500)).is_ok());
        assert!(limiter.take("k", t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn callers_are_limited_separately_and_zero_means_off() {
        let limiter = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        assert!(limiter.take("a", t0).is_ok());
        assert!(limiter.take("a", t0).is_err());
        assert!(limiter.take("b", t0).is_ok());
        let off = RateLimiter::new(0, 1);
        for _ in 0..100 {
            assert!(off.take("a", t0).is_ok());
        }
    }

    #[test]
    fn the_table_of_callers_stays_bounded() {
        let limiter = RateLimiter::new(1, 5);
        let t0 = Instant::now();
        for i in 0..(MAX_CALLERS + 50) {
            let _ = limiter.take(&format!("ip{i}"), t0);
        }
        assert!(limiter.buckets.lock().unwrap().len() <= MAX_CALLERS);
    }
}
