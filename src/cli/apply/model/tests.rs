use super::*;

#[test]
fn objects_read_with_lines_and_defaults() {
    let text = "\
channels:
  - name: oncall
    kind: webhook
    config:
      url: https://hooks.example.org/x/y
      secret: s3cret
services:
  - name: api
    url: https://api.example.org
    interval: 30
    channels: [oncall]
  - name: db
    url: tcp://db.example.org:5432
    interval: 5
    timeout: 2
maintenance:
  - name: weekly
    services: [db, api]
    cron: 0 2 * * SUN
    duration_s: 3600
";
    let items = parse(text).unwrap();
    assert_eq!(items.len(), 4);
    let api = &items[1];
    assert_eq!(api.label(), "services[0] \"api\"");
    assert_eq!(api.line, 8);
    assert_eq!(api.line_of("interval"), 10);
    assert_eq!(api.canon["url"], "https://api.example.org/");
    assert_eq!(api.canon["timeout"], 10);
    assert_eq!(api.canon["retry_interval"], 30);
    assert_eq!(api.canon["channels"], serde_json::json!(["oncall"]));
    assert_eq!(api.canon["method"], Value::Null);
    assert_eq!(items[0].canon["config"]["secret"], "***");
    assert!(items[0].has_secrets && items[0].hidden.is_empty());
    assert_eq!(items[3].canon["services"], serde_json::json!(["api", "db"]));
    assert_eq!(items[3].canon["timezone"], "UTC");
    assert_eq!(items[3].canon["start"], Value::Null);
}

#[test]
fn problems_name_line_object_and_field() {
    let bad = "services:\n  - name: api\n    url: http://a\n    interval: 0\n    colour: red\n";
    let problems = parse(bad).unwrap_err();
    let shown: Vec<String> = problems.iter().map(|p| p.render("m.yaml")).collect();
    assert!(
        shown.contains(
            &"m.yaml:4: services[0] \"api\": interval: must be between 1 and 86400 seconds (got 0)"
                .to_owned()
        ),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("m.yaml:5: services[0] \"api\": colour: unknown field")),
        "{shown:?}"
    );
    let syntax = parse("services:\n  - name: [a\n").unwrap_err();
    assert_eq!(syntax.len(), 1);
    assert!(syntax[0].line >= 2, "{syntax:?}");
    let section = parse("servics: []\n").unwrap_err();
    assert!(section[0].text.contains("servics"), "{section:?}");
    let twice = parse("services:\n  - {name: a, url: 'http://a', interval: 5}\n  - {name: a, url: 'http://b', interval: 5}\n").unwrap_err();
    assert!(
        twice[0]
            .render("f")
            .starts_with("f:3: services[1] \"a\": name: is also the name of services[0] (line 2)"),
        "{twice:?}"
    );
}

#[test]
fn hidden_secrets_compare_as_shown() {
    let text = "\
channels:
  - name: c
    kind: webhook
    config: {url: 'https://hooks.example.org/***', secret: '***'}
services:
  - name: s
    url: 'http://bob:***@h.example/'
    interval: 5
    headers: {Authorization: '***'}
";
    let items = parse(text).unwrap();
    assert_eq!(items[0].hidden, ["config.secret", "config.url"]);
    assert_eq!(
        items[0].canon["config"]["url"],
        "https://hooks.example.org/***"
    );
    assert_eq!(items[1].hidden, ["url", "headers.Authorization"]);
    assert_eq!(items[1].canon["url"], "http://bob:***@h.example/");
    assert_eq!(items[1].canon["headers"]["Authorization"], "***");
    assert!(!items[1].has_secrets);
}

#[test]
fn a_window_by_tag_needs_no_services_and_exports_without_them() {
    let text = "\
maintenance:
  - name: db nights
    tag: db
    cron: 0 2 * * *
    duration_s: 600
  - name: bad
    services: all
    tag: db
    cron: 0 2 * * *
    duration_s: 600
";
    let problems = parse(text).unwrap_err();
    let shown: Vec<String> = problems.iter().map(|p| p.render("m.yaml")).collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(
        shown[0].starts_with("m.yaml:8: maintenance[1] \"bad\": tag: cannot go with"),
        "{shown:?}"
    );
    let items = parse(&text[..text.find("  - name: bad").unwrap()]).unwrap();
    let canon = &items[0].canon;
    assert_eq!(canon["tag"], "db");
    assert_eq!(canon["services"], serde_json::json!([]));
    assert!(is_default(Section::Maintenance, canon, "services"));
    assert!(!is_default(Section::Maintenance, canon, "tag"));
}

#[test]
fn regions_and_quorum_are_read_checked_and_left_out_when_unset() {
    let text = "\
services:
  - name: api
    url: https://api.example.org
    interval: 30
    regions: [eu, us, ap]
    quorum: 2
  - name: db
    url: tcp://db.example.org:5432
    interval: 5
";
    let items = parse(text).unwrap();
    let api = &items[0].canon;
    assert_eq!(api["regions"], serde_json::json!(["eu", "us", "ap"]));
    assert_eq!(api["quorum"], 2);
    assert!(!is_default(Section::Services, api, "regions"));
    assert!(!is_default(Section::Services, api, "quorum"));
    let db = &items[1].canon;
    assert_eq!(db["regions"], serde_json::json!([]));
    assert!(is_default(Section::Services, db, "regions"));
    assert!(is_default(Section::Services, db, "quorum"));
    // The API's rules: a quorum beyond the regions, or without any.
    let bad = "services:\n  - name: a\n    url: http://a\n    interval: 5\n    regions: [eu]\n    \
               quorum: 2\n  - name: b\n    url: http://b\n    interval: 5\n    quorum: 1\n";
    let shown: Vec<String> = parse(bad)
        .unwrap_err()
        .iter()
        .map(|p| p.render("m.yaml"))
        .collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown[0].starts_with("m.yaml:6: services[0] \"a\": quorum:"),
        "{shown:?}"
    );
    assert!(
        shown[1].starts_with("m.yaml:10: services[1] \"b\": quorum:"),
        "{shown:?}"
    );
}
