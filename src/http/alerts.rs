//! The alert outbox as users see it: `GET /alerts` and `GET /alerts/{id}`.
//!
//! `GET /alerts?service_id=&channel_id=&state=&limit=&before=` lists alerts
//! newest first, paged like a service's logs: `before` is the `id` of the
//! last alert of the previous page (or an RFC 3339 time), and a full page
//! carries a `Link: <...>; rel="next"` header.

use super::AppState;
use super::logs::DEFAULT_LIMIT;
use super::other_methods;
use super::problem::ApiError;
use crate::domain::alert_view::{AlertFilter, AlertState};
use crate::domain::time::parse_rfc3339;
use crate::domain::validate::FieldError;
use crate::domain::{ChannelId, ServiceId};
use crate::store::LogCursor;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

/// Mounts this resource's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/alerts")
            .route(web::get().to(list))
            .route(web::head().to(list))
            .default_service(other_methods("GET, HEAD, OPTIONS")),
    )
    .service(
        web::resource("/alerts/{id}")
            .route(web::get().to(get))
            .route(web::head().to(get))
            .default_service(other_methods("GET, HEAD, OPTIONS")),
    );
}

/// Parsed query parameters of `GET /alerts`.
#[derive(Debug, PartialEq, Eq)]
pub struct AlertQuery {
    /// Which alerts.
    pub filter: AlertFilter,
    /// Page size, already capped.
    pub limit: i64,
    /// Where the page starts.
    pub cursor: Option<LogCursor>,
}

const PARAMETERS: &str = "service_id, channel_id, state, limit, before";

fn positive_id(value: &str) -> Option<i64> {
    value.parse::<i64>().ok().filter(|n| *n >= 1)
}

/// Parses the query; every bad or unknown parameter is named (a misspelt
/// filter would otherwise list every alert as if it matched).
pub fn parse_query(query: &str, max_limit: i64) -> Result<AlertQuery, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut parsed = AlertQuery {
        filter: AlertFilter::default(),
        limit: DEFAULT_LIMIT.min(max_limit),
        cursor: None,
    };
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "service_id" => match positive_id(&value) {
                Some(id) => parsed.filter.service_id = Some(ServiceId(id)),
                None => errors.push(FieldError::new("service_id", "must be a service id")),
            },
            "channel_id" => match positive_id(&value) {
                Some(id) => parsed.filter.channel_id = Some(ChannelId(id)),
                None => errors.push(FieldError::new("channel_id", "must be a channel id")),
            },
            "state" => match value.parse::<AlertState>() {
                Ok(state) => parsed.filter.state = Some(state),
                Err(why) => errors.push(FieldError::new("state", why)),
            },
            "limit" => match value.parse::<i64>() {
                Ok(n) if n >= 1 => parsed.limit = n.min(max_limit),
                _ => errors.push(FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 (at most {max_limit} are returned)"),
                )),
            },
            "before" => {
                if let Ok(id) = value.parse::<i64>() {
                    parsed.cursor = Some(LogCursor::BeforeId(id));
                } else if let Some(t) = parse_rfc3339(&value) {
                    parsed.cursor = Some(LogCursor::BeforeTime(t));
                } else {
                    errors.push(FieldError::new(
                        "before",
                        "must be an alert id or an RFC 3339 time",
                    ));
                }
            }
            other => errors.push(FieldError::new(
                other,
                format!("unknown parameter; known: {PARAMETERS}"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// The query of the next page: the same filters, before `last`.
fn next_page(q: &AlertQuery, last: i64) -> String {
    let mut next = url::form_urlencoded::Serializer::new(String::new());
    if let Some(id) = q.filter.service_id {
        next.append_pair("service_id", &id.to_string());
    }
    if let Some(id) = q.filter.channel_id {
        next.append_pair("channel_id", &id.to_string());
    }
    if let Some(state) = q.filter.state {
        next.append_pair("state", state.as_str());
    }
    next.append_pair("limit", &q.limit.to_string());
    next.append_pair("before", &last.to_string());
    next.finish()
}

/// `GET /alerts`
#[utoipa::path(get, path = "/alerts", tag = "alerting",
    params(("service_id" = Option<i64>, Query, minimum = 1), ("channel_id" = Option<i64>, Query, minimum = 1),
        ("state" = Option<String>, Query, description = "`pending`, `sent` or `failed`"),
        ("limit" = Option<i64>, Query, minimum = 1),
        ("before" = Option<String>, Query, description = "The last id of the previous page, or an RFC 3339 time")),
    responses((status = 200, description = "Alerts, newest first", body = [crate::domain::alert_view::AlertView],
        headers(("Link" = String, description = "`<...>; rel=\"next\"` on a full page")))))]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let query =
        parse_query(req.query_string(), state.max_logs_limit).map_err(ApiError::BadQuery)?;
    let alerts = state
        .store
        .list_alerts(query.filter, query.limit, query.cursor)
        .await?;
    let mut response = HttpResponse::Ok();
    if alerts.len() as i64 == query.limit
        && let Some(last) = alerts.last()
    {
        response.insert_header((
            header::LINK,
            format!("</alerts?{}>; rel=\"next\"", next_page(&query, last.id)),
        ));
    }
    Ok(response.json(alerts))
}

/// `GET /alerts/{id}`
#[utoipa::path(get, path = "/alerts/{id}", tag = "alerting", params(("id" = i64, Path)),
    responses((status = 200, description = "The alert", body = crate::domain::alert_view::AlertView)))]
pub async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let alert = match super::path_id::canonical(&req).ok() {
        Some(id) => state.store.get_alert(id).await?,
        None => None,
    };
    alert.map_or_else(
        || {
            Err(ApiError::NotFound(format!(
                "no alert with id {:?}",
                req.uri().path().split('/').nth(2).unwrap_or_default()
            )))
        },
        |alert| Ok(HttpResponse::Ok().json(alert)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_paging_and_caps() {
        let q = parse_query("service_id=3&state=failed&limit=5000&before=77", 1000).unwrap();
        assert_eq!(
            q,
            AlertQuery {
                filter: AlertFilter {
                    service_id: Some(ServiceId(3)),
                    channel_id: None,
                    state: Some(AlertState::Failed),
                },
                limit: 1000,
                cursor: Some(LogCursor::BeforeId(77)),
            }
        );
        assert_eq!(
            next_page(&q, 12),
            "service_id=3&state=failed&limit=1000&before=12"
        );
        assert_eq!(parse_query("", 1000).unwrap().limit, DEFAULT_LIMIT);
    }

    #[test]
    fn bad_values_are_named() {
        let fields: Vec<String> = parse_query(
            "state=PENDING&service_id=0&channel_id=x&limit=0&before=soon&sate=sent",
            1000,
        )
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
        assert_eq!(
            fields,
            [
                "state",
                "service_id",
                "channel_id",
                "limit",
                "before",
                "sate"
            ]
        );
    }
}
