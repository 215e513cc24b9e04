use super::*;
use proptest::prelude::*;

const NOW: Millis = 1_000_000;

/// `n` services (ids from `first`) that region `a` sees UP and region
/// `b` sees `b_sees` for the first `b_down` of them, UP for the rest.
fn round(first: i64, n: i64, b_down: i64) -> Vec<Observation> {
    let mut out = Vec::new();
    for i in 0..n {
        let service = ServiceId(first + i);
        out.push(Observation {
            service,
            region: "a".into(),
            at: NOW - 1000,
            status: Status::Up,
        });
        out.push(Observation {
            service,
            region: "b".into(),
            at: NOW - 1000,
            status: if i < b_down { Status::Down } else { Status::Up },
        });
    }
    out
}

fn standing(obs: &[Observation], impaired: &[&str], region: &str) -> Standing {
    let impaired: BTreeSet<String> = impaired.iter().map(|r| (*r).to_owned()).collect();
    judge(obs, NOW, &impaired)
        .get(region)
        .copied()
        .unwrap_or_default()
}

#[test]
fn a_region_failing_most_services_others_see_up_is_impaired() {
    let s = standing(&round(1, 25, 15), &[], "b");
    assert_eq!((s.compared, s.failing, s.impaired), (25, 15, true));
    assert!(!standing(&round(1, 25, 15), &[], "a").impaired);
}

#[test]
fn half_or_less_is_not_impaired() {
    assert!(!standing(&round(1, 24, 12), &[], "b").impaired);
    assert!(!standing(&round(1, 25, 12), &[], "b").impaired);
}

#[test]
fn fewer_than_twenty_compared_services_keep_the_state() {
    assert!(!standing(&round(1, 19, 19), &[], "b").impaired);
    assert!(standing(&round(1, 19, 0), &["b"], "b").impaired);
    // Nothing seen at all: still impaired.
    assert!(standing(&[], &["b"], "b").impaired);
}

#[test]
fn recovery_needs_a_quarter_or_less() {
    assert!(standing(&round(1, 25, 10), &["b"], "b").impaired, "40 %");
    assert!(standing(&round(1, 25, 7), &["b"], "b").impaired, "28 %");
    assert!(!standing(&round(1, 24, 6), &["b"], "b").impaired, "25 %");
}

#[test]
fn a_real_outage_seen_everywhere_impairs_nobody() {
    let mut obs = round(1, 30, 30);
    for o in &mut obs {
        o.status = Status::Down;
    }
    assert_eq!(standing(&obs, &[], "b").compared, 0);
    assert!(!standing(&obs, &[], "a").impaired && !standing(&obs, &[], "b").impaired);
}

#[test]
fn only_the_last_two_minutes_count_and_the_newest_result_wins() {
    let mut old = round(1, 25, 25);
    for o in &mut old {
        o.at = NOW - WINDOW_MS - 1;
    }
    assert_eq!(standing(&old, &[], "b").compared, 0);
    // b failed everything a minute ago, then saw every service UP.
    let mut obs = round(1, 25, 25);
    for o in &mut obs {
        o.at = NOW - 60_000;
    }
    obs.extend(round(1, 25, 0));
    assert!(!standing(&obs, &[], "b").impaired);
}

#[test]
fn an_impaired_region_seeing_up_does_not_make_another_compared() {
    // c is impaired and sees everything UP; b sees everything DOWN; no
    // unimpaired region saw the services up, so b is not judged on them.
    let obs: Vec<Observation> = round(1, 25, 25)
        .into_iter()
        .map(|mut o| {
            if o.region == "a" {
                o.region = "c".into();
            }
            o
        })
        .collect();
    assert_eq!(standing(&obs, &["c"], "b").compared, 0);
}

fn observation() -> impl Strategy<Value = Observation> {
    (
        1i64..40,
        prop_oneof![Just("a"), Just("b"), Just("c")],
        (NOW - WINDOW_MS - 5_000)..=NOW,
        prop_oneof![Just(Status::Up), Just(Status::Degraded), Just(Status::Down)],
    )
        .prop_map(|(service, region, at, status)| Observation {
            service: ServiceId(service),
            region: region.to_owned(),
            at,
            status,
        })
}

proptest! {
    /// The judgement depends on the set of results, not their order.
    #[test]
    fn the_order_of_results_does_not_matter(
        obs in proptest::collection::vec(observation(), 0..300),
        impaired_b in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let impaired: BTreeSet<String> =
            if impaired_b { ["b".to_owned()].into() } else { BTreeSet::new() };
        let mut shuffled = obs.clone();
        // A deterministic shuffle from the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(judge(&obs, NOW, &impaired), judge(&shuffled, NOW, &impaired));
    }

    /// A region is never impaired on fewer than MIN_COMPARED services,
    /// unless it already was.
    #[test]
    fn too_little_evidence_changes_nothing(
        obs in proptest::collection::vec(observation(), 0..300),
    ) {
        for (_, s) in judge(&obs, NOW, &BTreeSet::new()) {
            if s.impaired {
                prop_assert!(s.compared >= MIN_COMPARED && 2 * s.failing > s.compared);
            }
        }
    }
}
