//! The regions the schedule lists, for the heartbeat.

use super::*;

#[test]
fn listed_regions_follow_services_as_they_come_change_and_go() {
    let regional = |regions: &[&str]| {
        let mut s = spec(10);
        s.regions = regions.iter().map(|r| (*r).to_owned()).collect();
        s
    };
    let mut s = Schedule::new();
    s.upsert(ServiceId(1), regional(&["eu", "us"]), 0);
    s.upsert(ServiceId(2), regional(&["us"]), 0);
    s.upsert(ServiceId(3), spec(10), 0);
    assert_eq!(s.listed_regions(), ["eu", "us"]);
    // A change of regions alone keeps the slot and moves the counts.
    s.upsert(ServiceId(1), regional(&["ap"]), 5);
    assert_eq!(s.listed_regions(), ["ap", "us"]);
    assert_eq!(s.next_due(), Some(0), "same check, same slot");
    s.remove(ServiceId(2));
    assert_eq!(s.listed_regions(), ["ap"]);
    let mut paused = regional(&["ap"]);
    paused.paused = true;
    s.upsert(ServiceId(1), paused, 5);
    assert!(s.listed_regions().is_empty());
    // A reload that no longer sees a service drops its regions too.
    s.upsert(ServiceId(4), regional(&["sa"]), 5);
    s.upsert(ServiceId(5), regional(&["sa", "af"]), 5);
    let mut present = HashSet::new();
    let mut kept = stored(4, "http://127.0.0.1:1/", None);
    kept.interval = Seconds(10);
    kept.regions = vec!["sa".into()];
    s.reconcile(&[kept], 5, &mut present);
    s.reconcile_end(&present);
    assert_eq!(s.listed_regions(), ["sa"]);
    // Turned into a push service: no rounds, no regions listed.
    s.upsert(ServiceId(4), push_spec(10, 0), 5);
    assert!(s.listed_regions().is_empty());
}
