//! Status pages, managed: `/status-pages`, `/status-pages/{slug}`. What the
//! public sees of them is in [`super::status_public`].
//!
//! A page is `{"slug", "title", "services": [ids]}`; its slug names it in
//! every URL. Writes need a write key and reads a read key (when keys
//! exist), as everywhere but `/status/`.

use super::AppState;
use super::body::read_json;
use super::problem::ApiError;
use crate::domain::ServiceId;
use crate::domain::status_page::{self, MAX_STATUS_PAGES, StatusPage, StatusPageSpec};
use crate::domain::time::{Millis, now_ms, serde_rfc3339};
use crate::domain::validate::FieldError;
use crate::store::PageSaved;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

/// Attempts a PATCH makes before it reports a conflict.
const WRITE_ATTEMPTS: usize = 8;

/// Mounts this resource's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/status-pages")
            .route(web::get().to(list))
            .route(web::head().to(list))
            .route(web::post().to(create))
            .default_service(super::other_methods("GET, HEAD, POST, OPTIONS")),
    )
    .service(
        web::resource("/status-pages/{slug}")
            .route(web::get().to(get))
            .route(web::head().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete))
            .default_service(super::other_methods("GET, HEAD, PATCH, DELETE, OPTIONS")),
    );
}

/// A page as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PageView {
    /// Its id.
    pub id: i64,
    /// Its name in URLs.
    pub slug: String,
    /// Its heading.
    pub title: String,
    /// The services it lists, in order.
    pub services: Vec<ServiceId>,
    /// Where the public sees it (relative to this server).
    pub public_url: String,
    /// When it was created.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    /// When it last changed.
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

impl From<StatusPage> for PageView {
    fn from(p: StatusPage) -> Self {
        Self {
            id: p.id,
            public_url: format!("/status/{}", p.spec.slug),
            slug: p.spec.slug,
            title: p.spec.title,
            services: p.spec.services,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// The `{slug}` of a path, raw (before percent-decoding): only a valid
/// slug names a page, so each page has one URL.
pub struct Slug(pub String);

impl Slug {
    /// The slug in the second segment of `req`'s raw path, if it is one.
    pub fn of(req: &HttpRequest) -> Option<Slug> {
        let raw = req.uri().path().split('/').nth(2).unwrap_or_default();
        is_slug(raw).then(|| Slug(raw.to_owned()))
    }
}

/// Whether `s` is a well-formed slug.
pub fn is_slug(s: &str) -> bool {
    (1..=status_page::MAX_SLUG_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl actix_web::FromRequest for Slug {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(Slug::of(req).ok_or_else(|| {
            ApiError::NotFound("no status page with this slug (a-z, 0-9 and - only)".into())
        }))
    }
}

fn not_found(slug: &str) -> ApiError {
    ApiError::NotFound(format!("no status page {slug:?}"))
}

fn slug_taken(slug: &str) -> ApiError {
    ApiError::Conflict(format!("another status page has the slug {slug:?}"))
}

fn unknown(ids: &[ServiceId]) -> ApiError {
    let list: Vec<String> = ids.iter().map(ServiceId::to_string).collect();
    ApiError::Validation(vec![FieldError::new(
        "services",
        format!("no service with id {}", list.join(", ")),
    )])
}

/// Refuses a spec that lists services that do not exist.
async fn check_services(state: &AppState, spec: &StatusPageSpec) -> Result<(), ApiError> {
    let missing = state.store.unknown_services(&spec.services).await?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(unknown(&missing))
    }
}

/// The answer to a write the store refused, or the page written.
fn saved(outcome: PageSaved, spec: &StatusPageSpec, slug: &str) -> Result<StatusPage, ApiError> {
    match outcome {
        PageSaved::Saved(p) => Ok(p),
        PageSaved::SlugTaken => Err(slug_taken(&spec.slug)),
        // A listed service was deleted between the check and the write.
        PageSaved::UnknownService => Err(ApiError::Validation(vec![FieldError::new(
            "services",
            "a listed service was just deleted",
        )])),
        PageSaved::NotFound => Err(not_found(slug)),
        PageSaved::Conflict => Err(ApiError::Conflict(format!(
            "status page {slug:?} changed during the update; try again"
        ))),
    }
}

/// `POST /status-pages`
#[utoipa::path(post, path = "/status-pages", tag = "status pages", request_body = crate::http::openapi::bodies::StatusPageInput,
    responses((status = 201, description = "Created", body = PageView,
        headers(("Location" = String, description = "`/status-pages/{slug}`"))),
        (status = 409, description = "The slug is taken, or the limit of pages is reached")))]
async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    let spec = status_page::full_spec(&body).map_err(ApiError::Validation)?;
    check_services(&state, &spec).await?;
    // Checked before the insert, so concurrent creations may overshoot by a
    // few; the bound keeps the listing one page.
    if state.store.count_status_pages().await? >= MAX_STATUS_PAGES {
        return Err(ApiError::Conflict(format!(
            "the limit of {MAX_STATUS_PAGES} status pages is reached; delete some first"
        )));
    }
    let outcome = state.store.create_status_page(&spec, now_ms()).await?;
    let page = saved(outcome, &spec, &spec.slug)?;
    tracing::info!(page_id = page.id, slug = %page.spec.slug, "status page created");
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/status-pages/{}", page.spec.slug),
        ))
        .json(PageView::from(page)))
}

/// `GET /status-pages?limit=&after=`: pages by slug, a page at a time; a
/// full one carries a `Link: <...>; rel="next"` header.
#[utoipa::path(get, path = "/status-pages", tag = "status pages",
    params(("limit" = Option<i64>, Query, minimum = 1), ("after" = Option<String>, Query, description = "The last slug of the previous page")),
    responses((status = 200, description = "Pages by slug", body = [PageView],
        headers(("Link" = String, description = "`<...>; rel=\"next\"` on a full page")))))]
async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (limit, after) = parse_query(req.query_string()).map_err(ApiError::BadQuery)?;
    let pages = state.store.status_pages_after(&after, limit).await?;
    let mut response = HttpResponse::Ok();
    if pages.len() as i64 == limit
        && let Some(last) = pages.last()
    {
        response.insert_header((
            header::LINK,
            format!(
                "</status-pages?limit={limit}&after={}>; rel=\"next\"",
                last.spec.slug
            ),
        ));
    }
    let views: Vec<PageView> = pages.into_iter().map(PageView::from).collect();
    Ok(response.json(views))
}

/// Parses `limit` (1.., capped at [`MAX_STATUS_PAGES`]) and `after` (a slug).
fn parse_query(query: &str) -> Result<(i64, String), Vec<FieldError>> {
    let mut errors = Vec::new();
    let (mut limit, mut after) = (MAX_STATUS_PAGES, String::new());
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "limit" => match value.parse::<i64>() {
                Ok(n) if n >= 1 => limit = n.min(MAX_STATUS_PAGES),
                _ => errors.push(FieldError::new(
                    "limit",
                    format!(
                        "must be a whole number from 1 (at most {MAX_STATUS_PAGES} are returned)"
                    ),
                )),
            },
            "after" if is_slug(&value) => after = value.into_owned(),
            "after" => errors.push(FieldError::new("after", "must be a slug")),
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok((limit, after))
    } else {
        Err(errors)
    }
}

/// `GET /status-pages/{slug}`
#[utoipa::path(get, path = "/status-pages/{slug}", tag = "status pages", params(("slug" = String, Path)),
    responses((status = 200, description = "The page", body = PageView)))]
async fn get(Slug(slug): Slug, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match state.store.get_status_page(&slug).await? {
        Some(p) => Ok(HttpResponse::Ok().json(PageView::from(p))),
        None => Err(not_found(&slug)),
    }
}

/// `PATCH /status-pages/{slug}`: a JSON merge patch of the fields given.
/// Read, patch, then write only if nobody wrote in between, retrying on a
/// race, so two concurrent PATCHes of different fields both take effect.
#[utoipa::path(patch, path = "/status-pages/{slug}", tag = "status pages", params(("slug" = String, Path)),
    request_body(content = crate::http::openapi::bodies::StatusPageInput, description = "A JSON merge patch"),
    responses((status = 200, description = "Updated", body = PageView),
        (status = 409, description = "The new slug is taken, or it kept changing during the update")))]
async fn update(
    req: HttpRequest,
    Slug(slug): Slug,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload).await?;
    for _ in 0..WRITE_ATTEMPTS {
        let current = state
            .store
            .get_status_page(&slug)
            .await?
            .ok_or_else(|| not_found(&slug))?;
        let spec = status_page::patch_spec(&current.spec, &body).map_err(ApiError::Validation)?;
        if spec == current.spec {
            return Ok(HttpResponse::Ok().json(PageView::from(current)));
        }
        check_services(&state, &spec).await?;
        let outcome = state
            .store
            .update_status_page(&slug, &spec, now_ms(), current.updated_at)
            .await?;
        if matches!(outcome, PageSaved::Conflict) {
            continue;
        }
        let page = saved(outcome, &spec, &slug)?;
        tracing::info!(page_id = page.id, slug = %page.spec.slug, "status page updated");
        return Ok(HttpResponse::Ok().json(PageView::from(page)));
    }
    Err(ApiError::Conflict(format!(
        "status page {slug:?} kept changing during the update; try again"
    )))
}

/// `DELETE /status-pages/{slug}`
#[utoipa::path(delete, path = "/status-pages/{slug}", tag = "status pages", params(("slug" = String, Path)),
    responses((status = 204, description = "Deleted")))]
async fn delete(Slug(slug): Slug, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.store.delete_status_page(&slug).await? {
        return Err(not_found(&slug));
    }
    tracing::info!(slug = %slug, "status page deleted");
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_defaults_caps_and_names_bad_values() {
        assert_eq!(parse_query(""), Ok((MAX_STATUS_PAGES, String::new())));
        assert_eq!(parse_query("limit=2&after=ops"), Ok((2, "ops".into())));
        assert_eq!(parse_query("limit=5000").map(|q| q.0), Ok(MAX_STATUS_PAGES));
        let errors = parse_query("limit=0&after=A%20B").unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["limit", "after"]);
    }
}
