//! `GET /` and `GET /ui/{file}`: the dashboard, a web page in plain
//! HTML/CSS/JS compiled into the binary (no build step, no CDN: it works
//! offline and what runs is what is in `assets/dashboard/`).
//!
//! Neither needs an API key (the page asks for one and sends it itself), so
//! they serve only these fixed files. Every answer carries a strict
//! Content-Security-Policy (scripts and styles from this origin only, no
//! inline code) so a service name that slipped into the page as markup still
//! could not run; an ETag lets a browser revalidate instead of downloading
//! again, and `no-cache` makes it revalidate, so an upgraded binary's page is
//! seen at once.

use super::problem::ApiError;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use std::sync::LazyLock;

/// The policy on every dashboard answer. `connect-src 'self'` covers the
/// REST API and `/ws` on this origin; nothing else may be loaded.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One compiled-in file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../../assets/dashboard/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("live.js", JS),
    asset!("list.js", JS),
    asset!("charts.js", JS),
    asset!("service.js", JS),
    asset!("forms.js", JS),
    asset!("admin.js", JS),
    asset!("util.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Each asset's ETag, computed once: a strong tag from its bytes
/// (FNV-1a, 64 bits: enough to tell two versions of one file apart).
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let hash = a.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            format!("\"{hash:016x}\"")
        })
        .collect()
});

/// Mounts `/` and `/ui/{file}`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .route(web::get().to(index))
            .route(web::head().to(index))
            .default_service(super::other_methods("GET, HEAD, OPTIONS")),
    )
    .service(
        web::resource("/ui/{file}")
            .route(web::get().to(file))
            .route(web::head().to(file))
            .default_service(super::other_methods("GET, HEAD, OPTIONS")),
    );
}

/// `GET /`
#[utoipa::path(get, path = "/", tag = "dashboard", security(()),
    description = "The dashboard page (it asks for a key and sends it itself).",
    responses((status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 304, description = "Not modified (If-None-Match)")))]
pub async fn index(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve(&req, "index.html")
}

/// `GET /ui/{file}`
#[utoipa::path(get, path = "/ui/{file}", tag = "dashboard", security(()),
    params(("file" = String, Path, description = "One of the dashboard's files")),
    responses((status = 200, description = "The file",
            content((String = "text/javascript"), (String = "text/css"), (String = "text/html"), (String = "image/svg+xml"))),
        (status = 304, description = "Not modified (If-None-Match)")))]
pub async fn file(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(&req, &name)
}

fn serve(req: &HttpRequest, name: &str) -> Result<HttpResponse, ApiError> {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return Err(ApiError::NotFound(format!("no dashboard file {name:?}")));
    };
    let (asset, etag) = (&ASSETS[i], &ETAGS[i]);
    let unchanged = matches_etag(req, etag);
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if unchanged {
        return Ok(response.finish());
    }
    Ok(response.content_type(asset.content_type).body(asset.body))
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak tags compare by
/// their value, as RFC 9110 says for this header.
fn matches_etag(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_distinct_etag_and_a_type() {
        assert_eq!(ETAGS.len(), ASSETS.len());
        for (a, tag) in ASSETS.iter().zip(ETAGS.iter()) {
            assert!(!a.body.is_empty(), "{} is empty", a.name);
            assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
        }
        let mut tags = ETAGS.clone();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len());
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        // The CSP refuses inline code; a slip would leave the page blank.
        let html = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
        for bad in ["<script>", "style=", " on", "javascript:"] {
            let lower = html.to_ascii_lowercase();
            let found = lower.match_indices(bad).any(|(i, _)| {
                // ` on` only counts as an attribute: ` onclick=`.
                bad != " on"
                    || lower[i + 3..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphabetic())
                        .count()
                        > 0
                        && lower[i + 3..]
                            .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                            .starts_with('=')
            });
            assert!(!found, "index.html contains {bad:?}");
        }
    }
}
