//! The alert sender against a real store (SQLite) and a real receiver on
//! 127.0.0.1, with the clock in the test's hands: reminders at their slots,
//! maintenance holds and what happens when the window ends, alerts of one
//! service kept in order while one is retried, and giving up after
//! `alerts.max_age_s`. (Delivery through the running binary is in
//! tests/api/delivery.rs.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

mod common;

use common::receiver::Receiver;
use common::stores::on_every_backend;
use healthmon::alert::deliver::Deliverer;
use healthmon::alert::mail::MailSettings;
use healthmon::alert::sender::plan::NO_LONGER_DEGRADED;
use healthmon::alert::sender::{RECOVERED_IN_MAINTENANCE, Sender};
use healthmon::config::{AlertsSettings, DatabaseUrl};
use healthmon::domain::channel_spec::ChannelSpec;
use healthmon::domain::outbox::AlertPayload;
use healthmon::domain::time::now_ms;
use healthmon::domain::window::{Schedule, Scope, WindowSpec};
use healthmon::domain::{ChannelId, CheckResult, ServiceId, ServiceSpec, Status};
use healthmon::store::{ChannelSaved, NewOutboxRow, Store};
use healthmon::worker::guard::AddressPolicy;
use serde_json::{Value, json};
use std::time::Duration;

const MIN: i64 = 60_000;

/// A DEGRADED check's error.
const SLOW: &str = "latency: 2300 ms, over degraded_latency_ms 1000";

on_every_backend!(
    reminders_come_at_their_slots_once_each_and_stop_when_the_service_recovers,
    a_down_held_by_maintenance_is_sent_when_the_window_ends_if_still_down,
    a_down_and_up_inside_a_window_are_never_sent_and_say_why,
    an_up_waits_while_its_down_is_retried_so_they_arrive_in_order,
    an_alert_failing_past_max_age_is_given_up_on,
    a_storm_is_one_message_and_a_storm_that_goes_on_waits_for_the_gap,
    a_retried_storm_message_is_the_same_set_under_the_same_id,
    one_flapping_service_is_not_a_storm,
    many_lanes_of_one_channel_take_at_most_half_the_permits,
    a_reminder_waits_for_its_down_and_a_paused_service_is_not_reminded,
    a_hold_survives_a_later_wait_so_a_flap_inside_a_window_stays_quiet,
    a_degraded_spell_is_told_when_it_starts_and_when_it_ends_in_order,
    a_degraded_spell_inside_a_window_stays_quiet_and_one_still_on_is_told,
);

struct Setup {
    store: Store,
    sender: Sender,
    receiver: Receiver,
}

async fn setup(store: Store, settings: AlertsSettings) -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let deliverer =
        Deliverer::new(AddressPolicy::default(), Duration::from_secs(5), 65_536).unwrap();
    let mail = MailSettings::new(AddressPolicy::default(), None).unwrap();
    let sender = Sender::new(store.clone(), deliverer, mail, settings);
    Setup {
        store,
        sender,
        receiver: Receiver::start().await,
    }
}

impl Setup {
    /// A webhook channel for every service, reminding every `remind_s`.
    async fn channel(&self, remind_s: i64) -> ChannelId {
        let spec: ChannelSpec = ChannelSpec {
            name: "hook".into(),
            kind: "webhook".into(),
            config: json!({"url": self.receiver.url("/hook")})
                .as_object()
                .cloned()
                .unwrap(),
            all_services: true,
            remind_every_s: remind_s,
        };
        match self.store.create_channel(&spec, now_ms()).await.unwrap() {
            ChannelSaved::Saved(c) => c.id,
            _ => panic!("channel not saved"),
        }
    }

    async fn service(&self, name: &str) -> ServiceId {
        let spec: ServiceSpec = serde_json::from_value(json!({
            "name": name, "url": "http://127.0.0.1:9/", "interval": 10, "timeout": 5,
            "paused": false, "expected_statuses": null,
        }))
        .unwrap();
        self.store.create_service(&spec, now_ms()).await.unwrap().id
    }

    /// Records a check of `service` due at `at` (finished 5 ms later); a
    /// DEGRADED one was slow.
    async fn check(&self, service: ServiceId, at: i64, status: Status) {
        let down = status == Status::Down;
        let error = match status {
            Status::Down => Some("status: unexpected status 503".to_owned()),
            Status::Degraded => Some(SLOW.to_owned()),
            _ => None,
        };
        self.store
            .record(&[CheckResult {
                service_id: service,
                scheduled_at: at,
                status,
                latency_ms: 5,
                status_code: Some(if down { 503 } else { 200 }),
                error,
                checked_at: at + 5,
                cert_expires_at: None,
                region: None,
            }])
            .await
            .unwrap();
    }

    /// The outbox rows of `service` as (event, state, last_error).
    async fn alerts(&self, service: ServiceId) -> Vec<(String, String, Option<String>)> {
        let mut rows = self
            .store
            .list_alerts(
                healthmon::domain::alert_view::AlertFilter {
                    service_id: Some(service),
                    channel_id: None,
                    state: None,
                },
                100,
                None,
            )
            .await
            .unwrap();
        rows.reverse();
        rows.into_iter()
            .map(|a| (a.event, a.state, a.last_error))
            .collect()
    }

    fn bodies(&self) -> Vec<Value> {
        self.receiver
            .received_at("/hook")
            .iter()
            .map(common::receiver::Received::json)
            .collect()
    }
}

fn events(bodies: &[Value]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| b["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn reminders_come_at_their_slots_once_each_and_stop_when_the_service_recovers(store: Store) {
    let s = setup(store, AlertsSettings::default()).await;
    s.channel(60).await;
    let svc = s.service("api").await;
    let t0 = now_ms() - 10 * MIN;
    s.check(svc, t0, Status::Up).await;
    s.check(svc, t0 + 10_000, Status::Down).await;
    let down_at = t0 + 10_005;

    // Not a minute DOWN yet: no reminder.
    assert_eq!(
        s.sender.write_reminders(down_at + MIN - 1).await.unwrap(),
        0
    );
    // Each slot once, whatever how often the sender looks (or restarts).
    assert_eq!(s.sender.write_reminders(down_at + MIN).await.unwrap(), 1);
    assert_eq!(
        s.sender.write_reminders(down_at + MIN + 500).await.unwrap(),
        0
    );
    // Slots missed while no sender ran: only the newest is written.
    assert_eq!(
        s.sender
            .write_reminders(down_at + 4 * MIN + 1)
            .await
            .unwrap(),
        1
    );
    s.sender.pass(now_ms()).await.unwrap();

    let got = s.bodies();
    assert_eq!(events(&got), ["down", "reminder", "reminder"], "{got:?}");
    for (reminder, slot) in got[1..].iter().zip([1, 4]) {
        assert_eq!(reminder["new_status"], "DOWN", "{reminder}");
        assert_eq!(
            reminder["since"], got[0]["at"],
            "a reminder says since when: {reminder}"
        );
        assert_eq!(
            reminder["at"],
            healthmon::domain::time::to_rfc3339(down_at + slot * MIN),
            "{reminder}"
        );
    }

    // Recovered before the next reminder went out: it is not sent.
    assert_eq!(
        s.sender.write_reminders(down_at + 5 * MIN).await.unwrap(),
        1
    );
    s.check(svc, t0 + 20_000, Status::Up).await;
    s.sender.pass(now_ms()).await.unwrap();
    assert_eq!(
        events(&s.bodies()),
        ["down", "reminder", "reminder", "up"],
        "the recovery is told, the stale reminder is not"
    );
    let rows = s.alerts(svc).await;
    let stale = rows
        .iter()
        .find(|(e, state, _)| e == "reminder" && state == "failed")
        .expect("a failed reminder");
    assert_eq!(
        stale.2.as_deref(),
        Some("not sent: the service is no longer DOWN")
    );
    // And once UP, no more reminders are written.
    assert_eq!(
        s.sender.write_reminders(down_at + 9 * MIN).await.unwrap(),
        0
    );
}

/// A one-off window over `service` from now for `ms`.
async fn window(s: &Setup, service: ServiceId, ms: i64) -> i64 {
    let start = now_ms() - 1_000;
    let end = now_ms() + ms;
    let spec = WindowSpec {
        name: "deploy".into(),
        scope: Scope::Services(vec![service]),
        tag: None,
        schedule: Schedule::Once { start, end },
    };
    s.store.create_window(&spec, now_ms()).await.unwrap();
    end
}

async fn a_down_held_by_maintenance_is_sent_when_the_window_ends_if_still_down(store: Store) {
    let s = setup(store, AlertsSettings::default()).await;
    s.channel(0).await;
    let svc = s.service("api").await;
    let end = window(&s, svc, 60 * MIN).await;
    let t = now_ms();
    s.check(svc, t - 2_000, Status::Up).await;
    s.check(svc, t - 1_000, Status::Down).await;

    s.sender.pass(now_ms()).await.unwrap();
    assert!(
        s.bodies().is_empty(),
        "held: nothing sent during the window"
    );
    let rows = s.alerts(svc).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, "pending");
    assert!(
        rows[0]
            .2
            .as_deref()
            .is_some_and(|e| e.starts_with("held: ")),
        "{rows:?}"
    );
    // Not due before the window ends.
    s.sender.pass(end - 1).await.unwrap();
    assert!(s.bodies().is_empty());

    // The window ends early (deleted): sent at once, not at its old end.
    let windows = s.store.windows_after(0, 10).await.unwrap();
    s.store.delete_window(windows[0].id).await.unwrap();
    s.sender.pass(now_ms()).await.unwrap();
    assert_eq!(events(&s.bodies()), ["down"]);
    assert_eq!(s.alerts(svc).await[0].1, "sent");
}

async fn a_down_and_up_inside_a_window_are_never_sent_and_say_why(store: Store) {
    let s = setup(store, AlertsSettings::default()).await;
    s.channel(0).await;
    let svc = s.service("api").await;
    let end = window(&s, svc, 60 * MIN).await;
    let t = now_ms();
    s.check(svc, t - 3_000, Status::Up).await;
    s.check(svc, t - 2_000, Status::Down).await;
    s.sender.pass(now_ms()).await.unwrap();
    s.check(svc, t - 1_000, Status::Up).await;
    s.sender.pass(now_ms()).await.unwrap();
    assert!(s.bodies().is_empty());

    let windows = s.store.windows_after(0, 10).await.unwrap();
    s.store.delete_window(windows[0].id).await.unwrap();
    s.sender.pass(now_ms()).await.unwrap();
    let _ = end;
    assert!(s.bodies().is_empty(), "{:?}", s.bodies());
    let rows = s.alerts(svc).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (event, state, error) in &rows {
        assert_eq!(state, "failed", "{event}");
        assert_eq!(error.as_deref(), Some(RECOVERED_IN_MAINTENANCE), "{event}");
    }
}

async fn an_up_waits_while_its_down_is_retried_so_they_arrive_in_order(store: Store) {
    let s = setup(store, AlertsSettings::default()).await;
    s.channel(0).await;
    s.receiver.script("/hook", &[503]);
    let svc = s.service("api").await;
    let t = now_ms();
    s.check(svc, t - 3_000, Status::Up).await;
    s.check(svc, t - 2_000, Status::Down).await;
    s.check(svc, t - 1_000, Status::Up).await;

    // Both due; the down fails, so the up is put off behind it.
    s.sender.pass(now_ms()).await.unwrap();
    assert_eq!(events(&s.bodies()), ["down"]);
    let rows = s.alerts(svc).await;
    assert_eq!(rows[0].1, "pending", "{rows:?}");
    assert_eq!(rows[1].1, "pending", "{rows:?}");
    assert!(
        rows[1]
            .2
            .as_deref()
            .is_some_and(|e| e.starts_with("waiting")),
        "{rows:?}"
    );
    // Later (past the backoff): down, then up.
    s.sender.pass(now_ms() + 10_000).await.unwrap();
    s.sender.pass(now_ms() + 20_000).await.unwrap();
    assert_eq!(events(&s.bodies()), ["down", "down", "up"]);
    let rows = s.alerts(svc).await;
    assert!(rows.iter().all(|r| r.1 == "sent"), "{rows:?}");
}

async fn an_alert_failing_past_max_age_is_given_up_on(store: Store) {
    let s = setup(store, AlertsSettings::default()).await;
    let ch = s.channel(0).await;
    s.receiver.script("/hook", &[503, 503, 503]);
    let svc = s.service("api").await;
    let other = s.service("db").await;
    let now = now_ms();
    let payload = serde_json::to_string(&AlertPayload {
        service_name: "api".into(),
        since: None,
        check: None,
        region: None,
    })
    .unwrap();
    let row = |svc: ServiceId, created_at: i64, scheduled_at: i64, first_attempt_at| NewOutboxRow {
        service_id: Some(svc.get()),
        channel_id: ch.get(),
        event: "down".into(),
        old_status: "UP".into(),
        new_status: "DOWN".into(),
        scheduled_at,
        payload: payload.clone(),
        state: "pending".into(),
        attempts: 0,
        created_at,
        next_attempt_at: created_at,
        first_attempt_at,
    };
    // One first tried a day ago, one just written, and one written a day
    // ago but never tried (held by a window, say): the clock runs from the
    // first attempt.
    let day_ago = now - 86_400_000 + 500;
    s.store
        .insert_alerts(&[
            row(svc, day_ago, 1, Some(day_ago)),
            row(svc, now, 2, None),
            row(other, day_ago, 3, None),
        ])
        .await
        .unwrap();
    s.sender.pass(now).await.unwrap();
    let rows = s.alerts(svc).await;
    assert_eq!(rows[0].1, "failed", "{rows:?}");
    let error = rows[0].2.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("gave up after 1 attempts over 1 d") && error.contains("503"),
        "{error}"
    );
    assert_eq!(rows[1].1, "pending", "the young one is retried: {rows:?}");
    let rows = s.alerts(other).await;
    assert_eq!(
        rows[0].1, "pending",
        "one not tried before gets its retries: {rows:?}"
    );
    assert!(
        rows[0].2.as_deref().is_some_and(|e| e.contains("503")),
        "{rows:?}"
    );
}

async fn a_storm_is_one_message_and_a_storm_that_goes_on_waits_for_the_gap(store: Store) {
    let settings = AlertsSettings {
        storm_threshold: 3,
        ..AlertsSettings::default()
    };
    let s = setup(store, settings).await;
    s.channel(0).await;
    let t = now_ms();
    let mut services = Vec::new();
    for i in 0..5 {
        let svc = s.service(&format!("svc-{i}")).await;
        s.check(svc, t - 3_000, Status::Up).await;
        s.check(svc, t - 2_000, Status::Down).await;
        s.check(svc, t - 1_000, Status::Up).await;
        services.push(svc);
    }
    // Ten changes due at once, over the threshold of 3: one message,
    // a down and its up inside it (the up need not wait for the down).
    s.sender.pass(now_ms()).await.unwrap();
    let got = s.bodies();
    assert_eq!(events(&got), ["storm"], "{got:?}");
    assert_eq!(got[0]["count"], 10, "{}", got[0]);
    let listed: Vec<(i64, String)> = got[0]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["service"]["id"].as_i64().unwrap(),
                a["event"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for svc in &services {
        assert!(
            listed.contains(&(svc.get(), "down".to_owned())),
            "{listed:?}"
        );
        assert!(listed.contains(&(svc.get(), "up".to_owned())), "{listed:?}");
    }
    for svc in &services {
        assert!(s.alerts(*svc).await.iter().all(|a| a.1 == "sent"));
    }

    // The storm goes on: two more changes within the gap wait for it, then
    // go together.
    for svc in &services[..2] {
        s.check(*svc, t, Status::Down).await;
    }
    s.sender.pass(now_ms()).await.unwrap();
    assert_eq!(s.bodies().len(), 1, "held for the storm's gap");
    let held = s.alerts(services[0]).await;
    assert!(
        held.last()
            .unwrap()
            .2
            .as_deref()
            .is_some_and(|e| e.starts_with("grouped")),
        "{held:?}"
    );
    s.sender
        .pass(now_ms() + healthmon::alert::sender::STORM_GAP.as_millis() as i64 + 1)
        .await
        .unwrap();
    let got = s.bodies();
    assert_eq!(events(&got), ["storm", "storm"], "{got:?}");
    assert_eq!(got[1]["count"], 2, "{}", got[1]);

    // A trickle in a storm: one change alone after the gap goes as
    // itself, the next within the gap waits for the one after.
    let later = now_ms() + 2 * healthmon::alert::sender::STORM_GAP.as_millis() as i64 + 2;
    s.check(services[2], t, Status::Down).await;
    s.sender.pass(later).await.unwrap();
    assert_eq!(events(&s.bodies()), ["storm", "storm", "down"]);
    s.check(services[3], t, Status::Down).await;
    s.sender.pass(later + 1).await.unwrap();
    assert_eq!(s.bodies().len(), 3, "within the gap: held");
}

/// The delivery ids and the alert ids each grouped message listed.
fn groups(s: &Setup) -> Vec<(String, Vec<i64>)> {
    s.receiver
        .received_at("/hook")
        .iter()
        .map(|r| {
            let mut ids: Vec<i64> = r.json()["alerts"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["id"].as_i64()).collect())
                .unwrap_or_default();
            ids.sort_unstable();
            (r.header("x-healthmon-delivery").unwrap().to_owned(), ids)
        })
        .collect()
}

async fn a_retried_storm_message_is_the_same_set_under_the_same_id(store: Store) {
    let settings = AlertsSettings {
        storm_threshold: 3,
        ..AlertsSettings::default()
    };
    let s = setup(store, settings).await;
    s.channel(0).await;
    // The receiver takes the first grouped message but answers 503 (as if
    // it had timed out after processing it).
    s.receiver.script("/hook", &[503]);
    let t = now_ms();
    let mut services = Vec::new();
    for i in 0..5 {
        let svc = s.service(&format!("svc-{i}")).await;
        s.check(svc, t - 3_000, Status::Up).await;
        s.check(svc, t - 2_000, Status::Down).await;
        services.push(svc);
    }
    s.sender.pass(now_ms()).await.unwrap();
    let first = groups(&s);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].1.len(), 5, "{first:?}");

    // More changes arrive while it waits for its retry.
    for svc in &services[..2] {
        s.check(*svc, t - 1_000, Status::Up).await;
    }
    s.sender.pass(now_ms() + 10_000).await.unwrap();
    let got = groups(&s);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[1], got[0], "the retry is the same message: {got:?}");
    assert_ne!(got[2].0, got[0].0, "{got:?}");
    assert_eq!(got[2].1.len(), 2, "the newer changes go apart: {got:?}");
    assert!(got[2].1.iter().all(|id| !got[0].1.contains(id)), "{got:?}");
    for svc in &services {
        assert!(
            s.alerts(*svc).await.iter().all(|a| a.1 == "sent"),
            "{:?}",
            s.alerts(*svc).await
        );
    }
}

async fn many_lanes_of_one_channel_take_at_most_half_the_permits(store: Store) {
    let settings = AlertsSettings {
        concurrency: 4,
        storm_threshold: 1_000,
        ..AlertsSettings::default()
    };
    let s = setup(store, settings).await;
    s.channel(0).await;
    s.receiver.set_delay(Duration::from_millis(300));
    let t = now_ms();
    for i in 0..6 {
        let svc = s.service(&format!("svc-{i}")).await;
        s.check(svc, t - 2_000, Status::Up).await;
        s.check(svc, t - 1_000, Status::Down).await;
    }
    s.sender.pass(now_ms()).await.unwrap();
    // All delivered (the pass comes back for those left over), never more
    // than two at once to the one channel.
    assert_eq!(s.bodies().len(), 6);
    assert_eq!(s.receiver.max_in_flight(), 2);
}

async fn a_reminder_waits_for_its_down_and_a_paused_service_is_not_reminded(store: Store) {
    let s = setup(store, AlertsSettings::default()).await;
    s.channel(60).await;
    s.receiver.script("/hook", &[503]);
    let svc = s.service("api").await;
    let t0 = now_ms() - 10 * MIN;
    s.check(svc, t0, Status::Up).await;
    s.check(svc, t0 + 10_000, Status::Down).await;
    // The down fails once; its retry is pending when a reminder is due.
    s.sender.pass(now_ms()).await.unwrap();
    assert_eq!(events(&s.bodies()), ["down"]);
    assert_eq!(s.sender.write_reminders(now_ms()).await.unwrap(), 1);
    s.sender.pass(now_ms()).await.unwrap();
    assert_eq!(
        events(&s.bodies()),
        ["down"],
        "the reminder waits for the down"
    );
    let rows = s.alerts(svc).await;
    assert_eq!(rows[1].1, "pending", "{rows:?}");
    // Both due: the down goes first, then the reminder.
    s.sender.pass(now_ms() + 5_000).await.unwrap();
    assert_eq!(events(&s.bodies()), ["down", "down", "reminder"]);

    // Paused while DOWN: no more reminders.
    let paused: ServiceSpec = serde_json::from_value(json!({
        "name": "api", "url": "http://127.0.0.1:9/", "interval": 10, "timeout": 5,
        "paused": true, "expected_statuses": null,
    }))
    .unwrap();
    s.store
        .update_service(svc, &paused, now_ms(), None)
        .await
        .unwrap();
    assert_eq!(
        s.sender.write_reminders(now_ms() + 2 * MIN).await.unwrap(),
        0
    );
}

async fn a_hold_survives_a_later_wait_so_a_flap_inside_a_window_stays_quiet(store: Store) {
    let settings = AlertsSettings {
        storm_threshold: 1,
        ..AlertsSettings::default()
    };
    let s = setup(store, settings).await;
    s.channel(0).await;
    let svc = s.service("api").await;
    let other = s.service("db").await;
    let end = window(&s, svc, 60 * MIN).await;
    let t = now_ms();
    // A storm on the channel (another service too), so the held down is
    // later put off for the storm's gap: its last_error then says
    // "grouped", but the hold is not forgotten.
    s.check(other, t - 4_000, Status::Up).await;
    s.check(other, t - 3_000, Status::Down).await;
    s.check(svc, t - 3_000, Status::Up).await;
    s.check(svc, t - 2_000, Status::Down).await;
    s.sender.pass(now_ms()).await.unwrap();
    s.check(svc, t - 1_000, Status::Up).await;
    let windows = s.store.windows_after(0, 10).await.unwrap();
    s.store.delete_window(windows[0].id).await.unwrap();
    s.check(other, t - 1_000, Status::Up).await;
    s.sender.pass(now_ms() + 1_000).await.unwrap();
    s.sender.pass(now_ms() + 60_000).await.unwrap();
    let _ = end;
    let rows = s.alerts(svc).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (event, state, error) in &rows {
        assert_eq!(state, "failed", "{event}: {rows:?}");
        assert_eq!(error.as_deref(), Some(RECOVERED_IN_MAINTENANCE), "{event}");
    }
    let sent: Vec<i64> = s
        .bodies()
        .iter()
        .flat_map(|b| match b["alerts"].as_array() {
            Some(items) => items
                .iter()
                .map(|a| a["service"]["id"].as_i64().unwrap())
                .collect(),
            None => vec![b["service"]["id"].as_i64().unwrap()],
        })
        .collect();
    assert!(!sent.contains(&svc.get()), "{sent:?}");
}

#[derive(diesel::QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

/// The sender's lock session asks the server to probe its connection
/// every few seconds: a holder whose host vanished frees the lock in
/// about half a minute, not the kernel's two hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_session_is_probed_by_the_server() {
    use diesel_async::RunQueryDsl;
    let Some(db) = common::pg_db().await else {
        return;
    };
    let store = Store::open(&DatabaseUrl::Postgres(db.url.clone()), 2)
        .await
        .unwrap();
    let Some(healthmon::store::Leadership::Postgres(mut conn)) =
        store.try_send_alerts().await.unwrap()
    else {
        panic!("no lock session");
    };
    let got: Setting = diesel::sql_query(
        "SELECT current_setting('tcp_keepalives_idle') || '/' || \
         current_setting('tcp_keepalives_count') AS value",
    )
    .get_result(&mut *conn)
    .await
    .unwrap();
    assert_eq!(got.value, "10/3");
}

/// Once a receiver's status is in, a body that stalls changes nothing: a
/// 2xx is sent (retrying it would be a duplicate), a 503 is retried, and
/// neither waits past the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_followed_by_a_stalled_body_decides_the_outcome() {
    use healthmon::alert::deliver::Outcome;
    use healthmon::alert::render::HttpRequest;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let receiver = Receiver::start().await;
    receiver.stall_body(true);
    receiver.script("/hook", &[200, 503]);
    let deliverer =
        Deliverer::new(AddressPolicy::default(), Duration::from_secs(1), 65_536).unwrap();
    let request = HttpRequest {
        url: receiver.url("/hook"),
        headers: Vec::new(),
        body: b"{}".to_vec(),
    };
    let started = std::time::Instant::now();
    assert_eq!(deliverer.post(&request).await, Outcome::Sent);
    assert!(matches!(
        deliverer.post(&request).await,
        Outcome::Retry { error, .. } if error.contains("503")
    ));
    assert!(started.elapsed() < Duration::from_secs(4));
    receiver.stop();
}

async fn one_flapping_service_is_not_a_storm(store: Store) {
    let settings = AlertsSettings {
        storm_threshold: 3,
        ..AlertsSettings::default()
    };
    let s = setup(store, settings).await;
    s.channel(0).await;
    let svc = s.service("api").await;
    let t = now_ms();
    // Five changes of one service: more than the threshold of changes, but
    // a storm is more than N services changing.
    s.check(svc, t - 6_000, Status::Up).await;
    for (i, status) in [
        Status::Down,
        Status::Up,
        Status::Down,
        Status::Up,
        Status::Down,
    ]
    .into_iter()
    .enumerate()
    {
        s.check(svc, t - 5_000 + i as i64 * 1_000, status).await;
    }
    s.sender.pass(now_ms()).await.unwrap();
    assert_eq!(
        events(&s.bodies()),
        ["down", "up", "down", "up", "down"],
        "each as itself, in order"
    );
}

async fn a_degraded_spell_is_told_when_it_starts_and_when_it_ends_in_order(store: Store) {
    let s = setup(store, AlertsSettings::default()).await;
    s.channel(60).await;
    // The degraded alert's first attempt fails: the up that ends it waits.
    s.receiver.script("/hook", &[503]);
    let svc = s.service("api").await;
    let t = now_ms() - 10 * MIN;
    s.check(svc, t, Status::Up).await;
    s.check(svc, t + 1_000, Status::Degraded).await;
    s.check(svc, t + 3 * MIN, Status::Up).await;
    s.sender.pass(now_ms()).await.unwrap();
    assert_eq!(events(&s.bodies()), ["degraded"]);
    let rows = s.alerts(svc).await;
    assert!(
        rows[1]
            .2
            .as_deref()
            .is_some_and(|e| e.starts_with("waiting")),
        "{rows:?}"
    );
    s.sender.pass(now_ms() + 10_000).await.unwrap();
    s.sender.pass(now_ms() + 20_000).await.unwrap();
    let got = s.bodies();
    assert_eq!(events(&got), ["degraded", "degraded", "up"], "{got:?}");
    let (degraded, up) = (&got[1], &got[2]);
    assert_eq!(
        (&degraded["old_status"], &degraded["new_status"]),
        (&json!("UP"), &json!("DEGRADED"))
    );
    assert_eq!(degraded["check"]["status"], "DEGRADED");
    assert_eq!(degraded["check"]["error"], SLOW, "the reason travels");
    assert_eq!(
        (&up["old_status"], &up["new_status"]),
        (&json!("DEGRADED"), &json!("UP"))
    );
    assert_eq!(
        up["since"], degraded["at"],
        "the up says since when it was DEGRADED"
    );

    // DOWN, then back but slow: an up (resolved) that leaves it DEGRADED,
    // then its end. Reminders are for DOWN only.
    s.check(svc, t + 4 * MIN, Status::Down).await;
    s.check(svc, t + 5 * MIN, Status::Degraded).await;
    assert_eq!(
        s.sender.write_reminders(now_ms() + 60 * MIN).await.unwrap(),
        0
    );
    s.check(svc, t + 6 * MIN, Status::Up).await;
    s.sender.pass(now_ms()).await.unwrap();
    let got = s.bodies();
    assert_eq!(events(&got[3..]), ["down", "up", "up"], "{:?}", &got[3..]);
    assert_eq!(got[4]["new_status"], "DEGRADED");
    assert_eq!(got[4]["since"], got[3]["at"], "how long it was down");
    assert_eq!(got[5]["old_status"], "DEGRADED");
    assert_eq!(got[5]["since"], got[4]["at"]);
    let rows = s.alerts(svc).await;
    assert!(rows.iter().all(|r| r.1 == "sent"), "{rows:?}");
}

async fn a_degraded_spell_inside_a_window_stays_quiet_and_one_still_on_is_told(store: Store) {
    let s = setup(store, AlertsSettings::default()).await;
    s.channel(0).await;
    let svc = s.service("api").await;
    window(&s, svc, 60 * MIN).await;
    let t = now_ms();
    s.check(svc, t - 5_000, Status::Up).await;
    s.check(svc, t - 4_000, Status::Degraded).await;
    s.sender.pass(now_ms()).await.unwrap();
    s.check(svc, t - 3_000, Status::Up).await;
    s.sender.pass(now_ms()).await.unwrap();
    // Another spell begins, still on when the window ends.
    s.check(svc, t - 2_000, Status::Degraded).await;
    s.sender.pass(now_ms()).await.unwrap();
    assert!(s.bodies().is_empty(), "held: {:?}", s.bodies());

    let windows = s.store.windows_after(0, 10).await.unwrap();
    s.store.delete_window(windows[0].id).await.unwrap();
    s.sender.pass(now_ms()).await.unwrap();
    let got = s.bodies();
    assert_eq!(events(&got), ["degraded"], "{got:?}");
    assert_eq!(
        got[0]["check"]["checked_at"],
        healthmon::domain::time::to_rfc3339(t - 2_000 + 5),
        "the spell still on"
    );
    let rows = s.alerts(svc).await;
    let states: Vec<(&str, &str, Option<&str>)> = rows
        .iter()
        .map(|(e, state, err)| (e.as_str(), state.as_str(), err.as_deref()))
        .collect();
    assert_eq!(
        states,
        [
            ("degraded", "failed", Some(NO_LONGER_DEGRADED)),
            ("up", "failed", Some(RECOVERED_IN_MAINTENANCE)),
            ("degraded", "sent", None),
        ]
    );
}
