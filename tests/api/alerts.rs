//! The alert outbox over the API: `POST /channels/{id}/test` queues a test
//! alert, `GET /alerts` lists alerts newest first with filters and paging,
//! `GET /alerts/{id}` reads one, and deleting a channel fails its
//! undelivered alerts.

use crate::channels::{create_channel, webhook};
use crate::helpers::*;
use reqwest::Method;
use reqwest::header::{LINK, LOCATION};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The fields of an alert, as the contract lists them.
const ALERT_FIELDS: [&str; 9] = [
    "id",
    "service_id",
    "channel_id",
    "event",
    "state",
    "attempts",
    "last_error",
    "created_at",
    "sent_at",
];

/// Queues a test alert on channel `id`, asserting 202, and returns it.
async fn test_alert(m: &Monitor, channel: i64) -> Value {
    let r = request(
        m,
        Method::POST,
        &format!("/channels/{channel}/test"),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = id_of(&r.json);
    assert_eq!(r.header(LOCATION), Some(format!("/alerts/{id}").as_str()));
    r.json
}

fn ids(alerts: &Value) -> Vec<i64> {
    alerts
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {alerts}"))
        .iter()
        .map(id_of)
        .collect()
}

/// Every alert of a listing, following its `Link: rel="next"` pages.
async fn all_pages(m: &Monitor, first: &str) -> Vec<i64> {
    let (mut seen, mut next) = (Vec::new(), first.to_owned());
    loop {
        let r = get(m, &next).await;
        assert_eq!(r.status, 200, "{next}: {}", r.text);
        seen.extend(ids(&r.json));
        match r.header(LINK) {
            Some(link) => {
                let target = link.trim_start_matches('<').split('>').next().unwrap();
                assert!(target.starts_with("/alerts?"), "{link}");
                next = target.to_owned();
            }
            None => return seen,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_test_is_queued_and_shows_as_a_pending_alert() {
    let t = Target::start().await;
    let m = Monitor::start();
    let m = &m;
    // A receiver that never answers: the alert cannot be delivered while
    // the test looks at it.
    let c = create_channel(m, webhook("hang", &t.url("/hang"))).await;
    let channel = id_of(&c);
    let alert = test_alert(m, channel).await;
    let mut keys: Vec<&str> = alert
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = ALERT_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{alert}");
    assert_eq!(alert["event"], "test");
    assert_eq!(alert["state"], "pending");
    assert_eq!(alert["attempts"], 0);
    assert_eq!(alert["service_id"], Value::Null);
    assert_eq!(alert["channel_id"], channel);
    assert_eq!(alert["last_error"], Value::Null);
    assert_eq!(alert["sent_at"], Value::Null);
    let created = parse_time(&alert["created_at"]);
    assert!((chrono::Utc::now() - created).num_seconds().abs() < 60);

    let id = id_of(&alert);
    let one = get(m, &format!("/alerts/{id}")).await;
    assert_eq!(one.status, 200, "{}", one.text);
    for key in ["id", "service_id", "channel_id", "event", "created_at"] {
        assert_eq!(one.json[key], alert[key], "{key}");
    }
    let listed = get(m, "/alerts").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(ids(&listed.json), [id]);
    assert_eq!(listed.json[0]["event"], "test");
    assert_eq!(
        ids(
            &get(m, &format!("/alerts?channel_id={channel}&state=pending"))
                .await
                .json
        ),
        [id]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_channel_fails_its_undelivered_alerts() {
    let t = Target::start().await;
    let m = Monitor::start();
    let m = &m;
    let c = create_channel(m, webhook("doomed", &t.url("/hang"))).await;
    let alert = test_alert(m, id_of(&c)).await;
    let r = request(
        m,
        Method::DELETE,
        &format!("/channels/{}", id_of(&c)),
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let after = get(m, &format!("/alerts/{}", id_of(&alert))).await;
    assert_eq!(after.status, 200, "{}", after.text);
    assert_eq!(after.json["state"], "failed", "{}", after.text);
    assert_eq!(after.json["last_error"], "channel deleted");
    assert_eq!(after.json["sent_at"], Value::Null);
    let failed = get(m, "/alerts?state=failed").await;
    assert_eq!(ids(&failed.json), [id_of(&alert)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_list_newest_first_filtered_and_paged() {
    let t = Target::start().await;
    let m = Monitor::start();
    let m = &m;
    let a = id_of(&create_channel(m, webhook("a", &t.url("/hang"))).await);
    let b = id_of(&create_channel(m, webhook("b", &t.url("/hang"))).await);
    let mut of_a = Vec::new();
    let mut of_b = Vec::new();
    for i in 0..8 {
        if i % 3 == 2 {
            of_b.push(id_of(&test_alert(m, b).await));
        } else {
            of_a.push(id_of(&test_alert(m, a).await));
        }
    }
    let newest_first = |mut v: Vec<i64>| {
        v.sort_unstable_by(|x, y| y.cmp(x));
        v
    };
    let everything = newest_first(of_a.iter().chain(&of_b).copied().collect());
    assert_eq!(ids(&get(m, "/alerts").await.json), everything);
    assert_eq!(
        ids(&get(m, &format!("/alerts?channel_id={a}")).await.json),
        newest_first(of_a.clone())
    );
    // Pages of 2 carry a Link to the next, keep the filter, and together
    // are the whole list once each.
    assert_eq!(
        all_pages(m, &format!("/alerts?channel_id={b}&limit=2")).await,
        newest_first(of_b.clone())
    );
    assert_eq!(all_pages(m, "/alerts?limit=3").await, everything);
    let page = get(m, "/alerts?limit=3").await;
    assert_eq!(ids(&page.json).len(), 3);
    let last = *ids(&page.json).last().unwrap();
    assert_eq!(
        ids(&get(m, &format!("/alerts?before={last}")).await.json),
        everything[3..].to_vec()
    );
    // Test alerts belong to no service.
    assert_eq!(
        ids(&get(m, "/alerts?service_id=1").await.json),
        Vec::<i64>::new()
    );

    // Failing b's alerts (by deleting b) moves them between states.
    let r = request(m, Method::DELETE, &format!("/channels/{b}"), None, None).await;
    assert_eq!(r.status, 204);
    let failed = get(m, "/alerts?state=failed").await;
    assert_eq!(ids(&failed.json), newest_first(of_b.clone()));
    let states: BTreeSet<String> = get(m, &format!("/alerts?channel_id={a}&state=failed"))
        .await
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["state"].to_string())
        .collect();
    assert!(states.is_empty(), "a's alerts were failed too: {states:?}");
    // The listing is bounded by api.max_logs_limit whatever is asked.
    assert_eq!(ids(&get(m, "/alerts?limit=100000").await.json).len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_and_unknown_alerts_are_named() {
    let m = Monitor::start();
    let m = &m;
    for (query, field) in [
        ("state=bogus", "state"),
        ("state=PENDING", "state"),
        ("service_id=abc", "service_id"),
        ("channel_id=0", "channel_id"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("before=soon", "before"),
        ("servce_id=1", "servce_id"),
    ] {
        let r = get(m, &format!("/alerts?{query}")).await;
        assert_problem(&r, 400, query);
        assert_eq!(
            error_fields(&r, query),
            BTreeSet::from([field.to_owned()]),
            "{query}: {}",
            r.text
        );
    }
    for path in ["/alerts/1", "/alerts/abc", "/alerts/01"] {
        assert_problem(&get(m, path).await, 404, path);
    }
    let post = send(m, Method::POST, "/alerts", &json!({})).await;
    assert_problem(&post, 405, "POST /alerts");
}

/// Outbox retention on one backend: sent and failed alerts older than the
/// retention go, in bounded batches; pending ones stay whatever their age,
/// and younger ones stay.
async fn old_done_alerts_are_deleted(store: &healthmon::store::Store) {
    use healthmon::config::LogsSettings;
    use healthmon::domain::alert_view::AlertFilter;
    use healthmon::domain::channel_spec::full_spec;
    use healthmon::domain::time::now_ms;
    use healthmon::maintenance::{Finished, pass};
    use healthmon::store::ChannelSaved;
    const DAY: i64 = 86_400_000;

    let now = now_ms();
    let (old, young) = (now - 40 * DAY, now - 10 * DAY);
    let mut channels = Vec::new();
    for name in ["kept", "deleted-old", "deleted-young"] {
        let spec = full_spec(&webhook(name, "http://127.0.0.1:9/"), None).unwrap();
        let ChannelSaved::Saved(c) = store.create_channel(&spec, old).await.unwrap() else {
            panic!("channel {name} not created");
        };
        channels.push(c.id);
    }
    let alert = |channel: usize, at: i64| {
        let id = channels[channel];
        async move { store.create_test_alert(id, at).await.unwrap().unwrap().id }
    };
    let sent_old = [
        alert(0, old).await,
        alert(0, old + 1).await,
        alert(0, old + 2).await,
    ];
    store.alerts_sent(&sent_old, old + 10).await.unwrap();
    let sent_young = alert(0, young).await;
    store.alerts_sent(&[sent_young], young + 10).await.unwrap();
    let pending_ancient = alert(0, now - 400 * DAY).await;
    let failed_old = alert(1, old).await;
    let failed_young = alert(2, young).await;
    assert!(store.delete_channel(channels[1], old + 20).await.unwrap());
    assert!(store.delete_channel(channels[2], young + 20).await.unwrap());

    // One batch takes at most its size.
    let cutoff = now - 30 * DAY;
    assert_eq!(store.delete_alerts_before(cutoff, 2).await.unwrap(), 2);

    let logs = LogsSettings {
        retention_days: 30,
        rollup_retention_days: 400,
        rollup_interval_s: 5,
        maintenance_interval_s: 3600,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    assert_eq!(pass(store, &logs, 30, &stop).await.unwrap(), Finished::Yes);

    let left: BTreeSet<i64> = store
        .list_alerts(AlertFilter::default(), 100, None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(
        left,
        BTreeSet::from([sent_young, pending_ancient, failed_young]),
        "old sent {sent_old:?} and failed {failed_old} go; pending and young ones stay"
    );
    let pending = store.get_alert(pending_ancient).await.unwrap().unwrap();
    assert_eq!(pending.state, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_sent_and_failed_alerts_are_deleted_pending_ones_stay() {
    use healthmon::config::DatabaseUrl;
    use healthmon::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&DatabaseUrl::Sqlite(dir.path().join("t.db")), 2)
        .await
        .unwrap();
    old_done_alerts_are_deleted(&sqlite).await;
    let Some(db) = pg_db().await else {
        return;
    };
    let pg = Store::open(&DatabaseUrl::Postgres(db.url.clone()), 2)
        .await
        .unwrap();
    old_done_alerts_are_deleted(&pg).await;
}
