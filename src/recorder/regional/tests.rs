use super::*;
use crate::bus::Capacities;

fn regional() -> Regional {
    Regional::new(&Bus::in_process(Capacities {
        jobs: 4,
        results: 4,
        events: 4,
        schedule: 4,
    }))
}

fn vote(service: i64, region: &str, status: Status) -> CheckResult {
    CheckResult {
        service_id: ServiceId(service),
        scheduled_at: 10_000,
        status,
        latency_ms: 5,
        status_code: None,
        error: None,
        checked_at: 10_005,
        cert_expires_at: None,
        region: Some(region.to_owned()),
    }
}

/// `services` services seen by regions a and b as UP and by c as DOWN for
/// the first `c_failing` of them, all at `now`.
fn round(r: &mut Regional, services: i64, c_failing: i64, now: Millis) {
    for s in 1..=services {
        r.observe(&vote(s, "a", Status::Up), now);
        r.observe(&vote(s, "b", Status::Up), now);
        let c = if s <= c_failing {
            Status::Down
        } else {
            Status::Up
        };
        r.observe(&vote(s, "c", c), now);
    }
}

fn kinds(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::RegionImpaired { region, .. } => format!("impaired {region}"),
            Event::RegionRecovered { region, .. } => format!("recovered {region}"),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_region_failing_what_others_see_up_is_impaired_once_then_recovers_once() {
    let mut r = regional();
    let now = 1_000_000;
    round(&mut r, 25, 25, now);
    let events = r.judge(now);
    assert_eq!(kinds(&events), ["impaired c"]);
    assert_eq!(r.impaired_set(), ["c".to_owned()].into());
    assert_eq!(r.alerts.len(), 1, "one alert about the region");
    assert_eq!(r.alerts[0].event, AlertEvent::RegionImpaired);
    assert_eq!(
        (r.alerts[0].note.failing, r.alerts[0].note.compared),
        (25, 25)
    );
    // Judged again with nothing new: no second event or alert.
    assert!(r.judge(now + 1_000).is_empty());
    assert_eq!(r.alerts.len(), 1);
    // Its network is back: c sees them UP again.
    round(&mut r, 25, 0, now + 2_000);
    assert_eq!(kinds(&r.judge(now + 2_000)), ["recovered c"]);
    assert!(r.impaired_set().is_empty());
    assert_eq!(r.alerts.len(), 2);
    assert_eq!(r.alerts[1].event, AlertEvent::RegionRecovered);
}

#[tokio::test]
async fn a_few_failures_or_too_few_services_impair_nothing() {
    let mut r = regional();
    let now = 1_000_000;
    // Services failing only from c: real outages seen from one place.
    round(&mut r, 25, 5, now);
    assert!(r.judge(now).is_empty());
    // Every service fails from c, but there are too few to tell.
    let mut r = regional();
    round(&mut r, 10, 10, now);
    assert!(r.judge(now).is_empty());
    assert!(r.alerts.is_empty());
}

#[tokio::test]
async fn votes_older_than_the_window_are_forgotten() {
    let mut r = regional();
    let now = 1_000_000;
    round(&mut r, 25, 25, now);
    assert_eq!(kinds(&r.judge(now)), ["impaired c"]);
    // Two minutes on with nothing heard: nothing is known of c, which
    // keeps its state, and the memory is empty.
    assert!(r.judge(now + WINDOW_MS + 1).is_empty());
    assert!(r.seen.is_empty());
    assert!(r.names.is_empty());
    assert_eq!(r.impaired_set(), ["c".to_owned()].into());
}

#[tokio::test]
async fn a_recorder_behind_reads_deadlines_on_the_votes_clock() {
    let mut r = regional();
    let now = 1_000_000;
    // Idle: the wall clock.
    assert_eq!(r.clock(now), now);
    // Votes flowing, the newest checked 30 s ago (a backlog): deadlines
    // are read 30 s back, plus the slack, never ahead of the wall clock.
    r.last_vote_at = Some(now - 100);
    r.newest_vote = now - 30_000;
    assert_eq!(r.clock(now), now - 30_000 + CLOCK_SLACK_MS);
    r.newest_vote = now + 60_000;
    assert_eq!(r.clock(now), now, "a worker's clock ahead moves nothing");
    // No vote for a while: the wall clock again.
    r.last_vote_at = Some(now - IDLE_MS);
    assert_eq!(r.clock(now), now);
}
