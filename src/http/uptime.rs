//! `GET /services/{id}/uptime?hours=N`: a service's hourly rollups for the
//! last `N` hours (default 24, at most 90 days), with totals. DEGRADED
//! checks passed: they count as up in `uptime_ratio`, and `degraded` and
//! `degraded_ratio` say how many of them there were.
//!
//! Rollups are written every `logs.rollup_interval_s` (see `crate::maintenance`, log maintenance),
//! so the newest hour lags by up to one interval; they outlive the raw logs.
//! Hours without checks are left out.

use super::AppState;
use super::problem::ApiError;
use super::services::PathId;
use crate::domain::time::{HOUR_MS, now_ms};
use crate::domain::uptime::report;
use crate::domain::validate::FieldError;
use actix_web::{HttpRequest, HttpResponse, web};

/// Hours when `hours` is not given.
pub const DEFAULT_HOURS: i64 = 24;
/// Most hours one request may cover (90 days).
pub const MAX_HOURS: i64 = 24 * 90;

/// Parses `hours` (1..=[`MAX_HOURS`]); other parameters are ignored.
pub fn parse_hours(query: &str) -> Result<i64, Vec<FieldError>> {
    let mut hours = DEFAULT_HOURS;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key == "hours" {
            match value.parse::<i64>() {
                Ok(n) if (1..=MAX_HOURS).contains(&n) => hours = n,
                _ => {
                    return Err(vec![FieldError {
                        field: "hours".into(),
                        message: format!("must be a whole number from 1 to {MAX_HOURS}"),
                    }]);
                }
            }
        }
    }
    Ok(hours)
}

/// `GET /services/{id}/uptime`
#[utoipa::path(get, path = "/services/{id}/uptime", tag = "services",
    params(("id" = i64, Path),
        ("hours" = Option<i64>, Query, minimum = 1, maximum = 2160, description = "Hours back from now (default 24)")),
    responses((status = 200, description = "Hourly rollups and their totals", body = crate::domain::uptime::UptimeReport)))]
pub async fn get(
    req: HttpRequest,
    PathId(id): PathId,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let hours = parse_hours(req.query_string()).map_err(ApiError::BadQuery)?;
    if state.store.get_service(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no service with id {id}")));
    }
    let now = now_ms();
    let from = now - now.rem_euclid(HOUR_MS) - (hours - 1) * HOUR_MS;
    let rows = state.store.rollups(id, from, now + 1).await?;
    Ok(HttpResponse::Ok().json(report(id, hours, from, now, &rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_default_and_bounds() {
        assert_eq!(parse_hours(""), Ok(24));
        assert_eq!(parse_hours("hours=1"), Ok(1));
        assert_eq!(parse_hours("hours=2160&x=y"), Ok(2160));
        for bad in ["hours=0", "hours=2161", "hours=-1", "hours=abc", "hours="] {
            let errs = parse_hours(bad).unwrap_err();
            assert_eq!(errs[0].field, "hours", "{bad}");
        }
    }
}
