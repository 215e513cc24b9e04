//! Maintenance windows (`/maintenance`, DESIGN.md "Alerting") as a user sees
//! them: create, read, list, replace, patch and delete one-off and recurring
//! windows; every bad input refused with a 422 naming the field and nothing
//! stored; the number of windows bounded; `in_maintenance` on services.

use crate::helpers::*;
use reqwest::Method;
use reqwest::header::{LINK, LOCATION};
use serde_json::{Value, json};

/// The fields of a window response.
const WINDOW_FIELDS: [&str; 13] = [
    "id",
    "name",
    "services",
    "tag",
    "start",
    "end",
    "cron",
    "duration_s",
    "timezone",
    "active",
    "next_start",
    "created_at",
    "updated_at",
];

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn hours_from_now(h: i64) -> String {
    rfc3339(chrono::Utc::now() + chrono::TimeDelta::hours(h))
}

async fn create_window(m: &Monitor, body: Value) -> Value {
    let r = send(m, Method::POST, "/maintenance", &body).await;
    assert_eq!(r.status, 201, "create {body} failed: {}", r.text);
    r.json
}

async fn all_windows(m: &Monitor) -> Vec<Value> {
    let r = get(m, "/maintenance").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json.as_array().expect("an array").clone()
}

/// A paused service, so no check ever changes it during a test.
async fn quiet_service(m: &Monitor, name: &str) -> i64 {
    id_of(&create(m, body_with(json!({"name": name, "paused": true}))).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_off_window_is_created_read_listed_patched_replaced_and_deleted() {
    let mon = Monitor::start();
    let m = &mon;
    let svc = quiet_service(m, "db").await;
    let (start, end) = (hours_from_now(-1), hours_from_now(2));

    let r = send(
        m,
        Method::POST,
        "/maintenance",
        &json!({"name": "db upgrade", "services": [svc], "start": start, "end": end}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let w = r.json.clone();
    for key in WINDOW_FIELDS {
        assert!(w.get(key).is_some(), "response lacks {key}: {w}");
    }
    let id = id_of(&w);
    assert_eq!(
        r.header(LOCATION),
        Some(format!("/maintenance/{id}").as_str())
    );
    assert_eq!(w["name"], "db upgrade");
    assert_eq!(w["services"], json!([svc]));
    assert_eq!(parse_time(&w["start"]), parse_time(&json!(start)));
    assert_eq!(parse_time(&w["end"]), parse_time(&json!(end)));
    assert_eq!(w["active"], true, "it began an hour ago: {w}");
    assert_eq!(
        w["next_start"],
        Value::Null,
        "a one-off window that began opens no more"
    );
    assert_eq!(
        (&w["cron"], &w["duration_s"], &w["timezone"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    assert_eq!(w["created_at"], w["updated_at"]);

    assert_eq!(get(m, &format!("/maintenance/{id}")).await.json, w);
    assert_eq!(all_windows(m).await, vec![w.clone()]);

    // PATCH changes what it names and nothing else.
    wait_past(&w["updated_at"]).await;
    let r = send(
        m,
        Method::PATCH,
        &format!("/maintenance/{id}"),
        &json!({"name": "db v17"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["name"], "db v17");
    assert_eq!(r.json["start"], w["start"]);
    assert_eq!(r.json["services"], w["services"]);
    assert!(parse_time(&r.json["updated_at"]) > parse_time(&w["updated_at"]));
    assert_eq!(r.json["created_at"], w["created_at"]);

    // PUT replaces it whole: now a recurring window on every service.
    let r = send(
        m,
        Method::PUT,
        &format!("/maintenance/{id}"),
        &json!({"name": "sundays", "services": "all", "cron": "0 2 * * SUN",
                "duration_s": 3600, "timezone": "Europe/Berlin"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let w = r.json;
    assert_eq!(w["services"], "all");
    assert_eq!((&w["start"], &w["end"]), (&Value::Null, &Value::Null));
    assert_eq!(w["cron"], "0 2 * * SUN");
    assert_eq!(w["duration_s"], 3600);
    assert_eq!(w["timezone"], "Europe/Berlin");
    // The next start is a Sunday, 02:00 on Berlin's wall clock (or 03:00
    // on a spring-forward day), within a week.
    let next = parse_time(&w["next_start"]);
    let berlin = next.with_timezone(&chrono_tz::Europe::Berlin);
    use chrono::{Datelike, Timelike};
    assert_eq!(berlin.weekday(), chrono::Weekday::Sun, "{berlin}");
    assert!(
        matches!(berlin.hour(), 2 | 3) && berlin.minute() == 0,
        "{berlin}"
    );
    assert!(next > chrono::Utc::now() && next <= chrono::Utc::now() + chrono::TimeDelta::days(7));
    assert_eq!(
        get(m, &format!("/maintenance/{id}")).await.json["cron"],
        "0 2 * * SUN"
    );

    // A PATCH that changes nothing writes nothing.
    let r = send(
        m,
        Method::PATCH,
        &format!("/maintenance/{id}"),
        &json!({"duration_s": 3600}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["updated_at"], w["updated_at"]);

    let r = request(m, Method::DELETE, &format!("/maintenance/{id}"), None, None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_problem(
        &get(m, &format!("/maintenance/{id}")).await,
        404,
        "deleted window",
    );
    let r = request(m, Method::DELETE, &format!("/maintenance/{id}"), None, None).await;
    assert_problem(&r, 404, "deleting twice");
    assert!(all_windows(m).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_in_the_future_is_not_active_and_says_when_it_starts() {
    let mon = Monitor::start();
    let m = &mon;
    let start = hours_from_now(24);
    let w = create_window(
        m,
        json!({"name": "later", "services": "all", "start": start, "end": hours_from_now(25)}),
    )
    .await;
    assert_eq!(w["active"], false);
    assert_eq!(parse_time(&w["next_start"]), parse_time(&json!(start)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_can_change_kind_by_patch_when_the_old_fields_are_removed_with_null() {
    let mon = Monitor::start();
    let m = &mon;
    let w = create_window(
        m,
        json!({"name": "w", "services": "all", "start": hours_from_now(1), "end": hours_from_now(2)}),
    )
    .await;
    let path = format!("/maintenance/{}", id_of(&w));
    let r = send(
        m,
        Method::PATCH,
        &path,
        &json!({"cron": "*/5 * * * *", "duration_s": 60}),
    )
    .await;
    assert_invalid(&r, &["cron", "duration_s"], "both kinds at once");
    assert_eq!(
        get(m, &path).await.json,
        w,
        "a refused PATCH changes nothing"
    );
    let r = send(
        m,
        Method::PATCH,
        &path,
        &json!({"start": null, "end": null, "cron": "*/5 * * * *", "duration_s": 60}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["cron"], "*/5 * * * *");
    assert_eq!(
        r.json["timezone"], "UTC",
        "a recurring window's zone defaults to UTC"
    );
    assert_eq!(r.json["start"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_window_is_refused_naming_the_field_and_nothing_is_stored() {
    let mon = Monitor::start();
    let m = &mon;
    let svc = quiet_service(m, "web").await;
    let (start, end) = (hours_from_now(1), hours_from_now(2));
    let recurring = |over: Value| {
        let mut body = json!({"name": "r", "services": [svc], "cron": "0 2 * * SUN",
                              "duration_s": 3600, "timezone": "Europe/Berlin"});
        for (k, v) in over.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "bad cron",
            recurring(json!({"cron": "0 2 * *"})),
            vec!["cron"],
        ),
        (
            "cron with seconds",
            recurring(json!({"cron": "0 0 2 * * SUN"})),
            vec!["cron"],
        ),
        (
            "cron out of range",
            recurring(json!({"cron": "0 25 * * *"})),
            vec!["cron"],
        ),
        (
            "cron that never matches",
            recurring(json!({"cron": "0 0 30 2 *"})),
            vec!["cron"],
        ),
        (
            "unknown time zone",
            recurring(json!({"timezone": "Europe/Atlantis"})),
            vec!["timezone"],
        ),
        (
            "zero duration",
            recurring(json!({"duration_s": 0})),
            vec!["duration_s"],
        ),
        (
            "duration over 7 days",
            recurring(json!({"duration_s": 604_801})),
            vec!["duration_s"],
        ),
        (
            "duration as text",
            recurring(json!({"duration_s": "1h"})),
            vec!["duration_s"],
        ),
        (
            "cron without duration",
            recurring(json!({"duration_s": null})),
            vec!["duration_s"],
        ),
        (
            "end before start",
            json!({"name": "o", "services": "all", "start": end, "end": start}),
            vec!["end"],
        ),
        (
            "end equal to start",
            json!({"name": "o", "services": "all", "start": start, "end": start}),
            vec!["end"],
        ),
        (
            "start without an offset",
            json!({"name": "o", "services": "all", "start": "2030-01-01T00:00:00", "end": end}),
            vec!["start"],
        ),
        (
            "start without end",
            json!({"name": "o", "services": "all", "start": start}),
            vec!["end"],
        ),
        (
            "both kinds",
            json!({"name": "o", "services": "all", "start": start, "end": end,
                   "cron": "0 2 * * *", "duration_s": 60}),
            vec!["cron", "duration_s"],
        ),
        (
            "neither kind",
            json!({"name": "o", "services": "all"}),
            vec!["start"],
        ),
        (
            "unknown service",
            recurring(json!({"services": [svc, 999_999]})),
            vec!["services"],
        ),
        (
            "no services",
            recurring(json!({"services": []})),
            vec!["services"],
        ),
        (
            "services missing",
            recurring(json!({"services": null})),
            vec!["services"],
        ),
        (
            "a tag beside services \"all\"",
            recurring(json!({"services": "all", "tag": "prod"})),
            vec!["tag"],
        ),
        (
            "a tag that no service could carry",
            recurring(json!({"services": null, "tag": "no spaces"})),
            vec!["tag"],
        ),
        (
            "tags as a list",
            recurring(json!({"services": null, "tag": ["prod"]})),
            vec!["tag"],
        ),
        (
            "unknown field",
            recurring(json!({"colour": "red"})),
            vec!["colour"],
        ),
        (
            "read-only field",
            recurring(json!({"active": true})),
            vec!["active"],
        ),
        ("empty name", recurring(json!({"name": " "})), vec!["name"]),
        ("not an object", json!(["a"]), vec![""]),
    ];
    for (what, body, fields) in cases {
        let r = send(m, Method::POST, "/maintenance", &body).await;
        assert_invalid(&r, &fields, what);
        assert!(
            all_windows(m).await.is_empty(),
            "{what}: something was stored"
        );
    }
    let r = send_raw(m, Method::POST, "/maintenance", "{\"name\": ").await;
    assert_problem(&r, 400, "malformed JSON");

    // The same checks guard PUT and PATCH, and a refused one changes nothing.
    let w = create_window(m, recurring(json!({}))).await;
    let path = format!("/maintenance/{}", id_of(&w));
    for (method, body, field) in [
        (Method::PATCH, json!({"cron": "every sunday"}), "cron"),
        (Method::PATCH, json!({"timezone": "Berlin"}), "timezone"),
        (Method::PATCH, json!({"services": [424_242]}), "services"),
        (
            Method::PUT,
            json!({"name": "p", "services": "all", "start": end, "end": start}),
            "end",
        ),
    ] {
        let r = send(m, method.clone(), &path, &body).await;
        assert_invalid(&r, &[field], &format!("{method} {body}"));
        assert_eq!(
            get(m, &path).await.json,
            w,
            "{method} {body} changed the window"
        );
    }
    for path in [
        "/maintenance/0",
        "/maintenance/01",
        "/maintenance/+1",
        "/maintenance/x",
        "/maintenance/424242",
    ] {
        assert_problem(&get(m, path).await, 404, path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_a_thousand_windows_exist_and_they_list_a_page_at_a_time() {
    let mon = Monitor::start_with(&[("HEALTHMON__API__WRITE_RATE_PER_S", "0")]);
    let m = &mon;
    let body = json!({"name": "w", "services": "all", "cron": "0 3 * * *", "duration_s": 60});
    let mut created = 0;
    while created < 1000 {
        let batch = (1000 - created).min(16);
        let replies = futures_util::future::join_all(
            (0..batch).map(|_| send(m, Method::POST, "/maintenance", &body)),
        )
        .await;
        for r in replies {
            assert_eq!(r.status, 201, "{}", r.text);
        }
        created += batch;
    }
    let r = send(m, Method::POST, "/maintenance", &body).await;
    assert_problem(&r, 409, "the 1001st window");
    assert!(
        r.json["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("1000"),
        "{}",
        r.text
    );

    // Pages of 400 follow their Link headers to all 1000, each once.
    let mut seen = Vec::new();
    let mut next = Some("/maintenance?limit=400".to_owned());
    while let Some(path) = next.take() {
        let r = get(m, &path).await;
        assert_eq!(r.status, 200, "{}", r.text);
        seen.extend(r.json.as_array().expect("array").iter().map(id_of));
        next = r.header(LINK).map(|link| {
            link.split_once('<')
                .and_then(|(_, rest)| rest.split_once('>'))
                .map(|(target, _)| target.to_owned())
                .expect("a Link target")
        });
    }
    assert_eq!(seen.len(), 1000);
    assert!(
        seen.windows(2).all(|p| p[0] < p[1]),
        "ascending ids, no repeats"
    );
    assert_eq!(
        all_windows(m).await.len(),
        1000,
        "the default page is the bound"
    );
    let r = get(m, "/maintenance?limit=0").await;
    assert_problem(&r, 400, "limit=0");
    assert_eq!(error_fields(&r, "limit=0"), ["limit".to_owned()].into());

    // Deleting one makes room for one.
    let r = request(
        m,
        Method::DELETE,
        &format!("/maintenance/{}", seen[0]),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    create_window(m, body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_show_in_maintenance_while_an_open_window_covers_them() {
    let mon = Monitor::start();
    let m = &mon;
    let a = quiet_service(m, "a").await;
    let b = quiet_service(m, "b").await;
    let in_maintenance = async |id: i64| {
        let one = one_service(m, id).await["in_maintenance"].clone();
        let listed = all_services(m)
            .await
            .as_array()
            .expect("array")
            .iter()
            .find(|s| id_of(s) == id)
            .expect("listed")["in_maintenance"]
            .clone();
        assert_eq!(one, listed, "GET /services/{id} and GET /services agree");
        one
    };
    assert_eq!(
        (in_maintenance(a).await, in_maintenance(b).await),
        (json!(false), json!(false))
    );

    // A window for all services that has not begun covers nobody yet.
    create_window(
        m,
        json!({"name": "later", "services": "all", "start": hours_from_now(5), "end": hours_from_now(6)}),
    )
    .await;
    let open = create_window(
        m,
        json!({"name": "now", "services": [a], "start": hours_from_now(-1), "end": hours_from_now(1)}),
    )
    .await;
    assert_eq!(
        (in_maintenance(a).await, in_maintenance(b).await),
        (json!(true), json!(false))
    );

    // Writes answer with it too.
    let r = send(
        m,
        Method::PATCH,
        &format!("/services/{a}"),
        &json!({"name": "a2"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["in_maintenance"], true);
    assert_eq!(
        r.json["name"], "a2",
        "the service's own fields are all still there"
    );
    let r = send(
        m,
        Method::PUT,
        &format!("/services/{b}"),
        &body_with(json!({"name": "b2", "paused": true})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["in_maintenance"], false);

    // A recurring window open now (every minute, for two) covers a service
    // registered after it was made.
    let every = create_window(
        m,
        json!({"name": "always", "services": "all", "cron": "* * * * *", "duration_s": 120,
               "timezone": "Asia/Kolkata"}),
    )
    .await;
    assert_eq!(every["active"], true, "{every}");
    let c = create(m, body_with(json!({"name": "c", "paused": true}))).await;
    assert_eq!(c["in_maintenance"], true, "{c}");
    assert_eq!(in_maintenance(b).await, json!(true));

    // Deleting the windows ends it at once.
    for w in [&open, &every] {
        let r = request(
            m,
            Method::DELETE,
            &format!("/maintenance/{}", id_of(w)),
            None,
            None,
        )
        .await;
        assert_eq!(r.status, 204);
    }
    for id in [a, b, id_of(&c)] {
        assert_eq!(in_maintenance(id).await, json!(false), "service {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_listing_a_deleted_service_can_still_be_edited_but_not_given_new_unknown_ids() {
    let mon = Monitor::start();
    let m = &mon;
    let kept = quiet_service(m, "kept").await;
    let gone = quiet_service(m, "gone").await;
    let w = create_window(
        m,
        json!({"name": "w", "services": [kept, gone], "cron": "0 4 * * *", "duration_s": 60}),
    )
    .await;
    let r = request(m, Method::DELETE, &format!("/services/{gone}"), None, None).await;
    assert_eq!(r.status, 204);
    let path = format!("/maintenance/{}", id_of(&w));
    let r = send(m, Method::PATCH, &path, &json!({"name": "renamed"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["services"], json!([kept, gone]));
    let r = send(
        m,
        Method::PATCH,
        &path,
        &json!({"services": [kept, gone, 777_777]}),
    )
    .await;
    assert_invalid(&r, &["services"], "a new unknown id");
    assert!(
        r.text.contains("777777") && !r.text.contains(&format!("id {gone}")),
        "{}",
        r.text
    );
}
