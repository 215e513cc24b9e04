//! Bulk registration (issue 17.5): a script registering 1,000 services in
//! parallel on a fresh install, `POST /services/bulk` (all-or-nothing, one
//! write for the rate limit, its own body limit), and the write limit that
//! still holds once a key exists.
use crate::helpers::*;

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

/// `POST /services/bulk`'s limits, as the server has them.
const MAX_ITEMS: usize = 1000;
const MAX_BODY: usize = 4 * 1024 * 1024;

fn paused(name: &str) -> Value {
    json!({"name": name, "url": NOWHERE, "interval": 60, "paused": true})
}

async fn bulk(m: &Monitor, items: &Value) -> Reply {
    send(m, Method::POST, "/services/bulk", items).await
}

async fn bulk_with_key(m: &Monitor, key: &str, items: &Value) -> u16 {
    m.http
        .post(m.url("/services/bulk"))
        .bearer_auth(key)
        .json(items)
        .send()
        .await
        .expect("POST")
        .status()
        .as_u16()
}

/// Every service's id, paging through `GET /services`.
async fn all_ids(m: &Monitor, key: Option<&str>) -> Vec<i64> {
    let mut ids = Vec::new();
    loop {
        let path = match ids.last() {
            Some(after) => format!("/services?limit=1000&after={after}"),
            None => "/services?limit=1000".to_owned(),
        };
        let mut req = m.http.get(m.url(&path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let page: Value = req.send().await.expect("GET").json().await.expect("json");
        let page = page.as_array().expect("a list").clone();
        ids.extend(page.iter().map(id_of));
        if page.len() < 1000 {
            return ids;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_parallel_registrations_on_a_fresh_install_all_succeed() {
    // The default limits (50 writes/s, a burst of 200): a laptop's own
    // script on loopback is not limited while the API is open.
    let m = Monitor::start();
    let posts = (0..1000).map(|i| {
        let m = &m;
        async move {
            let r = send(m, Method::POST, "/services", &paused(&format!("svc-{i}"))).await;
            (r.status, r.text)
        }
    });
    let answers = join_all(posts).await;
    let refused: Vec<&(u16, String)> = answers.iter().filter(|(s, _)| *s != 201).collect();
    assert!(
        refused.is_empty(),
        "{} of 1,000 refused, e.g. {:?}",
        refused.len(),
        refused.first()
    );
    let ids: BTreeSet<i64> = all_ids(&m, None).await.into_iter().collect();
    assert_eq!(ids.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_of_a_thousand_is_one_request_one_write_and_each_is_scheduled_and_announced() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let key = create_key(&dir, "importer", "write");
    // A burst of 2 writes: two bulks pass, the third write is one too many.
    let m = Monitor::start_in(
        Arc::clone(&dir),
        &[
            ("HEALTHMON__API__WRITE_RATE_PER_S", "1"),
            ("HEALTHMON__API__WRITE_BURST", "2"),
        ],
    );
    let target = Target::start().await;
    let mut ws_req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "{}?access_token={key}",
            m.ws_url()
        ))
        .expect("ws request");
    ws_req.headers_mut().remove("origin");
    let (stream, _) = tokio_tungstenite::connect_async(ws_req)
        .await
        .expect("ws connect");
    let mut ws = WsClient { stream };
    ws.until("the snapshot's last page", |v| v["last"] == json!(true))
        .await;

    // Every kind; the first one live, so its first check shows it was
    // scheduled; the rest paused.
    let mut items = vec![json!({"name": "live", "url": target.url("/ok"), "interval": 60})];
    let kinds = [
        json!({"url": "tcp://127.0.0.1:9", "paused": true}),
        json!({"url": "tls://127.0.0.1:9", "paused": true}),
        json!({"url": "dns://127.0.0.1:9/example.com?type=A", "paused": true}),
        json!({"url": "push://", "paused": true}),
        json!({"url": NOWHERE, "paused": true, "tags": ["bulk"], "body_contains": "ok"}),
    ];
    while items.len() < MAX_ITEMS {
        let mut item = kinds[items.len() % kinds.len()].clone();
        item["name"] = json!(format!("svc-{}", items.len()));
        item["interval"] = json!(60);
        items.push(item);
    }
    let items = Value::Array(items);
    let resp = m
        .http
        .post(m.url("/services/bulk"))
        .bearer_auth(&key)
        .json(&items)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 201);
    let created: Vec<Value> = resp.json().await.expect("json");
    assert_eq!(created.len(), MAX_ITEMS);
    let mut previous = 0;
    for (i, svc) in created.iter().enumerate() {
        assert_eq!(svc["name"], items[i]["name"], "in the order given");
        assert!(id_of(svc) > previous, "ids ascend: {svc}");
        previous = id_of(svc);
        assert_eq!(svc["last_status"], "PENDING");
        let push = items[i]["url"] == "push://";
        assert_eq!(
            svc["push_url"]
                .as_str()
                .is_some_and(|u| u.starts_with("/push/")),
            push,
            "a push URL for push services only: {svc}"
        );
    }
    assert_eq!(created[4]["tags"], json!(["bulk"]));

    // Announced: a service_created event for each, in order.
    let mut announced = Vec::new();
    while announced.len() < MAX_ITEMS {
        let (event, _) = ws
            .until("service_created events", |v| v["type"] == "service_created")
            .await;
        assert!(event["service"].get("push_url").is_none(), "{event}");
        announced.push(id_of(&event["service"]));
    }
    let ids: Vec<i64> = created.iter().map(id_of).collect();
    assert_eq!(announced, ids);

    // Scheduled: the live one is checked.
    let logs_path = m.url(&format!("/services/{}/logs", ids[0]));
    eventually("the live service's first check", || async {
        let logs: Value = m
            .http
            .get(&logs_path)
            .bearer_auth(&key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (!logs.as_array()?.is_empty()).then_some(())
    })
    .await;
    // A push token works.
    let push_url = created[3]["push_url"].as_str().expect("push url");
    let ping = m.http.get(m.url(push_url)).send().await.expect("ping");
    assert_eq!(ping.status(), 200);

    // One write each: the second bulk passes, then the burst is spent.
    let second: Value = Value::Array((0..10).map(|i| paused(&format!("more-{i}"))).collect());
    assert_eq!(bulk_with_key(&m, &key, &second).await, 201);
    assert_eq!(bulk_with_key(&m, &key, &second).await, 429);
    assert_eq!(all_ids(&m, Some(&key)).await.len(), MAX_ITEMS + 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_item_stores_nothing_and_every_problem_is_named_by_its_index() {
    let m = Monitor::start();
    let mut items: Vec<Value> = (0..10).map(|i| paused(&format!("svc-{i}"))).collect();
    items[3]["url"] = json!("ftp://example.com/");
    items[7].as_object_mut().expect("object").remove("name");
    items[9]["interval"] = json!("often");
    let r = bulk(&m, &Value::Array(items.clone())).await;
    assert_invalid(&r, &["[3].url", "[7].name", "[9].interval"], "bad items");
    assert!(all_ids(&m, None).await.is_empty(), "something was stored");
    // Channels are looked up once the items are valid, as for one service.
    let unknown_channel = json!([paused("a"), {"name": "b", "url": NOWHERE, "interval": 60,
        "channels": [4242]}]);
    assert_invalid(
        &bulk(&m, &unknown_channel).await,
        &["[1].channels"],
        "a channel",
    );

    // A key given twice in one item is named with its index too.
    let mut text = serde_json::to_string(&Value::Array(items[..3].to_vec())).expect("json");
    text = text.replacen(r#""name":"svc-2""#, r#""name":"svc-2","name":"again""#, 1);
    let r = send_raw(&m, Method::POST, "/services/bulk", &text).await;
    assert_invalid(&r, &["[2].name"], "a repeated key");

    // A blocked literal target is refused per item, as for one service.
    let blocked = json!([paused("fine"), {"name": "meta", "url": "tcp://169.254.169.254:80", "interval": 60}]);
    assert_invalid(&bulk(&m, &blocked).await, &["[1].url"], "link-local");
    assert!(all_ids(&m, None).await.is_empty(), "something was stored");

    // The same items, fixed, go in whole.
    items[3]["url"] = json!(NOWHERE);
    items[7]["name"] = json!("svc-7");
    items[9]["interval"] = json!(60);
    let r = bulk(&m, &Value::Array(items)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(all_ids(&m, None).await.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_has_limits_of_count_and_size_and_is_not_a_service_id() {
    let m = Monitor::start();
    let too_many = Value::Array((0..=MAX_ITEMS).map(|i| paused(&format!("s{i}"))).collect());
    let r = bulk(&m, &too_many).await;
    assert_problem(&r, 422, "1,001 items");
    assert!(r.text.contains("1000"), "{}", r.text);
    assert_problem(&bulk(&m, &json!([])).await, 422, "no items");
    assert_problem(&bulk(&m, &paused("one")).await, 422, "an object");

    // The body limit is this route's own: exactly at it is read, one byte
    // more is 413 (JSON allows the padding).
    let small = serde_json::to_string(&json!([paused("padded")])).expect("json");
    let at_limit = format!("{small}{}", " ".repeat(MAX_BODY - small.len()));
    let r = send_raw(&m, Method::POST, "/services/bulk", &at_limit).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let over = format!("{at_limit} ");
    let r = send_raw(&m, Method::POST, "/services/bulk", &over).await;
    assert_problem(&r, 413, "one byte over");
    // ... and POST /services keeps its 64 KiB.
    let one = serde_json::to_string(&paused("big")).expect("json");
    let big = format!("{one}{}", " ".repeat(64 * 1024));
    let r = send_raw(&m, Method::POST, "/services", &big).await;
    assert_problem(&r, 413, "a single service over 64 KiB");
    assert_eq!(all_ids(&m, None).await.len(), 1);

    // /services/bulk is no service id: other methods say what it takes.
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let r = request(&m, method.clone(), "/services/bulk", None, None).await;
        assert_problem(&r, 405, &format!("{method} /services/bulk"));
        assert_eq!(r.header(reqwest::header::ALLOW), Some("POST, OPTIONS"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_single_writes_are_still_limited() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let key = create_key(&dir, "script", "write");
    let m = Monitor::start_in(
        Arc::clone(&dir),
        &[
            ("HEALTHMON__API__WRITE_RATE_PER_S", "1"),
            ("HEALTHMON__API__WRITE_BURST", "20"),
        ],
    );
    let posts = (0..100).map(|i| {
        let (m, key) = (&m, &key);
        async move {
            m.http
                .post(m.url("/services"))
                .bearer_auth(key)
                .json(&paused(&format!("svc-{i}")))
                .send()
                .await
                .expect("POST")
                .status()
                .as_u16()
        }
    });
    let statuses = join_all(posts).await;
    let created = statuses.iter().filter(|s| **s == 201).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(created + limited, 100, "{statuses:?}");
    assert!(
        (20..=25).contains(&created) && limited >= 75,
        "{created} created, {limited} limited"
    );
    assert_eq!(all_ids(&m, Some(&key)).await.len(), created);
}

/// The store's side on both backends: one transaction, so a row that fails
/// (here a push token hash that is not unique) leaves nothing behind.
mod store {
    use crate::common::stores::on_every_backend;
    use healthmon::domain::validate;
    use healthmon::store::{NewService, Store};
    use serde_json::json;

    async fn a_batch_is_stored_whole_or_not_at_all(store: Store) {
        let specs: Vec<_> = (0..300)
            .map(|i| {
                let url = if i % 3 == 0 {
                    "push://"
                } else {
                    "http://127.0.0.1:9/"
                };
                let body = json!({"name": format!("s{i}"), "url": url, "interval": 30,
                    "tags": ["bulk", format!("t{}", i % 2)]});
                validate::full_spec(&body).expect("spec")
            })
            .collect();
        let hashes: Vec<String> = (0..specs.len()).map(|i| format!("hash-{i}")).collect();
        let batch: Vec<NewService<'_>> = specs
            .iter()
            .zip(&hashes)
            .enumerate()
            .map(|(i, (spec, hash))| NewService {
                spec,
                push_token_hash: (i % 3 == 0).then_some(hash.as_str()),
            })
            .collect();
        let created = store.create_services(&batch, 7).await.expect("create");
        assert_eq!(created.len(), 300);
        assert!(created.windows(2).all(|w| w[0].id.get() < w[1].id.get()));
        assert_eq!(created[1].tags, ["bulk", "t1"]);
        let found = store
            .service_by_push_token("hash-3")
            .await
            .expect("read")
            .expect("by token");
        assert_eq!(found.id, created[3].id);
        let tagged = store
            .list_services_page(&healthmon::store::ServiceFilter {
                tag: Some("t0".into()),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(tagged.len(), 150, "tags go to the side table");

        // A repeated token hash fails the last row: none of the batch stays.
        let again: Vec<NewService<'_>> = batch[..4]
            .iter()
            .map(|n| NewService {
                spec: n.spec,
                push_token_hash: Some("the-same"),
            })
            .collect();
        assert!(store.create_services(&again, 8).await.is_err());
        assert_eq!(store.count_services().await.expect("count"), 300);
    }

    on_every_backend!(a_batch_is_stored_whole_or_not_at_all);
}
