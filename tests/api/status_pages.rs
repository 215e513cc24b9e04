//! Status pages: managed at `/status-pages` (keys as everywhere), public
//! at `/status/{slug}` (HTML), `.json` and badges, with no key; only the
//! services a page lists are shown, without their URLs, names escaped.
use crate::helpers::*;

use crate::common::maintenance::MAINTAIN_OFTEN;
use reqwest::Method;
use reqwest::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH, LOCATION};
use serde_json::{Value, json};
use std::sync::Arc;

fn page(slug: &str, title: &str, services: &[i64]) -> Value {
    json!({"slug": slug, "title": title, "services": services})
}

/// `GET /status-pages`, asserting 200: the slugs listed.
async fn slugs(m: &Monitor) -> Vec<String> {
    let r = get(m, "/status-pages").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["slug"].as_str().expect("slug").to_owned())
        .collect()
}

/// A GET with no key at all, as the public makes it.
async fn public_get(m: &Monitor, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(m.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("GET");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_created_read_patched_and_deleted_and_bad_input_stores_nothing() {
    let m = Monitor::start();
    let a = id_of(&create(&m, body_with(json!({"name": "api", "paused": true}))).await);
    let b = id_of(&create(&m, body_with(json!({"name": "db", "paused": true}))).await);

    let r = send(
        &m,
        Method::POST,
        "/status-pages",
        &page("ops", "Ops", &[b, a]),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header(LOCATION), Some("/status-pages/ops"));
    assert_eq!(
        (&r.json["slug"], &r.json["title"], &r.json["services"]),
        (&json!("ops"), &json!("Ops"), &json!([b, a]))
    );
    assert_eq!(r.json["public_url"], "/status/ops");
    assert_eq!(get(&m, "/status-pages/ops").await.json, r.json);

    let taken = send(
        &m,
        Method::POST,
        "/status-pages",
        &page("ops", "Other", &[]),
    )
    .await;
    assert_problem(&taken, 409, "a second page with the slug");

    let too_many: Vec<i64> = (1..=501).collect();
    for (body, fields, what) in [
        (
            page("Ops 2", "t", &[]),
            vec!["slug"],
            "capital letters and a space",
        ),
        (
            page(&"a".repeat(65), "t", &[]),
            vec!["slug"],
            "a 65-character slug",
        ),
        (page("x", "", &[]), vec!["title"], "an empty title"),
        (
            page("x", "a\u{202E}b", &[]),
            vec!["title"],
            "a bidi override",
        ),
        (
            page("x", "t", &[a, 9999]),
            vec!["services"],
            "an unknown service",
        ),
        (page("x", "t", &[a, a]), vec!["services"], "a service twice"),
        (page("x", "t", &too_many), vec!["services"], "501 services"),
        (
            json!({"slug": "x", "title": "t"}),
            vec!["services"],
            "no services",
        ),
        (
            json!({"slug": "x", "title": "t", "services": [], "url": "u"}),
            vec!["url"],
            "an unknown field",
        ),
    ] {
        let r = send(&m, Method::POST, "/status-pages", &body).await;
        assert_invalid(&r, &fields, what);
    }
    assert_eq!(slugs(&m).await, ["ops"], "nothing stored");

    let r = send(
        &m,
        Method::PATCH,
        "/status-pages/ops",
        &json!({"services": [a, 9999]}),
    )
    .await;
    assert_invalid(&r, &["services"], "patching in an unknown service");
    let r = send(
        &m,
        Method::PATCH,
        "/status-pages/ops",
        &json!({"title": null}),
    )
    .await;
    assert_invalid(&r, &["title"], "removing the title");
    assert_eq!(
        get(&m, "/status-pages/ops").await.json["services"],
        json!([b, a])
    );

    let r = send(
        &m,
        Method::PATCH,
        "/status-pages/ops",
        &json!({"title": "Ops!", "services": [a]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (&r.json["title"], &r.json["services"]),
        (&json!("Ops!"), &json!([a]))
    );
    let r = send(
        &m,
        Method::PATCH,
        "/status-pages/ops",
        &json!({"slug": "team"}),
    )
    .await;
    assert_eq!(
        (r.status, &r.json["title"]),
        (200, &json!("Ops!")),
        "{}",
        r.text
    );
    assert_problem(&get(&m, "/status-pages/ops").await, 404, "the old slug");
    send(&m, Method::POST, "/status-pages", &page("other", "O", &[])).await;
    let r = send(
        &m,
        Method::PATCH,
        "/status-pages/team",
        &json!({"slug": "other"}),
    )
    .await;
    assert_problem(&r, 409, "renaming onto another page's slug");
    assert_eq!(slugs(&m).await, ["other", "team"]);

    let r = request(&m, Method::DELETE, "/status-pages/team", None, None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_problem(&get(&m, "/status-pages/team").await, 404, "a deleted page");
    assert_problem(
        &public_get(&m, "/status/team", &[]).await,
        404,
        "its public page",
    );
    let r = request(&m, Method::DELETE, "/status-pages/team", None, None).await;
    assert_problem(&r, 404, "deleting twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_page_json_and_badges_need_no_key_and_show_only_listed_services() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let admin = create_key(&dir, "admin", "write");
    let mut m = Monitor::start_in(Arc::clone(&dir), &[]);
    let target = Target::start().await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {admin}").parse().expect("header"),
    );
    m.http = reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .build()
        .expect("client");

    let evil = "<script>alert(1)</script> & co";
    let listed = id_of(
        &create(
            &m,
            json!({"name": evil, "url": target.url("/ok"), "interval": 1}),
        )
        .await,
    );
    let hidden_url = "http://127.0.0.1:9/internal-only";
    let secret = id_of(
        &create(
            &m,
            json!({"name": "hidden", "url": hidden_url, "interval": 30, "paused": true}),
        )
        .await,
    );
    let title = "Acme <b>status</b>";
    let r = send(
        &m,
        Method::POST,
        "/status-pages",
        &page("acme", title, &[listed]),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);

    assert_eq!(
        public_get(&m, "/status-pages", &[]).await.status,
        401,
        "admin routes need a key"
    );
    assert_eq!(public_get(&m, "/services", &[]).await.status, 401);

    let json = eventually("the listed service UP on the public JSON", || async {
        let r = public_get(&m, "/status/acme.json", &[]).await;
        assert_eq!(r.status, 200, "{}", r.text);
        (r.json["services"][0]["status"] == "UP").then_some(r.json)
    })
    .await;
    assert_eq!(
        (&json["slug"], &json["title"], &json["overall"]),
        (&json!("acme"), &json!(title), &json!("UP"))
    );
    let services = json["services"].as_array().expect("services");
    assert_eq!(services.len(), 1, "only the listed service: {json}");
    assert_eq!(
        (&services[0]["id"], &services[0]["name"]),
        (&json!(listed), &json!(evil))
    );
    assert_eq!(services[0]["days"].as_array().expect("days").len(), 90);
    assert!(!json.to_string().contains("/ok"), "no URL: {json}");

    let html = public_get(&m, "/status/acme", &[]).await;
    assert_eq!(html.status, 200);
    assert!(
        html.content_type().starts_with("text/html"),
        "{}",
        html.content_type()
    );
    let text = &html.text;
    assert!(
        text.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"),
        "{text}"
    );
    assert!(text.contains("Acme &lt;b&gt;status&lt;/b&gt;"), "{text}");
    assert!(
        !text.contains("<script") && !text.contains("<b>"),
        "unescaped: {text}"
    );
    assert!(text.contains(">UP<"), "the status as a word: {text}");
    assert!(
        !text.contains("hidden") && !text.contains("127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("prefers-color-scheme: dark"));

    let badge = format!("/status/acme/badge/{listed}.svg");
    let r = public_get(&m, &badge, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.content_type(), "image/svg+xml");
    assert_eq!(r.header(CACHE_CONTROL), Some("public, max-age=60"));
    assert!(
        r.text.starts_with("<svg") && r.text.contains(">UP<"),
        "{}",
        r.text
    );
    let etag = r.header(ETAG).expect("an ETag").to_owned();
    let again = public_get(&m, &badge, &[(IF_NONE_MATCH.as_str(), &etag)]).await;
    assert_eq!(again.status, 304);
    let latency = public_get(&m, &format!("{badge}?type=latency"), &[]).await;
    assert!(latency.text.contains(" ms<"), "{}", latency.text);
    let bad = public_get(&m, &format!("{badge}?type=colour"), &[]).await;
    assert_problem(&bad, 400, "an unknown badge type");

    for path in [
        format!("/status/acme/badge/{secret}.svg"),
        format!("/status/acme/badge/{secret}.svg?type=uptime"),
        "/status/acme/badge/0.svg".to_owned(),
        "/status/nope".to_owned(),
        "/status/nope.json".to_owned(),
    ] {
        assert_problem(&public_get(&m, &path, &[]).await, 404, &path);
    }

    let r = request(
        &m,
        Method::DELETE,
        &format!("/services/{listed}"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let json = public_get(&m, "/status/acme.json", &[]).await.json;
    assert_eq!(
        json["services"],
        json!([]),
        "a deleted service leaves the page"
    );
    assert_eq!(
        get(&m, "/status-pages/acme").await.json["services"],
        json!([])
    );
    assert_problem(
        &public_get(&m, &badge, &[]).await,
        404,
        "a deleted service's badge",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uptime_bars_come_from_the_rollups_one_a_day() {
    let target = Target::start().await;
    let m = Monitor::start_with(&MAINTAIN_OFTEN);
    let id = id_of(
        &create(
            &m,
            json!({"name": "web", "url": target.url("/ok"), "interval": 1}),
        )
        .await,
    );
    send(
        &m,
        Method::POST,
        "/status-pages",
        &page("web", "Web", &[id]),
    )
    .await;
    let svc = eventually("today's bar counted from the rollups", || async {
        let json = public_get(&m, "/status/web.json", &[]).await.json;
        let svc = json["services"][0].clone();
        (svc["days"][89]["checks"].as_i64() >= Some(2)).then_some(svc)
    })
    .await;
    let days = svc["days"].as_array().expect("days");
    assert_eq!(days[89]["uptime_ratio"], 1.0, "{svc}");
    assert!(
        days[..89]
            .iter()
            .all(|d| d["uptime_ratio"].is_null() && d["checks"] == 0),
        "days before the service existed have no data, not 0 %: {svc}"
    );
    assert_eq!(svc["uptime_ratio"], 1.0);
    let html = public_get(&m, "/status/web", &[]).await.text;
    assert!(
        html.contains("no data") && html.contains("100.00% up"),
        "{html}"
    );
    let r = public_get(&m, &format!("/status/web/badge/{id}.svg?type=uptime"), &[]).await;
    assert!(r.text.contains(">100.00%<"), "{}", r.text);
}

/// The store's side on both backends: the foreign keys (an unknown service
/// is refused, a deleted one leaves the page), the slug's uniqueness, the
/// compare-and-set of an update, and the day sums' SQL.
mod store {
    use crate::common::stores::on_every_backend;
    use healthmon::domain::status_page::full_spec;
    use healthmon::domain::{ServiceId, validate};
    use healthmon::store::{DaysOf, PageSaved, Store};
    use serde_json::json;

    async fn pages_keep_their_lists_and_lose_deleted_services(store: Store) {
        let mut ids = Vec::new();
        for name in ["a", "b"] {
            let body = json!({"name": name, "url": "http://127.0.0.1:9/", "interval": 30});
            let spec = validate::full_spec(&body).expect("service");
            ids.push(store.create_service(&spec, 1).await.expect("create").id);
        }
        let (a, b) = (ids[0], ids[1]);
        let spec = full_spec(&json!({"slug": "p", "title": "P", "services": [b.get(), a.get()]}))
            .expect("page");
        let PageSaved::Saved(page) = store.create_status_page(&spec, 10).await.expect("create")
        else {
            panic!("not saved");
        };
        let again = store.create_status_page(&spec, 11).await.expect("write");
        assert!(matches!(again, PageSaved::SlugTaken), "{again:?}");
        let ghost = full_spec(&json!({"slug": "q", "title": "Q", "services": [a.get(), 9999]}))
            .expect("page");
        let refused = store.create_status_page(&ghost, 12).await.expect("write");
        assert!(matches!(refused, PageSaved::UnknownService), "{refused:?}");
        assert_eq!(store.get_status_page("q").await.expect("read"), None);

        assert!(store.delete_service(a).await.expect("delete"));
        let read = store
            .get_status_page("p")
            .await
            .expect("read")
            .expect("page");
        assert_eq!(read.spec.services, [b]);
        let listed = store.listed_services(page.id).await.expect("listed");
        assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), [b]);

        let renamed = full_spec(&json!({"slug": "r", "title": "R", "services": []})).expect("page");
        let stale = page.updated_at;
        let saved = store
            .update_status_page("p", &renamed, 20, stale)
            .await
            .expect("update");
        assert!(
            matches!(saved, PageSaved::Saved(ref p) if p.spec.services.is_empty()),
            "{saved:?}"
        );
        let raced = store
            .update_status_page("r", &spec, 21, stale)
            .await
            .expect("update");
        assert!(matches!(raced, PageSaved::Conflict), "{raced:?}");
        let gone = store
            .update_status_page("p", &spec, 22, stale)
            .await
            .expect("update");
        assert!(matches!(gone, PageSaved::NotFound), "{gone:?}");

        for of in [DaysOf::Page(page.id), DaysOf::Service(ServiceId(b.get()))] {
            let days = store.day_counts(of, 0, 1 << 50).await.expect("days");
            assert!(days.is_empty(), "no rollups yet: {days:?}");
        }
        assert!(store.delete_status_page("r").await.expect("delete"));
        assert!(!store.delete_status_page("r").await.expect("delete"));
    }

    on_every_backend!(pages_keep_their_lists_and_lose_deleted_services);
}
