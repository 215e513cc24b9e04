//! The file `healthmon apply` reads and `healthmon export` writes: its
//! YAML read with the line of every object and field, each object checked
//! by the same rules as the API (so `--dry-run` finds what the monitor
//! would refuse), and the comparable form of an object, the same whether it
//! comes from the file or from the monitor's answer.

use crate::domain::channel_spec;
use crate::domain::check_kind::HIDDEN;
use crate::domain::service::redact_url;
use crate::domain::validate::{self, FieldError};
use crate::domain::window;
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, HashMap};

/// The three kinds of object a file holds, in the order they are created
/// (services name channels, windows name services).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// Alert channels.
    Channels,
    /// Monitored services.
    Services,
    /// Maintenance windows.
    Maintenance,
}

impl Section {
    /// All three, in the order they are created.
    pub const ALL: [Section; 3] = [Section::Channels, Section::Services, Section::Maintenance];

    /// The key of the section in the file.
    pub fn key(self) -> &'static str {
        match self {
            Section::Channels => "channels",
            Section::Services => "services",
            Section::Maintenance => "maintenance",
        }
    }

    /// One object of the section, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Section::Channels => "channel",
            Section::Services => "service",
            Section::Maintenance => "maintenance",
        }
    }

    /// The collection's path in the REST API.
    pub fn path(self) -> &'static str {
        match self {
            Section::Channels => "/channels",
            Section::Services => "/services",
            Section::Maintenance => "/maintenance",
        }
    }

    /// The fields compared, in the order they are shown and exported.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Section::Channels => &CHANNEL_FIELDS,
            Section::Services => &SERVICE_FIELDS,
            Section::Maintenance => &WINDOW_FIELDS,
        }
    }
}

/// A service's writable fields as the API shows them.
const SERVICE_FIELDS: [&str; 22] = [
    "name",
    "url",
    "interval",
    "timeout",
    "paused",
    "expected_statuses",
    "failure_threshold",
    "success_threshold",
    "retry_interval",
    "channels",
    "tags",
    "method",
    "headers",
    "body",
    "follow_redirects",
    "body_contains",
    "body_not_contains",
    "json",
    "degraded_latency_ms",
    "cert_expiry_days",
    "expect",
    "grace",
];
/// The kind-specific ones among them (absent from an answer when unset).
const CHECK_FIELDS: [&str; 11] = [
    "method",
    "headers",
    "body",
    "follow_redirects",
    "body_contains",
    "body_not_contains",
    "json",
    "degraded_latency_ms",
    "cert_expiry_days",
    "expect",
    "grace",
];
const CHANNEL_FIELDS: [&str; 5] = ["name", "kind", "config", "all_services", "remind_every_s"];
const WINDOW_FIELDS: [&str; 8] = [
    "name",
    "services",
    "tag",
    "start",
    "end",
    "cron",
    "duration_s",
    "timezone",
];

/// A placeholder for a hidden secret while an object is checked: the
/// checks refuse `***` where no stored value exists, and the shown form of
/// the placeholder is `***` again.
const PLACEHOLDER: &str = "x";

/// An object's fields in comparable form: every field of its section,
/// defaults filled in, secrets as `***`, other objects named by name
/// (sorted), never by id.
pub type Canon = Map<String, Value>;

/// One object of the file, checked.
#[derive(Debug, Clone)]
pub struct Item {
    /// Its section.
    pub section: Section,
    /// Its position in the section, from 0.
    pub index: usize,
    /// Its name, the key it is matched by.
    pub name: String,
    /// The line it starts on.
    pub line: u64,
    /// The line of each field.
    lines: BTreeMap<String, u64>,
    /// The fields as the file gives them (other objects by name).
    pub body: Map<String, Value>,
    /// What the monitor would show for it.
    pub canon: Canon,
    /// The fields whose secret the file gives as `***` (`config.secret`,
    /// `headers.Authorization`, `url`).
    pub hidden: Vec<String>,
    /// Whether the file gives a secret in the clear.
    pub has_secrets: bool,
}

impl Item {
    /// `services[2] "api"`, for messages.
    pub fn label(&self) -> String {
        format!("{}[{}] {:?}", self.section.key(), self.index, self.name)
    }

    /// The line of `field` (`headers.X`, `json[0].pointer` and
    /// `config.url` count as their first part), or the object's.
    pub fn line_of(&self, field: &str) -> u64 {
        let head = field.split(['.', '[']).next().unwrap_or(field);
        self.lines.get(head).copied().unwrap_or(self.line)
    }

    /// The names of other objects it refers to, with the field naming them.
    pub fn refs(&self) -> (&'static str, Vec<String>) {
        let field = match self.section {
            Section::Services => "channels",
            Section::Maintenance => "services",
            Section::Channels => return ("", Vec::new()),
        };
        let names = match self.canon.get(field) {
            Some(Value::Array(names)) => names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        (field, names)
    }
}

/// Where a problem is: the file and line, then the object and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, or 0 when unknown.
    pub line: u64,
    /// 1-based column, or 0 when not given.
    pub column: u64,
    /// `services[2] "api": interval: must be ...`.
    pub text: String,
}

impl Problem {
    /// A problem of `item`'s `field`.
    pub fn of(item: &Item, field: &str, message: &str) -> Self {
        Problem {
            line: item.line_of(field),
            column: 0,
            text: if field.is_empty() {
                format!("{}: {message}", item.label())
            } else {
                format!("{}: {field}: {message}", item.label())
            },
        }
    }

    /// `FILE:LINE[:COL]: TEXT`.
    pub fn render(&self, file: &str) -> String {
        match (self.line, self.column) {
            (0, _) => format!("{file}: {}", self.text),
            (line, 0) => format!("{file}:{line}: {}", self.text),
            (line, col) => format!("{file}:{line}:{col}: {}", self.text),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    channels: Option<Vec<Spanned<RawObject>>>,
    #[serde(default)]
    services: Option<Vec<Spanned<RawObject>>>,
    #[serde(default)]
    maintenance: Option<Vec<Spanned<RawObject>>>,
}

type RawObject = BTreeMap<String, Spanned<Value>>;

/// Reads and checks a whole file: every object, in section order, or
/// every problem found (a YAML error stops at the first).
pub fn parse(text: &str) -> Result<Vec<Item>, Vec<Problem>> {
    if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---"
    }) {
        return Ok(Vec::new());
    }
    let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        // The snippet the error renders by default spans lines; one line
        // per problem is what a terminal or an editor's parser wants.
        let text = e.without_snippet().to_string();
        let text = text.lines().next().unwrap_or("invalid YAML").to_owned();
        vec![Problem { line, column, text }]
    })?;
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for (section, objects) in [
        (Section::Channels, raw.channels),
        (Section::Services, raw.services),
        (Section::Maintenance, raw.maintenance),
    ] {
        let mut seen: HashMap<String, (usize, u64)> = HashMap::new();
        for (index, object) in objects.unwrap_or_default().into_iter().enumerate() {
            match read_object(section, index, object) {
                Ok(item) => {
                    if let Some((first, line)) = seen.get(&item.name) {
                        problems.push(Problem::of(
                            &item,
                            "name",
                            &format!(
                                "is also the name of {}[{first}] (line {line}); names must be unique",
                                section.key()
                            ),
                        ));
                    } else {
                        seen.insert(item.name.clone(), (index, item.line));
                    }
                    items.push(item);
                }
                Err(mut found) => problems.append(&mut found),
            }
        }
    }
    if problems.is_empty() {
        Ok(items)
    } else {
        Err(problems)
    }
}

fn read_object(
    section: Section,
    index: usize,
    object: Spanned<RawObject>,
) -> Result<Item, Vec<Problem>> {
    let line = object.referenced.line();
    let mut lines = BTreeMap::new();
    let mut body = Map::new();
    for (key, value) in object.value {
        lines.insert(key.clone(), value.referenced.line());
        body.insert(key, value.value);
    }
    let name = match body.get("name") {
        Some(Value::String(name)) => name.trim().to_owned(),
        _ => String::new(),
    };
    let mut item = Item {
        section,
        index,
        name,
        line,
        lines,
        body,
        canon: Map::new(),
        hidden: Vec::new(),
        has_secrets: false,
    };
    let checked = match section {
        Section::Services => check_service(&mut item),
        Section::Channels => check_channel(&mut item),
        Section::Maintenance => check_window(&mut item),
    };
    match checked {
        Ok(canon) => {
            item.canon = canon;
            Ok(item)
        }
        Err(errors) => Err(errors
            .iter()
            .map(|e| Problem::of(&item, &e.field, &e.message))
            .collect()),
    }
}

/// A list of names (`channels: [oncall]`), for `field`.
fn names(value: Option<&Value>, field: &str, what: &str) -> Result<Vec<String>, FieldError> {
    let bad = || FieldError::new(field, format!("must be a list of {what} names"));
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => {
            let mut names = list
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                    _ => Err(bad()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            names.sort();
            names.dedup();
            Ok(names)
        }
        Some(_) => Err(bad()),
    }
}

fn check_service(item: &mut Item) -> Result<Canon, Vec<FieldError>> {
    let mut probe = item.body.clone();
    let channels = names(probe.remove("channels").as_ref(), "channels", "channel");
    if let Some(Value::String(raw)) = probe.get_mut("url")
        && let Ok(mut url) = url::Url::parse(raw)
    {
        if url.password() == Some(HIDDEN) {
            item.hidden.push("url".to_owned());
            if url.set_password(Some(PLACEHOLDER)).is_ok() {
                *raw = url.to_string();
            }
        } else if url.password().is_some() {
            item.has_secrets = true;
        }
    }
    if let Some(Value::Object(headers)) = probe.get_mut("headers") {
        for (name, value) in headers.iter_mut() {
            if value.as_str() == Some(HIDDEN) {
                item.hidden.push(format!("headers.{name}"));
                *value = Value::String(PLACEHOLDER.to_owned());
            } else {
                item.has_secrets = true;
            }
        }
    }
    let spec = validate::full_spec(&Value::Object(probe));
    let (spec, channels) = match (spec, channels) {
        (Ok(spec), Ok(channels)) => (spec, channels),
        (spec, channels) => {
            let mut errors = spec.err().unwrap_or_default();
            errors.extend(channels.err());
            return Err(errors);
        }
    };
    let mut canon = Map::new();
    canon.insert("name".into(), spec.name.clone().into());
    canon.insert("url".into(), redact_url(&spec.url).into());
    canon.insert("interval".into(), spec.interval.get().into());
    canon.insert("timeout".into(), spec.timeout.get().into());
    canon.insert("paused".into(), spec.paused.into());
    canon.insert(
        "expected_statuses".into(),
        serde_json::to_value(&spec.expected_statuses).unwrap_or(Value::Null),
    );
    canon.insert("failure_threshold".into(), spec.failure_threshold.into());
    canon.insert("success_threshold".into(), spec.success_threshold.into());
    canon.insert(
        "retry_interval".into(),
        spec.effective_retry_interval().get().into(),
    );
    canon.insert("channels".into(), channels.into());
    // Read through the spec's serialised form, so tags compare as the
    // API stores them (and as null where this build has no tags).
    let whole = serde_json::to_value(&spec).unwrap_or(Value::Null);
    canon.insert(
        "tags".into(),
        whole.get("tags").cloned().unwrap_or(Value::Null),
    );
    let check = serde_json::to_value(spec.check.shown()).unwrap_or(Value::Null);
    for field in CHECK_FIELDS {
        canon.insert(
            field.into(),
            check.get(field).cloned().unwrap_or(Value::Null),
        );
    }
    Ok(canon)
}

fn check_channel(item: &mut Item) -> Result<Canon, Vec<FieldError>> {
    let mut probe = item.body.clone();
    let kind = probe
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(Value::Object(config)) = probe.get_mut("config") {
        let secret = channel_spec::secret_keys(&kind);
        for (key, value) in config.iter_mut() {
            let Value::String(text) = value else { continue };
            if text.contains(HIDDEN) {
                item.hidden.push(format!("config.{key}"));
                *text = if text == HIDDEN && key == "url" {
                    "https://hidden.invalid/".to_owned()
                } else if text == HIDDEN {
                    PLACEHOLDER.to_owned()
                } else {
                    text.replace(HIDDEN, PLACEHOLDER)
                };
            } else if secret.contains(&key.as_str()) {
                item.has_secrets = true;
            }
        }
    }
    let spec = channel_spec::full_spec(&Value::Object(probe), None)?;
    let mut canon = Map::new();
    canon.insert("name".into(), spec.name.clone().into());
    canon.insert("kind".into(), spec.kind.clone().into());
    canon.insert("config".into(), spec.shown_config());
    canon.insert("all_services".into(), spec.all_services.into());
    canon.insert("remind_every_s".into(), spec.remind_every_s.into());
    Ok(canon)
}

fn check_window(item: &mut Item) -> Result<Canon, Vec<FieldError>> {
    let mut probe = item.body.clone();
    // Services are named in the file; the checks want ids, so each name
    // stands in as a made-up id while the rest is checked.
    let services = match probe.get("services") {
        Some(Value::String(all)) if all == "all" => Ok(None),
        other => names(other, "services", "service").map(Some),
    };
    if let Ok(Some(names)) = &services {
        let ids: Vec<Value> = (1..=names.len()).map(Value::from).collect();
        probe.insert("services".into(), Value::Array(ids));
    } else if services.is_err() {
        probe.insert("services".into(), "all".into());
    }
    let spec = window::full_spec(&Value::Object(probe));
    let (spec, services) = match (spec, services) {
        (Ok(spec), Ok(services)) => (spec, services),
        (spec, services) => {
            let mut errors = spec.err().unwrap_or_default();
            if let Err(e) = services {
                errors.retain(|e| e.field != "services");
                errors.push(FieldError::new(
                    "services",
                    format!("{}, or \"all\"", e.message),
                ));
            }
            return Err(errors);
        }
    };
    let mut canon = fill(Section::Maintenance, spec.to_body());
    canon.insert(
        "services".into(),
        services.map_or_else(|| "all".into(), Value::from),
    );
    Ok(canon)
}

/// Every field of `section` from `object`, `null` where absent.
fn fill(section: Section, object: Value) -> Canon {
    section
        .fields()
        .iter()
        .map(|f| {
            (
                (*f).to_owned(),
                object.get(*f).cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// The names of the ids in `value` (a list of ids), sorted; an id that
/// names nothing known shows as `#ID`.
fn named(value: Option<&Value>, names: &HashMap<i64, String>) -> Value {
    let mut list: Vec<String> = match value {
        Some(Value::Array(ids)) => ids
            .iter()
            .filter_map(Value::as_i64)
            .map(|id| names.get(&id).cloned().unwrap_or_else(|| format!("#{id}")))
            .collect(),
        _ => Vec::new(),
    };
    list.sort();
    Value::from(list)
}

/// The comparable form of an object as the monitor answered it;
/// `names` maps the ids it refers to (channels of a service, services of
/// a window) to their names.
pub fn canon_of_answer(section: Section, answer: &Value, names: &HashMap<i64, String>) -> Canon {
    let mut canon = fill(section, answer.clone());
    match section {
        Section::Services => {
            canon.insert("channels".into(), named(answer.get("channels"), names));
        }
        Section::Maintenance if answer.get("services").and_then(Value::as_str) != Some("all") => {
            canon.insert("services".into(), named(answer.get("services"), names));
        }
        _ => {}
    }
    canon
}

/// Whether `field` of `canon` holds its default, so `export` leaves it out.
pub fn is_default(section: Section, canon: &Canon, field: &str) -> bool {
    let value = canon.get(field).unwrap_or(&Value::Null);
    let int = |f: &str| canon.get(f).and_then(Value::as_i64);
    match (section, field) {
        (_, "name") => false,
        (Section::Services, "url" | "interval") => false,
        (Section::Services, "timeout") => int("timeout") == int("interval").map(|i| i.min(10)),
        (Section::Services, "retry_interval") => int("retry_interval") == int("interval"),
        (Section::Services, "failure_threshold" | "success_threshold") => value == 1,
        (Section::Services | Section::Channels, "paused" | "all_services") => value == false,
        (Section::Services, "channels" | "tags") => {
            value.is_null() || value.as_array().is_some_and(Vec::is_empty)
        }
        (Section::Channels, "remind_every_s") => value == 0,
        (Section::Channels, "kind" | "config") => false,
        _ => value.is_null(),
    }
}

#[cfg(test)]
mod tests {
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
            shown.contains(&"m.yaml:4: services[0] \"api\": interval: must be between 1 and 86400 seconds (got 0)".to_owned()),
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
            twice[0].render("f").starts_with(
                "f:3: services[1] \"a\": name: is also the name of services[0] (line 2)"
            ),
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
}
