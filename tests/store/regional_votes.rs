//! Regional rounds in the store: a round's votes read back (a recorder
//! that took over the votes queue completes its rounds with them), and
//! region alerts written once per channel that gets every service's alerts.

use super::*;
use healthmon::domain::channel_spec;
use healthmon::domain::outbox::{AlertEvent, AlertPayload, RegionNote};
use healthmon::store::ChannelSaved;

on_every_backend!(
    a_rounds_votes_read_back_are_its_own_and_only_votes,
    a_region_alert_goes_to_each_channel_for_every_service
);

pub(super) async fn a_rounds_votes_read_back_are_its_own_and_only_votes(store: Store) {
    let mut regional = spec("regional");
    regional.regions = vec!["a".into(), "b".into(), "c".into()];
    let id = store.create_service(&regional, 0).await.expect("create").id;
    let other = store
        .create_service(
            &{
                let mut s = spec("other");
                s.regions = vec!["a".into(), "b".into()];
                s
            },
            0,
        )
        .await
        .expect("create")
        .id;
    let vote = |svc: ServiceId, at: i64, region: &str, status: Status| CheckResult {
        region: Some(region.into()),
        ..result(svc, at, status)
    };
    store
        .record(&[
            vote(id, 1_000, "a", Status::Up),
            vote(id, 1_000, "b", Status::Down),
            // The round's verdict: no region, not a vote.
            result(id, 1_000, Status::Up),
            vote(id, 2_000, "c", Status::Down),
            vote(other, 1_000, "a", Status::Down),
            // Matches one asked id and another asked time, not a pair asked.
            vote(other, 2_000, "b", Status::Down),
        ])
        .await
        .expect("record");
    let mut got: Vec<(i64, i64, String, Status)> = store
        .round_votes(&[(id, 1_000), (other, 1_000)])
        .await
        .expect("votes")
        .into_iter()
        .map(|v| {
            (
                v.service_id.get(),
                v.scheduled_at,
                v.region.expect("a vote has its region"),
                v.status,
            )
        })
        .collect();
    got.sort_by(|x, y| (x.0, x.1, &x.2).cmp(&(y.0, y.1, &y.2)));
    assert_eq!(
        got,
        vec![
            (id.get(), 1_000, "a".to_owned(), Status::Up),
            (id.get(), 1_000, "b".to_owned(), Status::Down),
            (other.get(), 1_000, "a".to_owned(), Status::Down),
        ]
    );
    assert!(store.round_votes(&[]).await.expect("none").is_empty());
}

pub(super) async fn a_region_alert_goes_to_each_channel_for_every_service(store: Store) {
    let mut everyone = Vec::new();
    for (name, all) in [("ops", true), ("api-team", false), ("pager", true)] {
        let body = serde_json::json!({
            "name": name,
            "kind": "webhook",
            "config": {"url": "http://127.0.0.1:9/hook"},
            "all_services": all,
        });
        let spec = channel_spec::full_spec(&body, None).expect("channel spec");
        let ChannelSaved::Saved(c) = store.create_channel(&spec, 0).await.expect("channel") else {
            panic!("channel {name} not created");
        };
        if all {
            everyone.push(c.id.get());
        }
    }
    let note = RegionNote {
        name: "b".into(),
        compared: 26,
        failing: 25,
    };
    let written = store
        .create_region_alerts(AlertEvent::RegionImpaired, &note, 5_000)
        .await
        .expect("write");
    assert_eq!(written, 2, "one per channel that gets every alert");
    let rows = store.due_alerts(i64::MAX, 100).await.expect("outbox");
    let mut channels: Vec<i64> = rows.iter().map(|r| r.channel_id).collect();
    channels.sort_unstable();
    assert_eq!(channels, everyone);
    for row in &rows {
        assert_eq!(row.event, "region_impaired");
        assert_eq!(row.service_id, None);
        let payload: AlertPayload = serde_json::from_str(&row.payload).expect("payload");
        assert_eq!(payload.region.as_ref(), Some(&note));
    }
}
