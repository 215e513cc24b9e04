//! The public face of status pages, with no key: `GET /status/{slug}`
//! (server-rendered HTML, no JavaScript, no CDN), `GET /status/{slug}.json`
//! (the same data) and `GET /status/{slug}/badge/{service_id}.svg`.
//!
//! Only the services a page lists are shown, and of them only names,
//! statuses, latencies and uptime: a URL may name an internal host. Every
//! user string is HTML-escaped. Uptime comes from the hourly rollups
//! (DEGRADED counts as up), so today's bar lags by up to one rollup
//! interval.

use super::AppState;
use super::problem::ApiError;
use super::status_pages::{Slug, is_slug};
use crate::domain::ServiceId;
use crate::domain::status_page::{
    self, BAR_DAYS, DAY_MS, DayBar, DayCount, PublicStatus, StatusPage,
};
use crate::domain::time::{Millis, now_ms, serde_rfc3339, to_rfc3339};
use crate::store::{DaysOf, ListedService};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

/// How long a client or proxy may reuse a badge.
pub const BADGE_CACHE_CONTROL: &str = "public, max-age=60";
/// Days the uptime badge covers.
pub const BADGE_UPTIME_DAYS: i64 = 30;

/// Mounts this resource's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/status/{page}")
            .route(web::get().to(page))
            .route(web::head().to(page))
            .default_service(super::other_methods("GET, HEAD, OPTIONS")),
    )
    .service(
        web::resource("/status/{page}/badge/{file}")
            .route(web::get().to(badge))
            .route(web::head().to(badge))
            .default_service(super::other_methods("GET, HEAD, OPTIONS")),
    );
}

/// One listed service as the public sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicService {
    /// Its id (for its badges).
    pub id: ServiceId,
    /// Its name.
    pub name: String,
    /// Its status; PAUSED when it is not checked.
    pub status: PublicStatus,
    /// When its last check finished.
    #[serde(serialize_with = "serde_rfc3339::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_check: Option<Millis>,
    /// Latency of its last check.
    pub last_latency_ms: Option<i64>,
    /// Share of checks that passed over the days below; `null` without
    /// checks.
    pub uptime_ratio: Option<f64>,
    /// One bar per UTC day, oldest first, today last.
    pub days: Vec<DayBar>,
}

/// A page as the public sees it (`.json`; the HTML shows the same).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublicPage {
    /// Its name in URLs.
    pub slug: String,
    /// Its heading.
    pub title: String,
    /// The worst status of its services (paused ones aside).
    pub overall: PublicStatus,
    /// When this answer was made.
    #[serde(serialize_with = "serde_rfc3339::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub generated_at: Millis,
    /// The services listed, in order.
    pub services: Vec<PublicService>,
}

fn page_not_found() -> ApiError {
    ApiError::NotFound("no such status page".into())
}

async fn load(state: &AppState, slug: &str) -> Result<(StatusPage, Vec<ListedService>), ApiError> {
    let page = state
        .store
        .get_status_page(slug)
        .await?
        .ok_or_else(page_not_found)?;
    let listed = state.store.listed_services(page.id).await?;
    Ok((page, listed))
}

async fn public_page(state: &AppState, slug: &str) -> Result<PublicPage, ApiError> {
    let (page, listed) = load(state, slug).await?;
    let now = now_ms();
    let first = status_page::first_bar_day(now);
    let counts = state
        .store
        .day_counts(DaysOf::Page(page.id), first, now + 1)
        .await?;
    let mut by_service: HashMap<ServiceId, Vec<DayCount>> = HashMap::new();
    for c in counts {
        by_service.entry(c.service_id).or_default().push(c);
    }
    let services: Vec<PublicService> = listed
        .into_iter()
        .map(|s| {
            let counts = by_service.remove(&s.id).unwrap_or_default();
            PublicService {
                id: s.id,
                name: s.name,
                status: s.status,
                last_check: s.last_check,
                last_latency_ms: s.last_latency_ms,
                uptime_ratio: status_page::uptime_ratio(&counts),
                days: status_page::bars(&counts, first),
            }
        })
        .collect();
    Ok(PublicPage {
        slug: page.spec.slug,
        title: page.spec.title,
        overall: status_page::overall(services.iter().map(|s| s.status)),
        generated_at: now,
        services,
    })
}

/// `GET /status/{slug}` (HTML) and `GET /status/{slug}.json`.
#[utoipa::path(get, path = "/status/{page}", tag = "status pages", security(()),
    params(("page" = String, Path, description = "The slug (HTML), or the slug and `.json`")),
    responses((status = 200, description = "The public page: HTML, or JSON for `{slug}.json`",
        content((String = "text/html"), (PublicPage = "application/json")))))]
async fn page(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let raw = req.uri().path().split('/').nth(2).unwrap_or_default();
    let (slug, json) = match raw.strip_suffix(".json") {
        Some(slug) => (slug, true),
        None => (raw, false),
    };
    if !is_slug(slug) {
        return Err(page_not_found());
    }
    let page = public_page(&state, slug).await?;
    if json {
        return Ok(HttpResponse::Ok().json(page));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // The page needs nothing but its own inline style: should escaping
        // ever miss, nothing injected could run or load.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(render_html(&page)))
}

/// `GET /status/{slug}/badge/{service_id}.svg?type=status|uptime|latency`
#[utoipa::path(get, path = "/status/{page}/badge/{file}", tag = "status pages", security(()),
    params(("page" = String, Path, description = "The slug"),
        ("file" = String, Path, description = "`{service_id}.svg`, a service the page lists"),
        ("type" = Option<String>, Query, description = "`status` (default), `uptime` or `latency`")),
    responses(
        (status = 200, description = "An SVG badge (Cache-Control public, max-age=60; ETag)", content_type = "image/svg+xml", body = String),
        (status = 304, description = "Not modified (If-None-Match)")))]
async fn badge(
    req: HttpRequest,
    Slug(slug): Slug,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let kind = badge_kind(req.query_string())?;
    let file = req.uri().path().split('/').nth(4).unwrap_or_default();
    let id = file
        .strip_suffix(".svg")
        .filter(|n| !n.starts_with('0') && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<i64>().ok())
        .map(ServiceId)
        .ok_or_else(|| ApiError::NotFound("no such badge".into()))?;
    let (_, listed) = load(&state, &slug).await?;
    // Only a listed service is public.
    let service = listed
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("status page {slug:?} lists no service {id}")))?;
    let (label, value, colour) = match kind {
        BadgeKind::Status => (
            "status",
            service.status.as_str().to_owned(),
            colour_of(service.status),
        ),
        BadgeKind::Latency => match service.last_latency_ms {
            Some(ms) => ("latency", format!("{ms} ms"), GREY),
            None => ("latency", "n/a".to_owned(), GREY),
        },
        BadgeKind::Uptime => {
            let now = now_ms();
            let from = now - now.rem_euclid(DAY_MS) - (BADGE_UPTIME_DAYS - 1) * DAY_MS;
            let counts = state
                .store
                .day_counts(DaysOf::Service(id), from, now + 1)
                .await?;
            match status_page::uptime_ratio(&counts) {
                Some(r) => ("uptime 30d", percent(r), uptime_colour(r)),
                None => ("uptime 30d", "n/a".to_owned(), GREY),
            }
        }
    };
    let svg = render_badge(label, &value, colour);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    svg.hash(&mut hasher);
    let etag = format!("\"{:016x}\"", hasher.finish());
    let fresh = if_none_match(&req, &etag);
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, BADGE_CACHE_CONTROL))
        .insert_header((header::ETAG, etag))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        return Ok(response.finish());
    }
    Ok(response.content_type("image/svg+xml").body(svg))
}

fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadgeKind {
    Status,
    Uptime,
    Latency,
}

fn badge_kind(query: &str) -> Result<BadgeKind, ApiError> {
    let mut kind = BadgeKind::Status;
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key == "type" {
            kind = match value.as_ref() {
                "status" => BadgeKind::Status,
                "uptime" => BadgeKind::Uptime,
                "latency" => BadgeKind::Latency,
                _ => {
                    return Err(ApiError::BadQuery(vec![
                        crate::domain::validate::FieldError::new(
                            "type",
                            "must be status, uptime or latency",
                        ),
                    ]));
                }
            };
        }
    }
    Ok(kind)
}

const GREEN: &str = "#2e7d32";
const AMBER: &str = "#a15c00";
const RED: &str = "#c62828";
const GREY: &str = "#5f6368";

fn colour_of(s: PublicStatus) -> &'static str {
    match s {
        PublicStatus::Up => GREEN,
        PublicStatus::Degraded => AMBER,
        PublicStatus::Down => RED,
        PublicStatus::Pending | PublicStatus::Paused => GREY,
    }
}

fn uptime_colour(ratio: f64) -> &'static str {
    if ratio >= 0.999 {
        GREEN
    } else if ratio >= 0.95 {
        AMBER
    } else {
        RED
    }
}

/// A ratio as a percentage, rounded down to two decimals: 99.996 % is not
/// "100.00 %" while a check failed.
fn percent(ratio: f64) -> String {
    format!("{:.2}%", (ratio * 10_000.0).floor() / 100.0)
}

/// Escapes text for HTML content and quoted attributes alike.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A flat two-part badge (label | value), widths estimated from the text
/// (Verdana 11 px averages about 7 px a character).
fn render_badge(label: &str, value: &str, colour: &str) -> String {
    let width = |s: &str| s.chars().count() * 7 + 12;
    let (lw, vw) = (width(label), width(value));
    let total = lw + vw;
    let (label, value) = (escape(label), escape(value));
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{label}: {value}"><title>{label}: {value}</title><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{vw}" height="20" fill="{colour}"/><g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="14">{label}</text><text x="{vx}" y="14">{value}</text></g></svg>"##,
        lx = lw / 2,
        vx = lw + vw / 2,
    )
}

const STYLE: &str = "\
:root{--bg:#fff;--fg:#1f2328;--muted:#59636e;--card:#f6f8fa;--line:#d1d9e0;\
--up:#1a7f37;--degraded:#9a6700;--down:#cf222e;--none:#d1d9e0}\
@media (prefers-color-scheme: dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;\
--card:#151b23;--line:#3d444d;--up:#3fb950;--degraded:#d29922;--down:#f85149;--none:#3d444d}}\
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);\
font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif}\
main{max-width:60rem;margin:0 auto;padding:1.5rem 1rem}h1{margin:0 0 1rem;font-size:1.6rem}\
.overall{padding:.75rem 1rem;border-radius:.5rem;border:1px solid var(--line);background:var(--card);\
font-weight:600}.services{list-style:none;padding:0;margin:1.5rem 0}\
.service{padding:1rem;border:1px solid var(--line);border-radius:.5rem;margin-bottom:.75rem;\
background:var(--card)}.head{display:flex;justify-content:space-between;gap:1rem;flex-wrap:wrap}\
.name{font-weight:600;overflow-wrap:anywhere}.status{font-weight:700;letter-spacing:.03em}\
.s-UP{color:var(--up)}.s-DEGRADED{color:var(--degraded)}.s-DOWN{color:var(--down)}\
.s-PENDING,.s-PAUSED{color:var(--muted)}\
.bars{display:flex;align-items:flex-end;gap:1px;height:2rem;margin:.75rem 0 .25rem}\
.bar{flex:1;min-width:1px;border-radius:1px;background:var(--up)}.b-warn{background:var(--degraded)}\
.b-bad{background:var(--down)}.b-none{background:transparent;border:1px dashed var(--none);height:100%}\
.legend{display:flex;justify-content:space-between;color:var(--muted);font-size:.85rem}\
footer{color:var(--muted);font-size:.85rem}";

fn overall_sentence(s: PublicStatus) -> &'static str {
    match s {
        PublicStatus::Up => "All systems operational",
        PublicStatus::Degraded => "Some systems degraded",
        PublicStatus::Down => "Some systems down",
        PublicStatus::Pending | PublicStatus::Paused => "No checks yet",
    }
}

/// The page as HTML: readable without colour (status words, bar titles,
/// heights by uptime) and without JavaScript.
fn render_html(page: &PublicPage) -> String {
    let title = escape(&page.title);
    let mut html = String::with_capacity(4096 + page.services.len() * BAR_DAYS as usize * 96);
    let overall = page.overall.as_str();
    // Writing to a String cannot fail.
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\"><title>{title} status</title>\
         <style>{STYLE}</style></head><body><main><h1>{title}</h1>\
         <p class=\"overall\">Overall: <span class=\"status s-{overall}\">{overall}</span> \
         ({sentence})</p><ul class=\"services\">",
        sentence = overall_sentence(page.overall),
    );
    for s in &page.services {
        let name = escape(&s.name);
        let status = s.status.as_str();
        let uptime = s.uptime_ratio.map_or_else(
            || "no data".to_owned(),
            |r| format!("{} uptime", percent(r)),
        );
        let latency = s
            .last_latency_ms
            .map_or_else(String::new, |ms| format!(", last check {ms} ms"));
        let _ = write!(
            html,
            "<li class=\"service\"><div class=\"head\"><span class=\"name\">{name}</span>\
             <span class=\"status s-{status}\">{status}</span></div>\
             <div class=\"bars\" role=\"img\" aria-label=\"{name}: {uptime} over {BAR_DAYS} days\">"
        );
        for day in &s.days {
            match day.uptime_ratio {
                None => {
                    let _ = write!(
                        html,
                        "<span class=\"bar b-none\" title=\"{}: no data\"></span>",
                        day.date
                    );
                }
                Some(r) => {
                    let class = if r >= 0.999 {
                        ""
                    } else if r >= 0.95 {
                        " b-warn"
                    } else {
                        " b-bad"
                    };
                    // At least a sliver, so a day all down still shows.
                    let height = (r * 100.0).max(8.0);
                    let _ = write!(
                        html,
                        "<span class=\"bar{class}\" style=\"height:{height:.0}%\" \
                         title=\"{}: {} up ({} checks)\"></span>",
                        day.date,
                        percent(r),
                        day.checks
                    );
                }
            }
        }
        let _ = write!(
            html,
            "</div><div class=\"legend\"><span>{BAR_DAYS} days ago</span>\
             <span>{uptime}{latency}</span><span>Today</span></div></li>"
        );
    }
    let _ = write!(
        html,
        "</ul><footer>Updated {} (UTC). Uptime counts checks per day; degraded checks \
         count as up. Today's bar lags by up to one rollup interval.</footer></main></body></html>",
        to_rfc3339(page.generated_at)
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_both_quotes() {
        assert_eq!(
            escape(r#"<script>alert('x')</script> & "q""#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn percent_rounds_down_and_badges_carry_their_text() {
        assert_eq!(percent(1.0), "100.00%");
        assert_eq!(percent(0.99996), "99.99%");
        assert_eq!(percent(0.5), "50.00%");
        let svg = render_badge("status", "UP", GREEN);
        assert!(
            svg.starts_with("<svg") && svg.contains(">UP</text>"),
            "{svg}"
        );
        assert_eq!(badge_kind("type=uptime").ok(), Some(BadgeKind::Uptime));
        assert_eq!(badge_kind("").ok(), Some(BadgeKind::Status));
        assert!(badge_kind("type=x").is_err());
    }
}
