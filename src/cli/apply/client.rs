//! The REST calls `apply` and `export` make: lists followed page by page,
//! and writes that wait out a `429` a few times.

use crate::domain::validate::FieldError;
use serde_json::Value;
use std::time::Duration;

/// Longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of one answer (a page of 10,000 services is a few MB).
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Most pages of one list.
const MAX_PAGES: usize = 10_000;
/// Most tries of one request that the write rate limit refuses.
const MAX_TRIES: u32 = 6;
/// Longest wait for a `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A REST call that failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL given or configured is not one.
    #[error("--url {0:?}: {1}")]
    BadUrl(String, String),
    /// No HTTP client could be made.
    #[error("cannot make an HTTP client: {0}")]
    Client(String),
    /// The monitor did not answer.
    #[error("{method} {url}: {cause}")]
    Unreachable {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// Why, in one line.
        cause: String,
    },
    /// The monitor answered with an error.
    #[error("{method} {path} answered {status}{}", detail_suffix(.detail))]
    Status {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// The status code.
        status: u16,
        /// The problem document's `detail` (or `title`).
        detail: String,
        /// The fields it names (`422`).
        errors: Vec<FieldError>,
    },
    /// The answer was not what the API sends.
    #[error("{method} {path}: {why}")]
    Answer {
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// What was wrong.
        why: String,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// A monitor's REST API.
pub struct Api {
    http: reqwest::Client,
    base: url::Url,
    token: Option<String>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of every output.
        f.debug_struct("Api")
            .field("base", &self.base.as_str())
            .finish()
    }
}

/// The API's base URL from `--url`: `HOST:PORT` gets `http://`; a path
/// is kept (a monitor behind a prefix).
pub fn base_url(given: &str) -> Result<url::Url, ClientError> {
    let given = given.trim();
    let with_scheme = if given.contains("://") {
        given.to_owned()
    } else {
        format!("http://{given}")
    };
    let mut url = url::Url::parse(&with_scheme)
        .map_err(|e| ClientError::BadUrl(given.to_owned(), e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::BadUrl(
            given.to_owned(),
            "use http:// or https://".to_owned(),
        ));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

impl Api {
    /// A client of the API at `base`, sending `token` as the bearer token.
    pub fn new(base: url::Url, token: Option<String>) -> Result<Self, ClientError> {
        // reqwest is built without a default TLS provider; an error only
        // means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Client(e.to_string()))?;
        Ok(Self {
            http,
            base,
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// The base URL, for messages.
    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, path: &str) -> Result<url::Url, ClientError> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|e| ClientError::BadUrl(path.to_owned(), e.to_string()))
    }

    /// Every object of a collection (`/services`), following `Link:
    /// rel="next"` page by page.
    pub async fn list(&self, path: &str) -> Result<Vec<Value>, ClientError> {
        let mut all = Vec::new();
        let mut next = Some(self.url(path)?);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(ClientError::Answer {
                    method: "GET".into(),
                    path: path.into(),
                    why: format!("more than {MAX_PAGES} pages"),
                });
            }
            let (body, link) = self.call(reqwest::Method::GET, url, None).await?;
            match body {
                Value::Array(items) => all.extend(items),
                _ => {
                    return Err(ClientError::Answer {
                        method: "GET".into(),
                        path: path.into(),
                        why: "the answer is not a JSON array".into(),
                    });
                }
            }
            next = link
                .as_deref()
                .and_then(next_link)
                .and_then(|l| self.base.join(&l).ok());
        }
        Ok(all)
    }

    /// A `POST`, `PATCH` or `DELETE` of `path`; the answer's body (`null`
    /// when there is none).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url = self.url(path)?;
        Ok(self.call(method, url, body).await?.0)
    }

    /// One request, tried again while the write rate refuses it; the body
    /// and the `Link` header.
    async fn call(
        &self,
        method: reqwest::Method,
        url: url::Url,
        body: Option<&Value>,
    ) -> Result<(Value, Option<String>), ClientError> {
        let path = url.path().to_owned();
        let mut tries = 0;
        loop {
            tries += 1;
            let mut request = self.http.request(method.clone(), url.clone());
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            let mut answer = request.send().await.map_err(|e| ClientError::Unreachable {
                method: method.to_string(),
                url: url.to_string(),
                cause: cause(&e),
            })?;
            let status = answer.status();
            let link = answer
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let retry_after = answer
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let mut bytes = Vec::new();
            loop {
                let chunk = answer.chunk().await.map_err(|e| ClientError::Unreachable {
                    method: method.to_string(),
                    url: url.to_string(),
                    cause: cause(&e),
                })?;
                let Some(chunk) = chunk else { break };
                if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(ClientError::Answer {
                        method: method.to_string(),
                        path,
                        why: format!("the answer is over {} MiB", MAX_ANSWER_BYTES >> 20),
                    });
                }
                bytes.extend_from_slice(&chunk);
            }
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS && tries < MAX_TRIES {
                let wait = Duration::from_secs(retry_after.unwrap_or(1)).min(MAX_RETRY_AFTER);
                tracing::debug!(%method, path, wait_s = wait.as_secs(), "write rate reached; waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            let json = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            if !status.is_success() {
                let text = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_owned);
                let errors = json
                    .get("errors")
                    .and_then(|e| serde_json::from_value::<Vec<FieldErrorIn>>(e.clone()).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| FieldError::new(&e.field, e.message))
                    .collect();
                return Err(ClientError::Status {
                    method: method.to_string(),
                    path,
                    status: status.as_u16(),
                    detail: text("detail").or_else(|| text("title")).unwrap_or_default(),
                    errors,
                });
            }
            return Ok((json, link));
        }
    }
}

#[derive(serde::Deserialize)]
struct FieldErrorIn {
    field: String,
    message: String,
}

/// The target of `rel="next"` in a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    })
}

/// "connection refused" and the like from a request error's sources.
fn cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", REQUEST_TIMEOUT.as_secs());
    }
    crate::cli::healthcheck::network_cause(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_and_base_urls() {
        assert_eq!(
            next_link("</channels?after=5&limit=2>; rel=\"next\"").as_deref(),
            Some("/channels?after=5&limit=2")
        );
        assert_eq!(next_link("</a>; rel=\"prev\""), None);
        assert_eq!(
            base_url("127.0.0.1:8088").unwrap().as_str(),
            "http://127.0.0.1:8088/"
        );
        assert_eq!(
            base_url("https://mon.example/hm").unwrap().as_str(),
            "https://mon.example/hm/"
        );
        assert!(base_url("ftp://x").is_err());
    }
}
