//! Unit tests of body validation.

use super::*;
use crate::domain::time::Seconds;
use serde_json::json;

mod fields;
mod kinds;
mod tags;

pub(super) fn fields_of(errs: &[FieldError]) -> Vec<&str> {
    errs.iter().map(|e| e.field.as_str()).collect()
}

/// A body for `url` with `extra` fields added.
pub(super) fn body(url: &str, extra: Value) -> Value {
    let mut b = json!({"name": "a", "url": url, "interval": 60});
    if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(extra.clone());
    }
    b
}

/// The errors of a POST body, as (field, message) pairs.
pub(super) fn refused(url: &str, extra: Value) -> Vec<FieldError> {
    full_spec(&body(url, extra.clone())).expect_err(&format!("{url} {extra}"))
}

#[test]
fn a_url_password_sent_back_as_shown_keeps_the_stored_one_for_the_same_place_only() {
    let stored = full_spec(&body("https://user:s3cret@example.com/x", json!({}))).unwrap();
    let shown = json!({"url": "https://user:***@example.com/x"});
    let kept = patch_spec(&stored, &shown).unwrap();
    assert_eq!(kept.url, "https://user:s3cret@example.com/x");
    let put = replace_spec(&stored, &body("https://user:***@example.com/y", json!({}))).unwrap();
    assert_eq!(
        put.url, "https://user:s3cret@example.com/y",
        "another path, same place"
    );
    for elsewhere in [
        "https://user:***@evil.example/x",
        "https://other:***@example.com/x",
        "https://user:***@example.com:8443/x",
        "http://user:***@example.com/x",
    ] {
        let errs = patch_spec(&stored, &json!({"url": elsewhere})).unwrap_err();
        assert_eq!(fields_of(&errs), ["url"], "{elsewhere}");
    }
    let errs = refused("https://user:***@example.com/", json!({}));
    assert_eq!(fields_of(&errs), ["url"], "no stored password to keep");
    let changed = patch_spec(&stored, &json!({"url": "https://user:new@example.com/x"})).unwrap();
    assert_eq!(changed.url, "https://user:new@example.com/x");
}

#[test]
fn accepts_the_original_notes_body() {
    let spec = full_spec(&json!({
        "name": "test register", "url": "https://www.google.com", "interval": 30, "Timeout": 20
    }))
    .unwrap();
    assert_eq!(spec.name, "test register");
    assert_eq!(spec.url, "https://www.google.com/");
    assert_eq!((spec.interval, spec.timeout), (Seconds(30), Seconds(20)));
    assert!(!spec.paused);
}

#[test]
fn names_with_format_characters_or_nothing_visible_are_refused() {
    for name in [
        "\u{200B}",
        "\u{200B}\u{2060}\u{FEFF}",
        "\u{3164}",
        " \u{2800} ",
        "invoice\u{202E}gnp.exe",
        "a\u{2066}b",
        "zero\u{200D}width",
    ] {
        let errs =
            full_spec(&json!({"name": name, "url": "http://x", "interval": 60})).expect_err(name);
        assert_eq!(fields_of(&errs), ["name"], "{name:?}");
    }
    // Letters of any script, and emoji, are names.
    for name in ["Zürich API", "東京", "API 🚀", "مرحبا"] {
        let spec = full_spec(&json!({"name": name, "url": "http://x", "interval": 60}));
        assert_eq!(spec.map(|s| s.name).ok().as_deref(), Some(name));
    }
}

#[test]
fn control_characters_and_port_0_in_urls_are_refused_not_rewritten() {
    for url in [
        "http://exa\nmple.com/",
        "http://example.com/a\rb",
        "http://example.com/\u{0}",
        "http://example.com/\ta",
        "http://example.com/\n",
        "http://example.com:0/",
    ] {
        let err = check_url(url).expect_err(url);
        assert!(
            err.contains("control") || err.contains("port"),
            "{url:?}: {err}"
        );
    }
    assert_eq!(
        check_url(" http://example.com:1/ ").as_deref(),
        Ok("http://example.com:1/")
    );
}

#[test]
fn timeout_defaults_to_ten_capped_by_interval() {
    let a = full_spec(&json!({"name": "a", "url": "http://x", "interval": 60})).unwrap();
    assert_eq!(a.timeout, Seconds(10));
    let b = full_spec(&json!({"name": "a", "url": "http://x", "interval": 3})).unwrap();
    assert_eq!(b.timeout, Seconds(3));
}

#[test]
fn reports_every_bad_field_by_name() {
    let errs = full_spec(&json!({
        "name": "", "url": "ftp://x", "interval": 0, "timeout": "5", "colour": "red"
    }))
    .unwrap_err();
    let mut f = fields_of(&errs);
    f.sort();
    assert_eq!(f, ["colour", "interval", "name", "timeout", "url"]);
}

#[test]
fn missing_required_fields_are_named() {
    let errs = full_spec(&json!({})).unwrap_err();
    assert_eq!(fields_of(&errs), ["name", "url", "interval"]);
}

#[test]
fn bounds_are_inclusive_and_enforced() {
    let base = |name: &str, interval: i64, timeout: i64| {
        full_spec(
            &json!({"name": name, "url": "http://x", "interval": interval, "timeout": timeout}),
        )
    };
    assert!(base(&"n".repeat(200), 86_400, 1).is_ok());
    assert_eq!(
        fields_of(&base(&"n".repeat(201), 30, 10).unwrap_err()),
        ["name"]
    );
    assert_eq!(fields_of(&base("n", 86_401, 10).unwrap_err()), ["interval"]);
    assert_eq!(fields_of(&base("n", 30, 31).unwrap_err()), ["timeout"]);
    assert_eq!(fields_of(&base("n", 30, 0).unwrap_err()), ["timeout"]);
    assert!(base("n", 1, 1).is_ok());
}

#[test]
fn fractional_and_huge_numbers_are_rejected() {
    let errs = full_spec(&json!({"name": "a", "url": "http://x", "interval": 1.5})).unwrap_err();
    assert_eq!(fields_of(&errs), ["interval"]);
    let errs = full_spec(&json!({"name": "a", "url": "http://x", "interval": 1e30})).unwrap_err();
    assert_eq!(fields_of(&errs), ["interval"]);
}

#[test]
fn urls_must_be_absolute_http_with_host() {
    assert!(check_url("https://example.com/health").is_ok());
    assert!(check_url("http://127.0.0.1:8080").is_ok());
    assert!(check_url("example.com").is_err());
    assert!(check_url("javascript:alert(1)").is_err());
    assert!(check_url("file:///etc/passwd").is_err());
    assert!(check_url("http://").is_err());
    let long = format!("http://example.com/{}", "a".repeat(MAX_URL_LEN));
    assert!(check_url(&long).is_err());
}

#[test]
fn read_only_and_duplicate_fields_are_errors() {
    let errs = full_spec(&json!({
        "id": 3, "name": "a", "url": "http://x", "interval": 5, "timeout": 1, "TIMEOUT": 2
    }))
    .unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| e.field == "id" && e.message.contains("read-only"))
    );
}

#[test]
fn non_objects_are_rejected() {
    assert!(full_spec(&json!([1, 2])).is_err());
    assert!(full_spec(&json!("x")).is_err());
}

#[test]
fn patch_merges_and_revalidates_the_whole() {
    let cur =
        full_spec(&json!({"name": "a", "url": "http://x", "interval": 30, "timeout": 20})).unwrap();
    let p = patch_spec(&cur, &json!({"name": "b"})).unwrap();
    assert_eq!(
        (p.name.as_str(), p.interval, p.timeout),
        ("b", Seconds(30), Seconds(20))
    );
    let errs = patch_spec(&cur, &json!({"interval": 10})).unwrap_err();
    assert_eq!(
        fields_of(&errs),
        ["timeout"],
        "lowering interval below timeout fails"
    );
    let p = patch_spec(
        &cur,
        &json!({"paused": true, "expected_statuses": [503, 200, 200]}),
    )
    .unwrap();
    assert!(p.paused);
    assert_eq!(p.expected_statuses, Some(vec![200, 503]));
    let p = patch_spec(&p, &json!({"expected_statuses": null})).unwrap();
    assert_eq!(p.expected_statuses, None);
    assert!(patch_spec(&cur, &json!({"name": null})).is_err());
}

#[test]
fn noise_control_fields_default_to_one_check_deciding() {
    let spec = full_spec(&json!({"name": "a", "url": "http://x", "interval": 60})).unwrap();
    assert_eq!((spec.failure_threshold, spec.success_threshold), (1, 1));
    assert_eq!(spec.retry_interval, None);
    assert_eq!(spec.effective_retry_interval(), Seconds(60));
    assert!(spec.channels.is_empty());
}

#[test]
fn noise_control_fields_are_read_and_checked() {
    let spec = full_spec(&json!({
        "name": "a", "url": "http://x", "interval": 60,
        "failure_threshold": 3, "success_threshold": 2, "retry_interval": 5,
        "channels": [4, 2, 4],
    }))
    .unwrap();
    assert_eq!((spec.failure_threshold, spec.success_threshold), (3, 2));
    assert_eq!(spec.retry_interval, Some(Seconds(5)));
    assert_eq!(spec.channels, [ChannelId(4), ChannelId(2)], "repeats go");
    for (field, bad) in [
        ("failure_threshold", json!(0)),
        ("failure_threshold", json!(101)),
        ("success_threshold", json!("2")),
        ("success_threshold", json!(1.5)),
        ("retry_interval", json!(0)),
        ("retry_interval", json!(61)),
        ("channels", json!([0])),
        ("channels", json!(["1"])),
        ("channels", json!(3)),
        ("channels", json!((1..=33).collect::<Vec<i64>>())),
    ] {
        let mut body = json!({"name": "a", "url": "http://x", "interval": 60});
        body[field] = bad.clone();
        let errors = full_spec(&body).expect_err(&format!("{field}: {bad}"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, field, "{errors:?}");
    }
}

#[test]
fn a_patch_keeps_resets_and_rechecks_noise_control() {
    let current = full_spec(&json!({
        "name": "a", "url": "http://x", "interval": 60,
        "failure_threshold": 3, "retry_interval": 5, "channels": [1],
    }))
    .unwrap();
    let kept = patch_spec(&current, &json!({"name": "b"})).unwrap();
    assert_eq!(kept.failure_threshold, 3);
    assert_eq!(kept.retry_interval, Some(Seconds(5)));
    assert_eq!(kept.channels, [ChannelId(1)]);
    let reset = patch_spec(
        &current,
        &json!({"failure_threshold": null, "retry_interval": null, "channels": null}),
    )
    .unwrap();
    assert_eq!(reset.failure_threshold, 1);
    assert_eq!(reset.retry_interval, None);
    assert!(reset.channels.is_empty());
    // An unset retry interval follows the interval down...
    let shorter = patch_spec(&reset, &json!({"interval": 20})).unwrap();
    assert_eq!(shorter.effective_retry_interval(), Seconds(20));
    // ...a set one may not end up above it.
    let errors = patch_spec(&current, &json!({"interval": 4, "timeout": 4})).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "retry_interval");
}

#[test]
fn an_unset_timeout_follows_the_interval_until_the_user_sets_one() {
    let two = full_spec(&json!({"name": "a", "url": "http://x", "interval": 2})).unwrap();
    assert_eq!(two.timeout, Seconds(2));
    assert!(two.timeout_follows_interval);
    let one = patch_spec(&two, &json!({"interval": 1})).unwrap();
    assert_eq!((one.interval, one.timeout), (Seconds(1), Seconds(1)));
    let sixty = patch_spec(&one, &json!({"interval": 60})).unwrap();
    assert_eq!(sixty.timeout, Seconds(10), "the default is capped at 10 s");
    assert!(sixty.timeout_follows_interval);
    let renamed = patch_spec(&sixty, &json!({"name": "b"})).unwrap();
    assert!(
        renamed.timeout_follows_interval,
        "other changes leave it following"
    );

    // Set, it is the user's: it stays put, and an interval below it fails.
    let set = patch_spec(&sixty, &json!({"timeout": 5})).unwrap();
    assert_eq!(set.timeout, Seconds(5));
    assert!(!set.timeout_follows_interval);
    let longer = patch_spec(&set, &json!({"interval": 120})).unwrap();
    assert_eq!(longer.timeout, Seconds(5));
    let errors = patch_spec(&set, &json!({"interval": 4})).unwrap_err();
    assert_eq!(fields_of(&errors), ["timeout"]);
    assert!(errors[0].message.contains("5 s > 4 s"), "{errors:?}");

    // null gives it back to the interval, in the same PATCH or later.
    let both = patch_spec(&set, &json!({"timeout": null, "interval": 4})).unwrap();
    assert_eq!(both.timeout, Seconds(4));
    assert!(both.timeout_follows_interval);
    let again = patch_spec(&both, &json!({"interval": 3})).unwrap();
    assert_eq!(again.timeout, Seconds(3));

    // A body that sets it, by POST or PUT, sets it; one without, follows.
    let posted =
        full_spec(&json!({"name": "a", "url": "http://x", "interval": 30, "timeout": 10})).unwrap();
    assert!(!posted.timeout_follows_interval, "10 given is 10 set");
    assert!(patch_spec(&posted, &json!({"interval": 5})).is_err());
    let put = replace_spec(
        &posted,
        &json!({"name": "a", "url": "http://x", "interval": 5}),
    )
    .unwrap();
    assert_eq!(put.timeout, Seconds(5));
    assert!(put.timeout_follows_interval);
}

#[test]
fn a_following_timeout_bounds_degraded_latency_as_it_is_now() {
    let spec = full_spec(&json!({"name": "a", "url": "http://x", "interval": 60,
        "degraded_latency_ms": 5000}))
    .unwrap();
    let errors = patch_spec(&spec, &json!({"interval": 2})).unwrap_err();
    assert_eq!(fields_of(&errors), ["degraded_latency_ms"], "{errors:?}");
    assert!(patch_spec(&spec, &json!({"interval": 5})).is_ok());
}

#[test]
fn a_url_without_a_scheme_is_refused_with_the_http_url_meant() {
    for (raw, meant) in [
        ("localhost:18999", "http://localhost:18999"),
        ("example.com/health", "http://example.com/health"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("  localhost  ", "http://localhost"),
        ("[::1]:9/x?y#z", "http://[::1]:9/x?y#z"),
        (
            "api.internal:8443/health?full=1",
            "http://api.internal:8443/health?full=1",
        ),
    ] {
        let errors = refused(raw, json!({}));
        assert_eq!(fields_of(&errors), ["url"], "{raw}");
        assert!(
            errors[0]
                .message
                .ends_with(&format!("did you mean \"{meant}\"?")),
            "{raw}: {errors:?}"
        );
        assert!(check_url(meant).is_ok(), "the suggestion itself is good");
    }
    // A scheme of ours, another scheme, or no host: no guess, the usual error.
    for raw in [
        "tcp:5432",
        "ftp://x/",
        "mailto:ops@example.com",
        "javascript:alert(1)",
        "localhost:0",
        "localhost:99999",
        ":8080",
        "/health",
        "user@example.com",
        "exa mple.com",
    ] {
        let errors = refused(raw, json!({}));
        assert_eq!(fields_of(&errors), ["url"], "{raw}");
        assert!(
            !errors[0].message.contains("did you mean"),
            "{raw}: {errors:?}"
        );
    }
}

mod properties {
    use super::super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "name",
                "url",
                "interval",
                "timeout",
                "Timeout",
                "PAUSED",
                "paused",
                "expected_statuses",
                "failure_threshold",
                "Success_Threshold",
                "retry_interval",
                "channels",
                "method",
                "GRACE",
                "headers",
                "expect",
                "degraded_latency_ms",
                "id",
                "last_status",
                "colour",
                "",
            ])
            .prop_map(str::to_owned),
            "[a-zA-Z_]{1,12}",
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-5i64..100_000).prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,210}".prop_map(Value::from),
            prop::sample::select(vec![
                "http://127.0.0.1:8080/health",
                "https://example.com",
                "ftp://x",
                "x",
                " http://a ",
                "http://user:pw@host/",
                "http://[::1]:9/",
                "push://",
                "tcp://127.0.0.1:9",
                "dns:///example.com?type=mx",
                "post",
                "***",
            ])
            .prop_map(Value::from),
            Just(json!({"X-A": "v"})),
            Just(json!(["a"])),
            prop::collection::vec(0u64..700, 0..5).prop_map(|v| json!(v)),
        ]
    }

    fn body() -> impl Strategy<Value = Value> {
        prop::collection::vec((key(), value()), 0..8)
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect()))
    }

    fn as_json(spec: &ServiceSpec) -> Value {
        let mut v = json!({
            "name": spec.name, "url": spec.url, "interval": spec.interval,
            "timeout": (!spec.timeout_follows_interval).then_some(spec.timeout),
            "paused": spec.paused,
            "expected_statuses": spec.expected_statuses,
            "failure_threshold": spec.failure_threshold,
            "success_threshold": spec.success_threshold,
            "retry_interval": spec.retry_interval,
            "channels": spec.channels,
        });
        if let (Some(v), Ok(Value::Object(check))) =
            (v.as_object_mut(), serde_json::to_value(&spec.check))
        {
            v.extend(check);
        }
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_body_is_accepted_and_round_trips_or_rejected_naming_fields(b in body()) {
            match full_spec(&b) {
                Ok(spec) => {
                    let n = spec.name.chars().count();
                    prop_assert!((1..=MAX_NAME_CHARS).contains(&n));
                    prop_assert!(check_target_url(&spec.url).is_ok());
                    prop_assert!((MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&spec.interval.get()));
                    prop_assert!(spec.timeout >= Seconds(1) && spec.timeout <= spec.interval);
                    prop_assert_eq!(full_spec(&as_json(&spec)), Ok(spec));
                }
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    let keys: Vec<&String> = b.as_object().map(|m| m.keys().collect()).unwrap_or_default();
                    for e in &errors {
                        // A part of a field is named by its path (`headers.X-A`, `expect[0]`).
                        let named = keys.iter().any(|k| {
                            e.field.strip_prefix(k.as_str()).is_some_and(|rest| {
                                rest.is_empty() || rest.starts_with(['.', '['])
                            })
                        })
                            || ["name", "url", "interval", "timeout"].contains(&e.field.as_str());
                        prop_assert!(named, "error names no field of the body: {:?}", e);
                    }
                }
            }
        }

        #[test]
        fn a_patch_never_yields_an_invalid_service(b in body()) {
            let current = full_spec(&json!({"name": "a", "url": "http://x", "interval": 30})).unwrap();
            if let Ok(spec) = patch_spec(&current, &b) {
                prop_assert!(spec.timeout >= Seconds(1) && spec.timeout <= spec.interval);
                prop_assert!(spec.effective_retry_interval() <= spec.interval);
                prop_assert!((1..=MAX_THRESHOLD).contains(&spec.failure_threshold));
                prop_assert_eq!(full_spec(&as_json(&spec)), Ok(spec));
            }
        }

        /// Stand-in for a fuzz target: whatever bytes arrive as a body,
        /// parsing and validation answer without panicking.
        #[test]
        fn arbitrary_request_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                let _ = full_spec(&v);
                let current = full_spec(&json!({"name": "a", "url": "http://x", "interval": 30})).unwrap();
                let _ = patch_spec(&current, &v);
            }
        }
    }
}
