//! Regions and quorum on an embedded monitor (DESIGN.md "Regions and
//! quorum"): the fields through POST/PUT/PATCH, what is refused (and that a
//! refusal stores nothing), the one region an embedded monitor has, and
//! `GET /services/{id}/logs?region=`.

use crate::helpers::*;
use healthmon::config::DatabaseUrl;
use healthmon::domain::{CheckResult, ServiceId, Status};
use healthmon::store::Store;
use reqwest::Method;
use serde_json::{Value, json};

/// A paused service (no checks run: the logs are the test's own).
fn paused(over: Value) -> Value {
    let mut body = body_with(over);
    body["paused"] = json!(true);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_and_quorum_are_set_shown_and_reset() {
    let m = Monitor::start();
    let svc = create(&m, paused(json!({"regions": ["default"], "quorum": 1}))).await;
    let id = id_of(&svc);
    assert_eq!(svc["regions"], json!(["default"]));
    assert_eq!(svc["quorum"], 1);
    let shown = one_service(&m, id).await;
    assert_eq!(
        (&shown["regions"], &shown["quorum"]),
        (&json!(["default"]), &json!(1))
    );
    // A service without them is not regional.
    let plain = create(&m, paused(json!({"name": "plain"}))).await;
    assert_eq!(plain["regions"], json!([]));
    assert!(plain["quorum"].is_null(), "{plain}");
    // PATCH of the quorum alone keeps the regions; null is a majority.
    let r = send(
        &m,
        Method::PATCH,
        &format!("/services/{id}"),
        &json!({"quorum": null}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["regions"], json!(["default"]));
    assert!(r.json["quorum"].is_null(), "{}", r.text);
    // PUT sets every field: left out, regions and quorum go back to none.
    let r = send(
        &m,
        Method::PUT,
        &format!("/services/{id}"),
        &paused(json!({})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["regions"], json!([]));
    assert!(r.json["quorum"].is_null(), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_regions_and_quorums_are_named_and_store_nothing() {
    let m = Monitor::start();
    let seventeen: Vec<String> = (0..17).map(|i| format!("r{i}")).collect();
    let cases = [
        (json!({"regions": "default"}), vec!["regions"]),
        (json!({"regions": ["default", 7]}), vec!["regions[1]"]),
        (json!({"regions": ["EU"]}), vec!["regions[0]"]),
        (json!({"regions": ["eu west"]}), vec!["regions[0]"]),
        (json!({"regions": [""]}), vec!["regions[0]"]),
        (json!({"regions": ["x".repeat(33)]}), vec!["regions[0]"]),
        (
            json!({"regions": ["default", "default"]}),
            vec!["regions[1]"],
        ),
        (json!({"regions": seventeen}), vec!["regions"]),
        (json!({"regions": ["default"], "quorum": 0}), vec!["quorum"]),
        (json!({"regions": ["default"], "quorum": 2}), vec!["quorum"]),
        (
            json!({"regions": ["default"], "quorum": 1.5}),
            vec!["quorum"],
        ),
        (
            json!({"regions": ["default"], "quorum": "1"}),
            vec!["quorum"],
        ),
        (json!({"quorum": 1}), vec!["quorum"]),
        (json!({"regions": [], "quorum": 1}), vec!["quorum"]),
    ];
    for (over, fields) in &cases {
        let r = send(&m, Method::POST, "/services", &paused(over.clone())).await;
        assert_invalid(&r, fields, &format!("POST {over}"));
    }
    assert_eq!(
        all_services(&m).await,
        json!([]),
        "a refused body stored something"
    );

    // The same through PATCH and PUT leave the service as it was.
    let svc = create(&m, paused(json!({"regions": ["default"]}))).await;
    let path = format!("/services/{}", id_of(&svc));
    for (over, fields) in &cases {
        let r = send(&m, Method::PATCH, &path, over).await;
        // PATCH merges: `quorum: 1` alone fits the stored ["default"].
        if over == &json!({"quorum": 1}) {
            assert_eq!(r.status, 200, "{}", r.text);
            let r = send(&m, Method::PATCH, &path, &json!({"quorum": null})).await;
            assert_eq!(r.status, 200, "{}", r.text);
            continue;
        }
        assert_invalid(&r, fields, &format!("PATCH {over}"));
        let r = send(&m, Method::PUT, &path, &paused(over.clone())).await;
        assert_invalid(&r, fields, &format!("PUT {over}"));
    }
    // PATCH regions away while a quorum is set: the quorum no longer fits.
    let r = send(&m, Method::PATCH, &path, &json!({"quorum": 1})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send(&m, Method::PATCH, &path, &json!({"regions": []})).await;
    assert_invalid(&r, &["quorum"], "PATCH regions [] under quorum 1");
    let kept = one_service(&m, id_of(&svc)).await;
    assert_eq!(
        (&kept["regions"], &kept["quorum"]),
        (&json!(["default"]), &json!(1)),
        "a refused change changed it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_monitor_checks_from_its_own_region_only() {
    let m = Monitor::start_with(&[("HEALTHMON__WORKER__REGION", "home")]);
    let r = send(
        &m,
        Method::POST,
        "/services",
        &paused(json!({"regions": ["home", "eu", "us"]})),
    )
    .await;
    assert_invalid(&r, &["regions"], "regions beyond an embedded monitor's own");
    let message = r.json["errors"][0]["message"].as_str().unwrap_or_default();
    for needed in [
        "fleet",
        "RabbitMQ",
        "PostgreSQL",
        "--role worker --region",
        "\"eu\"",
    ] {
        assert!(message.contains(needed), "{needed:?} not in {message:?}");
    }
    assert!(
        message.contains("cannot check from \"eu\", \"us\":"),
        "only the others are refused: {message}"
    );
    assert_eq!(
        all_services(&m).await,
        json!([]),
        "a refused body stored something"
    );

    // So does a bulk registration, naming the item.
    let items = json!([
        paused(json!({"name": "a", "regions": ["home"]})),
        paused(json!({"name": "b", "regions": ["eu"]})),
    ]);
    let r = send(&m, Method::POST, "/services/bulk", &items).await;
    assert_invalid(&r, &["[1].regions"], "a bulk item beyond the own region");
    assert_eq!(
        all_services(&m).await,
        json!([]),
        "a refused bulk stored something"
    );

    // Its own region is accepted, and a change to another is refused.
    let svc = create(&m, paused(json!({"regions": ["home"]}))).await;
    let path = format!("/services/{}", id_of(&svc));
    for method in [Method::PATCH, Method::PUT] {
        let r = send(
            &m,
            method.clone(),
            &path,
            &paused(json!({"regions": ["eu"]})),
        )
        .await;
        assert_invalid(&r, &["regions"], &format!("{method} to another region"));
    }
    assert_eq!(
        one_service(&m, id_of(&svc)).await,
        svc,
        "a refused change changed it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_filter_by_region() {
    let m = Monitor::start();
    let svc = create(&m, paused(json!({"regions": ["default"]}))).await;
    let id = id_of(&svc);
    // Two rounds, each with the region's vote and the round's verdict (no
    // region), recorded as the recorder does, beside the running monitor.
    let store = Store::open(&DatabaseUrl::Sqlite(m.db_path()), 1)
        .await
        .expect("open the store");
    let now = chrono::Utc::now().timestamp_millis();
    let result = |at: i64, region: Option<&str>| CheckResult {
        service_id: ServiceId(id),
        scheduled_at: at,
        status: Status::Up,
        latency_ms: 5,
        status_code: Some(200),
        error: None,
        checked_at: at + 5,
        cert_expires_at: None,
        region: region.map(str::to_owned),
    };
    let batch: Vec<CheckResult> = [now - 2000, now - 1000]
        .into_iter()
        .flat_map(|at| [result(at, Some("default")), result(at, None)])
        .collect();
    store.record(&batch).await.expect("record");
    // A redelivered vote is the same log.
    store.record(&batch[..1]).await.expect("record again");

    let all = get(&m, &format!("/services/{id}/logs")).await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(all.json.as_array().map(Vec::len), Some(4), "{}", all.text);
    let regional = get(&m, &format!("/services/{id}/logs?region=default")).await;
    assert_eq!(regional.status, 200, "{}", regional.text);
    let logs = regional.json.as_array().expect("a list");
    assert_eq!(logs.len(), 2, "{}", regional.text);
    assert!(
        logs.iter().all(|l| l["region"] == "default"),
        "{}",
        regional.text
    );
    let verdicts = all
        .json
        .as_array()
        .expect("a list")
        .iter()
        .filter(|l| l["region"].is_null())
        .count();
    assert_eq!(verdicts, 2, "{}", all.text);
    // Paging keeps the filter.
    let page = get(&m, &format!("/services/{id}/logs?region=default&limit=1")).await;
    let link = page
        .header(reqwest::header::LINK)
        .expect("a full page links the next");
    assert!(link.contains("region=default"), "{link}");
    // Another region has none; a bad name is a 400 naming `region`.
    let other = get(&m, &format!("/services/{id}/logs?region=eu")).await;
    assert_eq!(other.json, json!([]), "{}", other.text);
    let bad = get(&m, &format!("/services/{id}/logs?region=EU")).await;
    assert_problem(&bad, 400, "a bad region name");
    assert_eq!(bad.json["errors"][0]["field"], "region", "{}", bad.text);
}
