//! `GET /services` as a list that scales: pages by `limit` and `after`
//! followed through `Link`, the `status`, `tag` and `q` filters alone and
//! together, bad query values; `tags` on services (round trip, validation,
//! PATCH); and `/ws?tag=`.

use crate::helpers::*;
use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::LINK;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The path of a `Link: <...>; rel="next"` header, if any.
fn next_of(r: &Reply) -> Option<String> {
    let link = r.header(LINK)?;
    assert!(link.ends_with(r#">; rel="next""#), "{link}");
    let path = link.strip_prefix('<')?.split('>').next()?;
    Some(path.to_owned())
}

/// The ids of a page, asserting 200 and an array.
fn ids(r: &Reply) -> Vec<i64> {
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {}", r.text))
        .iter()
        .map(id_of)
        .collect()
}

/// Follows `Link` from `first` to the end: every id seen, in order, and
/// the paths asked for.
async fn walk(m: &Monitor, first: &str) -> (Vec<i64>, Vec<String>) {
    let (mut seen, mut paths) = (Vec::new(), Vec::new());
    let mut next = Some(first.to_owned());
    while let Some(path) = next {
        assert!(paths.len() < 100, "Link never ends: {paths:?}");
        let r = get(m, &path).await;
        seen.extend(ids(&r));
        paths.push(path);
        next = next_of(&r);
    }
    (seen, paths)
}

/// Registers paused services (nothing is checked) by `bodies`, 16 at a
/// time; returns their ids in the order given.
async fn register_all(m: &Monitor, bodies: Vec<Value>) -> Vec<i64> {
    let replies: Vec<Value> = futures_util::stream::iter(bodies)
        .map(|mut body| async move {
            body["paused"] = json!(true);
            create(m, body).await
        })
        .buffered(16)
        .collect()
        .await;
    replies.iter().map(id_of).collect()
}

fn unlimited() -> Monitor {
    Monitor::start_with(&[("HEALTHMON__API__WRITE_RATE_PER_S", "0")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_2500_services_by_1000_visits_each_once_following_link() {
    let m = unlimited();
    let bodies = (0..2500)
        .map(|i| body_with(json!({"name": format!("s{i}")})))
        .collect();
    let mut created = register_all(&m, bodies).await;
    // Registered 16 at a time, so ids need not follow the bodies' order.
    created.sort_unstable();

    let first = get(&m, "/services").await;
    assert_eq!(ids(&first).len(), 1000, "the default page is 1000");
    let (seen, paths) = walk(&m, "/services").await;
    assert_eq!(paths.len(), 3, "1000 + 1000 + 500: {paths:?}");
    assert!(paths[1].contains("limit=1000"), "{paths:?}");
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(seen, sorted, "pages are in id order");
    let expected: BTreeSet<i64> = created.iter().copied().collect();
    assert_eq!(seen.len(), 2500, "no service twice");
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), expected);

    // A page of exactly the rest still links on; the link after it is empty.
    let (seen, paths) = walk(&m, "/services?limit=500").await;
    assert_eq!(seen.len(), 2500);
    assert_eq!(paths.len(), 6, "5 full pages and an empty one: {paths:?}");
    let last = get(&m, &paths[5]).await;
    assert_eq!(ids(&last), Vec::<i64>::new());
    assert!(next_of(&last).is_none());

    // The largest page holds them all, and says nothing of a next one.
    let all = get(&m, "/services?limit=10000").await;
    assert_eq!(ids(&all).len(), 2500);
    assert!(next_of(&all).is_none());
    // `after` alone starts past an id.
    let after = get(&m, &format!("/services?after={}", created[2399])).await;
    assert_eq!(ids(&after), created[2400..].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_round_trip_and_patch_replaces_them() {
    let m = Monitor::start();
    let svc = create(
        &m,
        body_with(json!({"tags": ["prod", "api", "team:pay/eu-1", "Prod"]})),
    )
    .await;
    let id = id_of(&svc);
    let tags = json!(["prod", "api", "team:pay/eu-1", "Prod"]);
    assert_eq!(svc["tags"], tags, "order kept, case-sensitive");
    assert_eq!(one_service(&m, id).await["tags"], tags);
    assert_eq!(all_services(&m).await[0]["tags"], tags);
    let bare = create(&m, body_with(json!({"name": "bare"}))).await;
    assert_eq!(bare["tags"], json!([]));
    let null = create(&m, body_with(json!({"name": "null", "tags": null}))).await;
    assert_eq!(null["tags"], json!([]));

    // PATCH replaces the list; without `tags` it stays; null clears it.
    let r = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"tags": ["staging"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["tags"], json!(["staging"]));
    let r = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"name": "x"}),
    )
    .await;
    assert_eq!(r.json["tags"], json!(["staging"]));
    assert_eq!(ids(&get(&m, "/services?tag=staging").await), [id]);
    assert_eq!(ids(&get(&m, "/services?tag=prod").await), Vec::<i64>::new());
    let r = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"tags": null}),
    )
    .await;
    assert_eq!(r.json["tags"], json!([]));
    assert_eq!(
        ids(&get(&m, "/services?tag=staging").await),
        Vec::<i64>::new()
    );
    // PUT sets every field: tags given are the list.
    let put = send(
        &m,
        Method::PUT,
        &format!("/services/{id}"),
        &body_with(json!({"tags": ["a", "b"]})),
    )
    .await;
    assert_eq!(put.json["tags"], json!(["a", "b"]));
    assert_eq!(ids(&get(&m, "/services?tag=b").await), [id]);
    // A deleted service leaves every tag list.
    let r = request(&m, Method::DELETE, &format!("/services/{id}"), None, None).await;
    assert_eq!(r.status, 204);
    assert_eq!(ids(&get(&m, "/services?tag=a").await), Vec::<i64>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tags_are_422_naming_the_tag_and_nothing_is_stored() {
    let m = Monitor::start();
    let too_many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
    for (tags, field) in [
        (json!(["ok", ""]), "tags[1]"),
        (json!(["x".repeat(65)]), "tags[0]"),
        (json!(["has space"]), "tags[0]"),
        (json!(["prod", "prod"]), "tags[1]"),
        (json!([1]), "tags[0]"),
        (json!("prod"), "tags"),
        (json!(too_many), "tags"),
    ] {
        let r = send(
            &m,
            Method::POST,
            "/services",
            &body_with(json!({ "tags": tags })),
        )
        .await;
        assert_invalid(&r, &[field], &format!("POST tags {tags}"));
    }
    assert_eq!(all_services(&m).await, json!([]));
    let svc = create(&m, body_with(json!({"tags": ["prod"]}))).await;
    let id = id_of(&svc);
    let r = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"tags": ["ok", "bad*"], "name": "renamed"}),
    )
    .await;
    assert_invalid(&r, &["tags[1]"], "PATCH");
    let now = one_service(&m, id).await;
    assert_eq!(
        (now["tags"].clone(), now["name"].clone()),
        (json!(["prod"]), svc["name"].clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_tag_and_name_filter_alone_and_together_and_link_keeps_them() {
    let target = Target::start().await;
    let m = unlimited();
    let up = |name: &str, tags: Value| json!({"name": name, "url": target.url("/ok"), "interval": 1, "timeout": 1, "tags": tags});
    let down = |name: &str, tags: Value| json!({"name": name, "url": target.url("/fail"), "interval": 1, "timeout": 1, "tags": tags});
    let api_up = id_of(&create(&m, up("Payments API", json!(["prod", "api"]))).await);
    let web_up = id_of(&create(&m, up("web front", json!(["prod"]))).await);
    let api_down = id_of(&create(&m, down("search api", json!(["prod", "api"]))).await);
    let staging_down = id_of(&create(&m, down("staging API", json!(["staging", "api"]))).await);
    let odd = id_of(
        &create(
            &m,
            body_with(json!({"name": "100%_done\\x", "paused": true})),
        )
        .await,
    );
    let pending = id_of(&create(&m, body_with(json!({"name": "idle", "paused": true}))).await);
    eventually("every checked service to settle", || async {
        let list = all_services(&m).await;
        let settled = list
            .as_array()?
            .iter()
            .filter(|s| matches!(s["last_status"].as_str(), Some("UP" | "DOWN")));
        (settled.count() == 4).then_some(())
    })
    .await;

    let cases: Vec<(&str, Vec<i64>)> = vec![
        ("status=UP", vec![api_up, web_up]),
        ("status=DOWN", vec![api_down, staging_down]),
        ("status=pending", vec![odd, pending]),
        (
            "status=UP,DOWN",
            vec![api_up, web_up, api_down, staging_down],
        ),
        (
            "status=UP&status=PENDING",
            vec![api_up, web_up, odd, pending],
        ),
        ("status=DEGRADED", vec![]),
        ("tag=prod", vec![api_up, web_up, api_down]),
        ("tag=api", vec![api_up, api_down, staging_down]),
        ("tag=Prod", vec![]),
        ("q=API", vec![api_up, api_down, staging_down]),
        ("q=%25_", vec![odd]),
        ("q=_", vec![odd]),
        ("q=%5C", vec![odd]),
        ("q=%25", vec![odd]),
        ("tag=api&status=DOWN", vec![api_down, staging_down]),
        ("tag=prod&status=DOWN&q=search", vec![api_down]),
        ("tag=prod&q=web&status=UP", vec![web_up]),
        ("tag=staging&status=UP", vec![]),
        (
            "q=",
            vec![api_up, web_up, api_down, staging_down, odd, pending],
        ),
    ];
    for (query, expected) in &cases {
        let r = get(&m, &format!("/services?{query}")).await;
        assert_eq!(&ids(&r), expected, "{query}");
    }

    // Paged one at a time, each filter stays on every Link.
    for query in [
        "tag=api&status=DOWN",
        "tag=prod&q=a",
        "status=UP,DOWN&q=api",
    ] {
        let (seen, paths) = walk(&m, &format!("/services?limit=1&{query}")).await;
        let all = ids(&get(&m, &format!("/services?{query}")).await);
        assert_eq!(seen, all, "{query}");
        for path in &paths[1..] {
            for part in query.split('&') {
                let (key, _) = part.split_once('=').unwrap();
                assert!(path.contains(&format!("{key}=")), "{path} lost {key}");
            }
            assert!(path.contains("limit=1&after="), "{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_list_queries_are_400_naming_the_parameter() {
    let m = Monitor::start();
    create(&m, body_with(json!({}))).await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=ten", "limit"),
        ("after=0", "after"),
        ("after=007", "after"),
        ("after=-1", "after"),
        ("after=x", "after"),
        ("status=SIDEWAYS", "status"),
        ("status=UP,", "status"),
        ("tag=", "tag"),
        ("tag=a%20b", "tag"),
        ("tag=a&tag=b", "tag"),
    ] {
        let r = get(&m, &format!("/services?{query}")).await;
        assert_problem(&r, 400, query);
        let fields = error_fields(&r, query);
        assert_eq!(fields, BTreeSet::from([field.to_owned()]), "{query}");
    }
    // The same answer the logs give for their bad query.
    let logs = get(&m, "/services/1/logs?limit=0").await;
    let list = get(&m, "/services?limit=0").await;
    assert_eq!(list.json["type"], logs.json["type"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_with_a_tag_sees_only_services_with_it() {
    let target = Target::start().await;
    let m = Monitor::start();
    let checked = |name: &str, tags: Value| json!({"name": name, "url": target.url("/ok"), "interval": 1, "timeout": 1, "tags": tags});
    let prod = id_of(&create(&m, checked("p", json!(["prod"]))).await);
    let other = id_of(&create(&m, checked("o", json!(["staging"]))).await);

    let (stream, _) = tokio_tungstenite::connect_async(format!("{}?tag=prod", m.ws_url()))
        .await
        .expect("ws connect");
    let mut ws = WsClient { stream };
    let (snapshot, _) = ws.until("the snapshot", |v| v["type"] == "snapshot").await;
    assert_eq!(snapshot["last"], true);
    let shown: Vec<i64> = snapshot["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(shown, [prod]);
    assert_eq!(snapshot["services"][0]["tags"], json!(["prod"]));

    // Checks of the tagged service only; then `other` gains the tag and its
    // checks follow; a new untagged service is never mentioned.
    let about = |v: &Value| v["service_id"].as_i64().or(v["service"]["id"].as_i64());
    let (_, before) = ws
        .until("a check of the tagged service", |v| {
            v["type"] == "check" && about(v) == Some(prod)
        })
        .await;
    assert!(before.iter().all(|v| about(v) == Some(prod)), "{before:?}");
    let untagged = id_of(&create(&m, checked("u", json!([]))).await);
    let r = send(
        &m,
        Method::PATCH,
        &format!("/services/{other}"),
        &json!({"tags": ["prod"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (updated, seen) = ws
        .until("the update that tags it", |v| {
            v["type"] == "service_updated"
        })
        .await;
    assert_eq!(updated["service"]["id"], other);
    let (_, seen_after) = ws
        .until("a check of the newly tagged service", |v| {
            v["type"] == "check" && about(v) == Some(other)
        })
        .await;
    for v in seen.iter().chain(&seen_after) {
        assert_ne!(about(v), Some(untagged), "{v}");
        assert_ne!(about(v), Some(other), "before its tag: {v}");
    }
    // Deleting it sends its deletion; nothing of it follows.
    let r = request(
        &m,
        Method::DELETE,
        &format!("/services/{other}"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    ws.until("its deletion", |v| {
        v["type"] == "service_deleted" && about(v) == Some(other)
    })
    .await;
    let (_, between) = ws
        .until("two more checks of the tagged one", {
            let count = std::sync::atomic::AtomicUsize::new(0);
            move |v| {
                v["type"] == "check"
                    && about(v) == Some(prod)
                    && count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 1
            }
        })
        .await;
    assert!(
        between.iter().all(|v| about(v) == Some(prod)),
        "{between:?}"
    );

    // A bad tag refuses the upgrade, naming it.
    let r = get(&m, "/ws?tag=a%20b").await;
    assert_problem(&r, 400, "ws tag");
    assert_eq!(
        error_fields(&r, "ws tag"),
        BTreeSet::from(["tag".to_owned()])
    );
}
