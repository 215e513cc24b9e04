//! One HTTP delivery: POST a rendered alert, under target safety, with a
//! timeout and a bounded read of the answer, and say what became of it.
//!
//! Errors name the receiver's host only: a chat webhook's URL (Slack,
//! Discord, Telegram's bot path) is its credential.

use super::render::HttpRequest;
use crate::worker::guard::AddressPolicy;
use crate::worker::http::{ClientError, GuardedResolver, describe, find_blocked};
use std::sync::Arc;
use std::time::Duration;

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver took it (2xx).
    Sent,
    /// It failed in a way that may pass (5xx, 408, 429, a network error, a
    /// timeout); `after` is the receiver's own `Retry-After`.
    Retry {
        /// Why, for `last_error`.
        error: String,
        /// How long the receiver asked us to wait.
        after: Option<Duration>,
    },
    /// It failed in a way that will not pass by retrying: the address is
    /// blocked, the receiver refused the request itself (a 4xx other than
    /// 408 and 429: a wrong token or URL), or it redirects.
    Fail {
        /// Why, for `last_error`.
        error: String,
    },
}

/// Sends alerts over HTTP with one shared client.
#[derive(Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    timeout: Duration,
    max_response_bytes: usize,
}

impl Deliverer {
    /// A deliverer that connects only where `policy` allows (checked on
    /// literal addresses before the request and on every resolved address),
    /// gives each delivery `timeout` in all and reads at most
    /// `max_response_bytes` of an answer. Redirects are not followed: a
    /// receiver's URL is configured, and following one could lead a signed
    /// alert somewhere else. No proxy from the environment is used either,
    /// as for checks: through a proxy, the address target safety judges
    /// would be the proxy's, not the receiver's.
    pub fn new(
        policy: AddressPolicy,
        timeout: Duration,
        max_response_bytes: usize,
    ) -> Result<Self, ClientError> {
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .user_agent(concat!("healthmon/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver {
                policy: Arc::clone(&policy),
            })
            .no_proxy()
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            client,
            policy,
            timeout,
            max_response_bytes,
        })
    }

    /// POSTs `request` once.
    pub async fn post(&self, request: &HttpRequest) -> Outcome {
        let url = match url::Url::parse(&request.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            _ => {
                return Outcome::Fail {
                    error: "not sent: the channel's URL is not an http(s) URL".into(),
                };
            }
        };
        let host = url.host_str().unwrap_or_default().to_owned();
        if let Err(blocked) = self.policy.check_url(&url) {
            return Outcome::Fail {
                error: format!("blocked: {blocked}"),
            };
        }
        let mut builder = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timed_out = || Outcome::Retry {
            error: format!(
                "timeout: {host} did not answer within {} s",
                self.timeout.as_secs()
            ),
            after: None,
        };
        let mut response = match tokio::time::timeout_at(deadline, builder.send()).await {
            Err(_) => return timed_out(),
            Ok(Err(e)) => {
                return match find_blocked(&e) {
                    Some(blocked) => Outcome::Fail {
                        error: format!("blocked: {blocked}"),
                    },
                    None if e.is_timeout() => timed_out(),
                    None => Outcome::Retry {
                        error: {
                            // The reason code first, then the host (never the
                            // URL: it may carry a token).
                            let what = describe(&e);
                            match what.split_once(": ") {
                                Some((code, rest)) => format!("{code}: {host}: {rest}"),
                                None => format!("connect: {host}: {what}"),
                            }
                        },
                        after: None,
                    },
                };
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let after = retry_after(response.headers());
        // The status decides: once it is known, a body that breaks off or
        // never ends changes nothing (a 2xx retried for a slow body would
        // be a duplicate). It is still read, bounded, so the connection
        // can be reused.
        let _ = tokio::time::timeout_at(deadline, async {
            let mut read = 0usize;
            while read < self.max_response_bytes {
                match response.chunk().await {
                    Ok(Some(chunk)) => read += chunk.len(),
                    Ok(None) | Err(_) => break,
                }
            }
        })
        .await;
        classify(&host, status.as_u16(), after)
    }
}

/// The outcome of an answer with `status` from `host`.
pub fn classify(host: &str, status: u16, after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Sent,
        408 | 429 => Outcome::Retry {
            error: format!("status: {host} answered {status}"),
            after,
        },
        300..=399 => Outcome::Fail {
            error: format!(
                "status: {host} answered {status} (a redirect); deliveries do not follow \
                 redirects, set the channel's URL to where it points"
            ),
        },
        400..=499 => Outcome::Fail {
            error: format!(
                "status: {host} answered {status}; not retried, as the receiver refused the \
                 request itself (check the channel's URL and credentials)"
            ),
        },
        _ => Outcome::Retry {
            error: format!("status: {host} answered {status}"),
            after,
        },
    }
}

/// A `Retry-After` in seconds (the HTTP-date form is not honoured: the
/// backoff applies then).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_retry_and_give_up_by_status() {
        assert_eq!(classify("h", 204, None), Outcome::Sent);
        assert!(matches!(classify("h", 500, None), Outcome::Retry { .. }));
        assert!(matches!(classify("h", 503, None), Outcome::Retry { .. }));
        assert!(matches!(classify("h", 408, None), Outcome::Retry { .. }));
        let after = Some(Duration::from_secs(7));
        assert_eq!(
            classify("h", 429, after),
            Outcome::Retry {
                error: "status: h answered 429".into(),
                after
            }
        );
        assert!(matches!(classify("h", 404, None), Outcome::Fail { .. }));
        assert!(matches!(classify("h", 401, None), Outcome::Fail { .. }));
        assert!(matches!(classify("h", 301, None), Outcome::Fail { .. }));
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "12".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(12)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
