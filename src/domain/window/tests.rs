use super::*;
use chrono::TimeZone;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Millis {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("a valid UTC time")
        .timestamp_millis()
}

fn recurring(pattern: &str, duration_s: i64, zone: &str) -> Schedule {
    Schedule::Recurring(Box::new(
        Recurrence::new(pattern, duration_s, zone).expect("valid"),
    ))
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;

#[test]
fn a_one_off_window_is_open_from_its_start_until_just_before_its_end() {
    let (start, end) = (utc(2026, 12, 24, 22, 0), utc(2026, 12, 25, 2, 0));
    let w = Schedule::Once { start, end };
    assert_eq!(w.active_until(start - 1), None, "before it");
    assert_eq!(w.active_until(start), Some(end), "at its start");
    assert_eq!(w.active_until(end - 1), Some(end), "just before its end");
    assert_eq!(w.active_until(end), None, "at its end it is over");
    assert_eq!(w.next_start(start - 1), Some(start));
    assert_eq!(w.next_start(start), None, "a one-off window opens once");
}

#[test]
fn a_recurring_window_is_read_on_its_zones_wall_clock_in_winter_and_summer() {
    // Sundays 02:00 Berlin, one hour: 01:00 UTC in winter (CET), 00:00 UTC
    // in summer (CEST).
    let w = recurring("0 2 * * SUN", 3600, "Europe/Berlin");
    let winter = utc(2026, 1, 4, 1, 0); // Sunday
    assert_eq!(w.active_until(winter - 1), None);
    assert_eq!(w.active_until(winter), Some(winter + HOUR));
    assert_eq!(w.active_until(winter + 59 * MINUTE), Some(winter + HOUR));
    assert_eq!(w.active_until(winter + HOUR), None);
    let summer = utc(2026, 7, 5, 0, 0); // Sunday
    assert_eq!(w.active_until(summer + 30 * MINUTE), Some(summer + HOUR));
    assert_eq!(w.active_until(summer + HOUR + 1), None);
    assert_eq!(
        w.active_until(utc(2026, 7, 6, 0, 30)),
        None,
        "not on Monday"
    );
    assert_eq!(w.next_start(winter), Some(winter + 7 * 24 * HOUR));
}

#[test]
fn on_the_spring_forward_day_a_window_in_the_gap_starts_after_it_and_lasts_its_duration() {
    // 2026-03-29 Berlin jumps from 02:00 CET to 03:00 CEST (01:00 UTC), so
    // 02:00 does not exist: the window opens at 03:00 CEST, 01:00 UTC.
    let w = recurring("0 2 * * SUN", 3600, "Europe/Berlin");
    let after_gap = utc(2026, 3, 29, 1, 0);
    assert_eq!(w.next_start(utc(2026, 3, 28, 12, 0)), Some(after_gap));
    assert_eq!(w.active_until(after_gap - 1), None, "not before the gap");
    assert_eq!(w.active_until(after_gap), Some(after_gap + HOUR));
    assert_eq!(w.active_until(after_gap + HOUR - 1), Some(after_gap + HOUR));
    assert_eq!(w.active_until(after_gap + HOUR), None);
}

#[test]
fn on_the_fall_back_day_a_window_at_the_repeated_hour_opens_once() {
    // 2026-10-25 Berlin sets 03:00 CEST back to 02:00 CET: 02:00 happens at
    // 00:00 UTC and again at 01:00 UTC. The window opens at the first.
    let w = recurring("0 2 * * SUN", 1800, "Europe/Berlin");
    let first = utc(2026, 10, 25, 0, 0);
    assert_eq!(w.next_start(utc(2026, 10, 24, 12, 0)), Some(first));
    assert_eq!(
        w.active_until(first + 10 * MINUTE),
        Some(first + 30 * MINUTE)
    );
    assert_eq!(
        w.active_until(first + HOUR + 10 * MINUTE),
        None,
        "the second 02:00 opens nothing"
    );
    assert_eq!(w.next_start(first), Some(utc(2026, 11, 1, 1, 0)));
}

#[test]
fn overlapping_occurrences_end_at_the_latest_end() {
    // Every hour for 90 minutes: at 10:45 both the 09:00 and the 10:00
    // occurrences are open; the later one ends at 11:30.
    let w = recurring("0 * * * *", 5400, "UTC");
    assert_eq!(
        w.active_until(utc(2026, 5, 1, 10, 45)),
        Some(utc(2026, 5, 1, 11, 30))
    );
}

#[test]
fn durations_are_elapsed_seconds_across_a_clock_change() {
    // Saturday 23:00 Berlin for 4 h over the spring-forward night ends at
    // 04:00 CEST (02:00 UTC), four real hours later, not at 03:00 wall time.
    let w = recurring("0 23 * * SAT", 4 * 3600, "Europe/Berlin");
    let start = utc(2026, 3, 28, 22, 0);
    assert_eq!(w.active_until(start), Some(start + 4 * HOUR));
}

#[test]
fn scope_covers_the_services_it_names_or_all() {
    assert!(Scope::All.covers(ServiceId(7)));
    let some = Scope::Services(vec![ServiceId(1), ServiceId(3)]);
    assert!(some.covers(ServiceId(3)));
    assert!(!some.covers(ServiceId(2)));
}

#[test]
fn a_one_off_body_is_accepted_and_round_trips() {
    let body = json!({
        "name": " deploy ", "services": [3, 1, 3],
        "start": "2026-12-24T23:00:00+01:00", "end": "2026-12-25T02:00:00Z", "tag": null,
    });
    let spec = full_spec(&body).expect("valid");
    assert_eq!(spec.name, "deploy");
    assert_eq!(
        spec.scope,
        Scope::Services(vec![ServiceId(3), ServiceId(1)]),
        "repeats dropped, order kept"
    );
    assert_eq!(
        spec.schedule,
        Schedule::Once {
            start: utc(2026, 12, 24, 22, 0),
            end: utc(2026, 12, 25, 2, 0)
        }
    );
    assert_eq!(full_spec(&spec.to_body()), Ok(spec));
}

#[test]
fn a_tag_stands_in_for_service_ids_or_adds_to_them_and_round_trips() {
    let only = full_spec(&json!({
        "name": "db", "tag": "db:primary", "cron": "0 2 * * *", "duration_s": 60,
    }))
    .expect("a tag alone is enough");
    assert_eq!(only.scope, Scope::Services(Vec::new()));
    assert_eq!(only.tag.as_deref(), Some("db:primary"));
    assert_eq!(full_spec(&only.to_body()), Ok(only.clone()));
    let empty = json!({"name": "db", "services": [], "tag": "db:primary",
                       "cron": "0 2 * * *", "duration_s": 60});
    assert_eq!(
        full_spec(&empty),
        Ok(only.clone()),
        "[] with a tag is the same"
    );
    let both = full_spec(&json!({
        "name": "db", "services": [4], "tag": "prod", "cron": "0 2 * * *", "duration_s": 60,
    }))
    .expect("ids and a tag");
    assert_eq!(both.scope, Scope::Services(vec![ServiceId(4)]));
    assert_eq!(full_spec(&both.to_body()), Ok(both.clone()));
    // Removing the tag of a tag-only window leaves it covering nothing:
    // refused, naming services.
    let errors = patch_spec(&only, &json!({"tag": null})).unwrap_err();
    assert_eq!(fields(&errors), ["services"]);
    let moved = patch_spec(&both, &json!({"services": null})).expect("tag only");
    assert_eq!(moved.scope, Scope::Services(Vec::new()));
}

#[test]
fn a_recurring_body_defaults_to_utc_and_round_trips() {
    let spec = full_spec(&json!({
        "name": "nightly", "services": "all", "cron": "30 3 * * *", "duration_s": 600,
    }))
    .expect("valid");
    assert_eq!(spec.scope, Scope::All);
    let Schedule::Recurring(r) = &spec.schedule else {
        panic!("not recurring: {spec:?}")
    };
    assert_eq!(
        (r.pattern(), r.duration_s(), r.zone()),
        ("30 3 * * *", 600, "UTC")
    );
    assert_eq!(full_spec(&spec.to_body()), Ok(spec.clone()));
    let berlin = full_spec(&json!({
        "name": "n", "services": "all", "cron": "@weekly", "duration_s": 60,
        "timezone": "Europe/Berlin",
    }))
    .expect("valid");
    assert_eq!(full_spec(&berlin.to_body()), Ok(berlin));
}

#[test]
fn every_bad_field_is_named() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!([]), vec![""]),
        (
            json!({"services": "all", "cron": "0 2 * * *", "duration_s": 60}),
            vec!["name"],
        ),
        (
            json!({"name": "", "services": "all", "cron": "0 2 * * *", "duration_s": 60}),
            vec!["name"],
        ),
        (
            json!({"name": "n", "cron": "0 2 * * *", "duration_s": 60}),
            vec!["services"],
        ),
        (
            json!({"name": "n", "services": [], "cron": "0 2 * * *", "duration_s": 60}),
            vec!["services"],
        ),
        (
            json!({"name": "n", "services": [0], "cron": "0 2 * * *", "duration_s": 60}),
            vec!["services"],
        ),
        (
            json!({"name": "n", "services": ["1"], "cron": "0 2 * * *", "duration_s": 60}),
            vec!["services"],
        ),
        (
            json!({"name": "n", "services": "some", "cron": "0 2 * * *", "duration_s": 60}),
            vec!["services"],
        ),
        (
            json!({"name": "n", "services": "all", "tag": "prod", "cron": "0 2 * * *", "duration_s": 60}),
            vec!["tag"],
        ),
        (
            json!({"name": "n", "tag": "", "cron": "0 2 * * *", "duration_s": 60}),
            vec!["tag"],
        ),
        (
            json!({"name": "n", "tag": "has space", "cron": "0 2 * * *", "duration_s": 60}),
            vec!["tag"],
        ),
        (
            json!({"name": "n", "tag": ["prod"], "cron": "0 2 * * *", "duration_s": 60}),
            vec!["tag"],
        ),
        (
            json!({"name": "n", "tag": "x".repeat(65), "cron": "0 2 * * *", "duration_s": 60}),
            vec!["tag"],
        ),
        (json!({"name": "n", "services": "all"}), vec!["start"]),
        (
            json!({"name": "n", "services": "all", "start": "2026-01-01T00:00:00Z"}),
            vec!["end"],
        ),
        (
            json!({"name": "n", "services": "all", "end": "2026-01-01T00:00:00Z"}),
            vec!["start"],
        ),
        (
            json!({"name": "n", "services": "all", "start": "tomorrow", "end": "2026-01-01T00:00:00Z"}),
            vec!["start"],
        ),
        (
            json!({"name": "n", "services": "all", "start": "2026-01-01T00:00:00", "end": "2026-01-02T00:00:00Z"}),
            vec!["start"],
        ),
        (
            json!({"name": "n", "services": "all", "start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}),
            vec!["end"],
        ),
        (
            json!({"name": "n", "services": "all", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00+01:00"}),
            vec!["end"],
        ),
        (
            json!({"name": "n", "services": "all", "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "cron": "0 2 * * *"}),
            vec!["cron"],
        ),
        (
            json!({"name": "n", "services": "all", "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "timezone": "UTC"}),
            vec!["timezone"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": "0 2 * * *"}),
            vec!["duration_s"],
        ),
        (
            json!({"name": "n", "services": "all", "duration_s": 60}),
            vec!["cron"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": "0 2 * *", "duration_s": 60}),
            vec!["cron"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": "0 0 0 2 * *", "duration_s": 60}),
            vec!["cron"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": "61 2 * * *", "duration_s": 60}),
            vec!["cron"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": "0 0 31 2 *", "duration_s": 60}),
            vec!["cron"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": 5, "duration_s": 60}),
            vec!["cron"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": "0 2 * * *", "duration_s": 0}),
            vec!["duration_s"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": "0 2 * * *", "duration_s": MAX_DURATION_S + 1}),
            vec!["duration_s"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": "0 2 * * *", "duration_s": 1.5}),
            vec!["duration_s"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": "0 2 * * *", "duration_s": 60, "timezone": "Mars/Olympus"}),
            vec!["timezone"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": "0 2 * * *", "duration_s": 60, "timezone": "europe/berlin"}),
            vec!["timezone"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": "bad", "duration_s": -1, "timezone": "Nowhere"}),
            vec!["cron", "duration_s", "timezone"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": "0 2 * * *", "duration_s": 60, "id": 4, "active": true}),
            vec!["id", "active"],
        ),
        (
            json!({"name": "n", "services": "all", "cron": "0 2 * * *", "duration_s": 60, "colour": "red"}),
            vec!["colour"],
        ),
    ];
    for (body, expected) in cases {
        let errors = full_spec(&body).expect_err(&format!("{body} must be refused"));
        let mut got = fields(&errors);
        got.sort_unstable();
        let mut want = expected.clone();
        want.sort_unstable();
        assert_eq!(got, want, "{body}: {errors:?}");
        assert!(errors.iter().all(|e| !e.message.is_empty()));
    }
}

#[test]
fn the_maximum_duration_and_minimum_are_accepted() {
    for d in [1, MAX_DURATION_S] {
        let body = json!({"name": "n", "services": "all", "cron": "0 2 * * *", "duration_s": d});
        assert!(full_spec(&body).is_ok(), "{d}");
    }
}

#[test]
fn a_patch_merges_and_null_removes_so_a_window_can_change_kind() {
    let current = full_spec(&json!({
        "name": "n", "services": [1], "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z",
    }))
    .expect("valid");
    let renamed = patch_spec(&current, &json!({"name": "m"})).expect("valid");
    assert_eq!(renamed.name, "m");
    assert_eq!(renamed.schedule, current.schedule);
    let refused = patch_spec(&current, &json!({"cron": "0 2 * * *", "duration_s": 60}))
        .expect_err("both kinds at once");
    assert_eq!(fields(&refused), ["cron", "duration_s"]);
    let recurring = patch_spec(
        &current,
        &json!({"start": null, "end": null, "cron": "0 2 * * *", "duration_s": 60}),
    )
    .expect("valid");
    assert!(matches!(recurring.schedule, Schedule::Recurring(_)));
    assert_eq!(recurring.scope, current.scope);
    let early = patch_spec(&current, &json!({"end": "2025-12-31T00:00:00Z"})).expect_err("early");
    assert_eq!(fields(&early), ["end"]);
    assert_eq!(
        fields(&patch_spec(&current, &json!(3)).expect_err("not an object")),
        [""]
    );
}

proptest::proptest! {
    /// Whatever the time, an open recurring window's end is after `now` and
    /// at most its duration away, and a closed one is not open a moment
    /// later unless a new occurrence began.
    #[test]
    fn recurring_windows_end_within_their_duration(
        now in 1_700_000_000_000i64..1_900_000_000_000,
        duration in 1i64..200_000,
        zone in proptest::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]),
        pattern in proptest::sample::select(vec!["0 2 * * SUN", "*/15 * * * *", "30 1 * * *", "0 0 1 * *"]),
    ) {
        let w = recurring(pattern, duration, zone);
        if let Some(end) = w.active_until(now) {
            proptest::prop_assert!(end > now);
            proptest::prop_assert!(end <= now + duration * 1000);
        }
        let next = w.next_start(now);
        proptest::prop_assert!(next.is_some_and(|n| n > now));
    }
}
