//! Maintenance windows by tag (`"tag"` on `/maintenance`, DESIGN.md
//! "Alerting"): a window covers every service carrying its tag when asked,
//! so a service tagged after the window was made is covered and one
//! untagged leaves it; a tag may stand alone or add to listed ids; a bad
//! tag is refused naming the field, and nothing is stored.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{Value, json};

fn hours_from_now(h: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::hours(h))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A paused service with `tags`, so no check changes it during the test.
async fn tagged(m: &Monitor, name: &str, tags: Value) -> i64 {
    id_of(
        &create(
            m,
            body_with(json!({"name": name, "paused": true, "tags": tags})),
        )
        .await,
    )
}

async fn retag(m: &Monitor, id: i64, tags: Value) -> Value {
    let r = send(
        m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"tags": tags}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

/// Which of `ids` show `in_maintenance`, by `GET /services/{id}` and by the
/// list (which must agree).
async fn covered(m: &Monitor, ids: &[i64]) -> Vec<i64> {
    let list = all_services(m).await;
    let mut out = Vec::new();
    for id in ids {
        let one = one_service(m, *id).await["in_maintenance"].clone();
        let listed = list
            .as_array()
            .expect("array")
            .iter()
            .find(|s| id_of(s) == *id)
            .expect("listed")["in_maintenance"]
            .clone();
        assert_eq!(one, listed, "GET /services/{id} and GET /services agree");
        if one == json!(true) {
            out.push(*id);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_by_tag_covers_whoever_carries_the_tag_now() {
    let mon = Monitor::start();
    let m = &mon;
    let db = tagged(m, "db", json!(["prod", "db"])).await;
    let web = tagged(m, "web", json!(["prod"])).await;
    let dev = tagged(m, "dev", json!(["staging"])).await;
    let untagged = tagged(m, "plain", json!([])).await;
    let all = [db, web, dev, untagged];
    assert_eq!(covered(m, &all).await, Vec::<i64>::new());

    // A tag alone: no service ids at all.
    let r = send(
        m,
        Method::POST,
        "/maintenance",
        &json!({"name": "db work", "tag": "db", "start": hours_from_now(-1),
                "end": hours_from_now(1)}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let w = r.json;
    assert_eq!(w["tag"], "db");
    assert_eq!(w["services"], json!([]));
    assert_eq!(w["active"], true);
    let path = format!("/maintenance/{}", id_of(&w));
    assert_eq!(get(m, &path).await.json, w, "read back as created");
    assert_eq!(covered(m, &all).await, [db]);

    // Tagged after the window was made: covered; untagged: no longer.
    let shown = retag(m, dev, json!(["staging", "db"])).await;
    assert_eq!(shown["in_maintenance"], true, "the write's answer says so");
    assert_eq!(covered(m, &all).await, [db, dev]);
    retag(m, db, json!(["prod"])).await;
    assert_eq!(covered(m, &all).await, [dev]);
    // A service registered with the tag is covered from the start.
    let late = create(
        m,
        body_with(json!({"name": "late", "paused": true, "tags": ["db"]})),
    )
    .await;
    assert_eq!(late["in_maintenance"], true, "{late}");

    // Ids and a tag together: either brings a service in.
    let r = send(
        m,
        Method::PATCH,
        &path,
        &json!({"services": [untagged], "tag": "prod"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["services"], json!([untagged]));
    assert_eq!(r.json["tag"], "prod");
    assert_eq!(covered(m, &all).await, [db, web, untagged]);

    // Dropping the tag leaves the ids; dropping both is refused.
    let r = send(m, Method::PATCH, &path, &json!({"tag": null})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["tag"], Value::Null);
    assert_eq!(covered(m, &all).await, [untagged]);
    let before = get(m, &path).await.json;
    let r = send(m, Method::PATCH, &path, &json!({"services": []})).await;
    assert_invalid(&r, &["services"], "no ids and no tag");
    assert_eq!(get(m, &path).await.json, before, "nothing changed");

    // A window that has not begun covers nobody, tag or not.
    let r = send(
        m,
        Method::POST,
        "/maintenance",
        &json!({"name": "later", "tag": "staging", "start": hours_from_now(5),
                "end": hours_from_now(6)}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(covered(m, &all).await, [untagged]);

    // Deleting the window ends it at once.
    let r = request(m, Method::DELETE, &path, None, None).await;
    assert_eq!(r.status, 204);
    assert_eq!(covered(m, &all).await, Vec::<i64>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tag_is_refused_naming_it_and_nothing_is_stored() {
    let mon = Monitor::start();
    let m = &mon;
    let svc = tagged(m, "a", json!(["prod"])).await;
    let base = |over: Value| {
        let mut body = json!({"name": "w", "cron": "0 2 * * SUN", "duration_s": 3600});
        for (k, v) in over.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    for (what, body, fields) in [
        ("empty tag", base(json!({"tag": ""})), vec!["tag"]),
        ("a space", base(json!({"tag": "p rod"})), vec!["tag"]),
        ("a list", base(json!({"tag": ["prod"]})), vec!["tag"]),
        ("a number", base(json!({"tag": 7})), vec!["tag"]),
        (
            "too long",
            base(json!({"tag": "t".repeat(65)})),
            vec!["tag"],
        ),
        (
            "beside all",
            base(json!({"tag": "prod", "services": "all"})),
            vec!["tag"],
        ),
        (
            "no ids, no tag",
            base(json!({"services": []})),
            vec!["services"],
        ),
        (
            "a bad tag and an unknown id",
            base(json!({"tag": "", "services": [svc, 424_242]})),
            vec!["tag"],
        ),
    ] {
        let r = send(m, Method::POST, "/maintenance", &body).await;
        assert_invalid(&r, &fields, what);
        let listed = get(m, "/maintenance").await;
        assert_eq!(listed.json, json!([]), "{what}: something was stored");
    }
    // The same rules guard PUT.
    let w = send(
        m,
        Method::POST,
        "/maintenance",
        &base(json!({"tag": "prod"})),
    )
    .await;
    assert_eq!(w.status, 201, "{}", w.text);
    let path = format!("/maintenance/{}", id_of(&w.json));
    let r = send(m, Method::PUT, &path, &base(json!({"tag": "a b"}))).await;
    assert_invalid(&r, &["tag"], "PUT with a bad tag");
    assert_eq!(get(m, &path).await.json, w.json, "PUT changed nothing");
}
