//! `GET /services/{id}/logs?limit=&before=&region=`: health logs, newest
//! first.
//!
//! `before` is the `id` of the last log of the previous page (or an RFC 3339
//! time); a full page carries a `Link: <...>; rel="next"` header. `region`
//! keeps the logs of one region (a regional service logs each region's
//! result of a round).

use super::AppState;
use super::problem::ApiError;
use super::services::PathId;
use crate::domain::time::parse_rfc3339;
use crate::domain::validate::FieldError;
use crate::store::LogCursor;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 50;

/// Parsed query parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct LogQuery {
    /// Page size, already capped.
    pub limit: i64,
    /// Where the page starts.
    pub cursor: Option<LogCursor>,
    /// Only this region's logs.
    pub region: Option<String>,
}

/// Parses `limit` (1.., capped at `max_limit`), `before` and `region`.
pub fn parse_query(query: &str, max_limit: i64) -> Result<LogQuery, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut limit = DEFAULT_LIMIT.min(max_limit);
    let mut cursor = None;
    let mut region = None;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "limit" => match value.parse::<i64>() {
                Ok(n) if n >= 1 => limit = n.min(max_limit),
                _ => errors.push(FieldError {
                    field: "limit".into(),
                    message: format!(
                        "must be a whole number from 1 (at most {max_limit} are returned)"
                    ),
                }),
            },
            "before" => {
                if let Ok(id) = value.parse::<i64>() {
                    cursor = Some(LogCursor::BeforeId(id));
                } else if let Some(t) = parse_rfc3339(&value) {
                    cursor = Some(LogCursor::BeforeTime(t));
                } else {
                    errors.push(FieldError {
                        field: "before".into(),
                        message: "must be a log id or an RFC 3339 time".into(),
                    });
                }
            }
            "region" => match crate::domain::validate::check_region(&value) {
                Ok(()) => region = Some(value.into_owned()),
                Err(message) => errors.push(FieldError {
                    field: "region".into(),
                    message,
                }),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(LogQuery {
            limit,
            cursor,
            region,
        })
    } else {
        Err(errors)
    }
}

/// `GET /services/{id}/logs`
#[utoipa::path(get, path = "/services/{id}/logs", tag = "services",
    params(("id" = i64, Path),
        ("limit" = Option<i64>, Query, minimum = 1, description = "Page size (default 100, capped by api.max_logs_limit)"),
        ("before" = Option<String>, Query, description = "The last id of the previous page, or an RFC 3339 time"),
        ("region" = Option<String>, Query, description = "Only this region's logs (a-z, 0-9 and -, 1-32 characters)")),
    responses((status = 200, description = "Health logs, newest first", body = [crate::domain::health_log::HealthLog],
        headers(("Link" = String, description = "`<...>; rel=\"next\"` on a full page")))))]
pub async fn list(
    req: HttpRequest,
    PathId(id): PathId,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query =
        parse_query(req.query_string(), state.max_logs_limit).map_err(ApiError::BadQuery)?;
    if state.store.get_service(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no service with id {id}")));
    }
    let logs = state
        .store
        .list_logs_in(id, query.limit, query.cursor, query.region.as_deref())
        .await?;
    let mut response = HttpResponse::Ok();
    if logs.len() as i64 == query.limit
        && let Some(last) = logs.last()
    {
        response.insert_header((
            header::LINK,
            format!(
                "</services/{id}/logs?limit={}&before={}{}>; rel=\"next\"",
                query.limit,
                last.id,
                // A region name needs no escaping (a-z, 0-9 and -).
                query
                    .region
                    .as_deref()
                    .map_or(String::new(), |r| format!("&region={r}"))
            ),
        ));
    }
    Ok(response.json(logs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_caps() {
        assert_eq!(
            parse_query("", 1000).unwrap(),
            LogQuery {
                limit: 50,
                cursor: None,
                region: None,
            }
        );
        assert_eq!(parse_query("limit=5000", 1000).unwrap().limit, 1000);
        assert_eq!(
            parse_query("limit=7&before=99", 1000).unwrap().cursor,
            Some(LogCursor::BeforeId(99))
        );
        assert_eq!(
            parse_query("before=1970-01-01T00:00:01Z", 1000)
                .unwrap()
                .cursor,
            Some(LogCursor::BeforeTime(1000))
        );
    }

    #[test]
    fn bad_values_are_named() {
        let errs = parse_query("limit=0&before=soon", 1000).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["limit", "before"]);
        assert!(parse_query("limit=abc", 1000).is_err());
        assert!(parse_query("limit=-3", 1000).is_err());
    }

    #[test]
    fn region_is_a_region_name() {
        assert_eq!(
            parse_query("region=eu-west", 1000)
                .unwrap()
                .region
                .as_deref(),
            Some("eu-west")
        );
        let errs = parse_query("region=EU%20West", 1000).unwrap_err();
        assert_eq!(errs[0].field, "region");
        assert!(parse_query("region=", 1000).is_err());
    }

    proptest::proptest! {
        /// Stand-in for a fuzz target: any query string parses or is
        /// rejected naming a parameter, and an accepted limit is in range.
        #[test]
        fn any_query_string_is_handled(q in ".{0,200}", max in 1i64..5000) {
            match parse_query(&q, max) {
                Ok(parsed) => proptest::prop_assert!((1..=max).contains(&parsed.limit)),
                Err(errors) => {
                    for e in errors {
                        proptest::prop_assert!(
                            ["limit", "before", "region"].contains(&e.field.as_str())
                        );
                    }
                }
            }
        }
    }
}
