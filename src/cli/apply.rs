//! `healthmon apply FILE`: makes a running monitor's services, channels
//! and maintenance windows what a YAML file says, through its REST API
//! (docs/config-as-code.md).
//!
//! Objects are matched by name. What the file lacks is created, what
//! differs is changed with a `PATCH` of the fields that differ, what
//! matches is left alone, and with `--prune` what the file does not list
//! is deleted. Secrets cannot be compared (the API shows them as `***`):
//! they are sent with every change of their object, and never make an
//! object count as changed on their own (`--send-secrets` sends them
//! anyway).

pub mod client;
pub mod model;

use client::{Api, ClientError};
use model::{Canon, Item, Problem, Section};
use reqwest::Method;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// What `apply` was asked to do.
#[derive(Debug)]
pub struct Options {
    /// The YAML file.
    pub file: PathBuf,
    /// Delete what the file does not list.
    pub prune: bool,
    /// Print the changes only.
    pub dry_run: bool,
    /// Also update objects whose file gives secrets, though nothing else
    /// differs.
    pub send_secrets: bool,
}

/// What becomes of one object.
#[derive(Debug)]
enum Action<'a> {
    Create(&'a Item),
    Update {
        item: &'a Item,
        id: i64,
        current: Canon,
        changed: Vec<&'static str>,
    },
    Unchanged,
    /// On the monitor, not in the file, and no `--prune`.
    Kept,
    Delete {
        section: Section,
        id: i64,
        name: String,
    },
}

/// The objects a monitor has, per section.
struct Current {
    objects: HashMap<Section, Vec<Value>>,
}

impl Current {
    async fn fetch(api: &Api) -> Result<Self, ClientError> {
        let mut objects = HashMap::new();
        for section in Section::ALL {
            objects.insert(section, api.list(section.path()).await?);
        }
        Ok(Self { objects })
    }

    fn of(&self, section: Section) -> &[Value] {
        self.objects.get(&section).map_or(&[], Vec::as_slice)
    }

    /// id → name of a section's objects.
    fn names(&self, section: Section) -> HashMap<i64, String> {
        self.of(section)
            .iter()
            .filter_map(|o| Some((id_of(o)?, name_of(o)?.to_owned())))
            .collect()
    }

    /// The objects of `section` called `name`.
    fn called(&self, section: Section, name: &str) -> Vec<&Value> {
        self.of(section)
            .iter()
            .filter(|o| name_of(o) == Some(name))
            .collect()
    }

    /// The comparable form of an answer; references by name.
    fn canon(&self, section: Section, answer: &Value) -> Canon {
        let refs = match section {
            Section::Services => self.names(Section::Channels),
            Section::Maintenance => self.names(Section::Services),
            Section::Channels => HashMap::new(),
        };
        model::canon_of_answer(section, answer, &refs)
    }
}

fn id_of(o: &Value) -> Option<i64> {
    o.get("id").and_then(Value::as_i64)
}

fn name_of(o: &Value) -> Option<&str> {
    o.get("name").and_then(Value::as_str)
}

/// Runs `healthmon apply`; prints the changes on stdout and problems on
/// stderr.
pub async fn run(options: &Options, api: &Api) -> ExitCode {
    let file = options.file.display().to_string();
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let text = match std::fs::read_to_string(&options.file) {
        Ok(text) => text,
        Err(e) => {
            let _ = writeln!(err, "error: cannot read {file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let items = match model::parse(&text) {
        Ok(items) => items,
        Err(problems) => return report(&mut err, &file, &problems),
    };
    let current = match Current::fetch(api).await {
        Ok(current) => current,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let actions = match plan(&items, &current, options) {
        Ok(actions) => actions,
        Err(problems) => return report(&mut err, &file, &problems),
    };
    let counts = Counts::of(&actions);
    if options.dry_run {
        let _ = out.write_all(render_plan(&actions).as_bytes());
        let _ = writeln!(
            out,
            "{} (dry run: nothing was changed)",
            counts.summary(options.prune)
        );
        let _ = out.write_all(counts.kept_note().as_bytes());
        return ExitCode::SUCCESS;
    }
    match execute(&actions, &current, api, &mut out).await {
        Ok(()) => {
            let _ = writeln!(out, "{}", counts.summary(options.prune));
            let _ = out.write_all(counts.kept_note().as_bytes());
            ExitCode::SUCCESS
        }
        Err((item, e)) => {
            let lines = match (&item, &e) {
                (Some(item), ClientError::Status { errors, .. }) if !errors.is_empty() => errors
                    .iter()
                    .map(|f| Problem::of(item, &f.field, &f.message).render(&file))
                    .collect(),
                (Some(item), e) => vec![format!("{file}:{}: {}: {e}", item.line, item.label())],
                (None, e) => vec![e.to_string()],
            };
            for line in lines {
                let _ = writeln!(err, "error: {line}");
            }
            let _ = writeln!(
                err,
                "stopped there; the changes printed above were made, the rest were not"
            );
            ExitCode::FAILURE
        }
    }
}

fn report(err: &mut impl Write, file: &str, problems: &[Problem]) -> ExitCode {
    for p in problems {
        let _ = writeln!(err, "error: {}", p.render(file));
    }
    let _ = writeln!(
        err,
        "{} problem{} in {file}; nothing was changed",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    ExitCode::FAILURE
}

/// Decides what becomes of every object, or names every reason the file
/// cannot be applied to this monitor.
fn plan<'a>(
    items: &'a [Item],
    current: &Current,
    options: &Options,
) -> Result<Vec<Action<'a>>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut actions = Vec::new();
    for item in items {
        // A reference resolves to an object of the file, or to one the
        // monitor has and keeps.
        let (field, refs) = item.refs();
        let target = match item.section {
            Section::Services => Section::Channels,
            _ => Section::Services,
        };
        for name in refs {
            let in_file = items.iter().any(|i| i.section == target && i.name == name);
            let kept = !options.prune && !current.called(target, &name).is_empty();
            if !in_file && !kept {
                problems.push(Problem::of(
                    item,
                    field,
                    &format!(
                        "no {} named {name:?} in the file{}",
                        target.noun(),
                        if options.prune {
                            ""
                        } else {
                            " or on the monitor"
                        }
                    ),
                ));
            }
        }
        let found = current.called(item.section, &item.name);
        match found.as_slice() {
            [] => {
                for hidden in &item.hidden {
                    problems.push(Problem::of(
                        item,
                        hidden,
                        "is *** (a hidden secret, as export writes it), and this monitor has no \
                         stored value to keep: fill it in",
                    ));
                }
                actions.push(Action::Create(item));
            }
            [answer] => {
                let id = id_of(answer).unwrap_or_default();
                let now = current.canon(item.section, answer);
                let mut changed: Vec<&'static str> = item
                    .section
                    .fields()
                    .iter()
                    .copied()
                    .filter(|f| now.get(*f) != item.canon.get(*f) && !follows(item, &now, f))
                    .collect();
                if changed.is_empty() && options.send_secrets && item.has_secrets {
                    changed.push("secrets");
                }
                if changed.is_empty() {
                    actions.push(Action::Unchanged);
                } else {
                    actions.push(Action::Update {
                        item,
                        id,
                        current: now,
                        changed,
                    });
                }
            }
            many => {
                let ids: Vec<String> = many
                    .iter()
                    .filter_map(|o| id_of(o))
                    .map(|i| i.to_string())
                    .collect();
                problems.push(Problem::of(
                    item,
                    "name",
                    &format!(
                        "the monitor has {} {}s with this name (ids {}); rename or delete all but one",
                        many.len(),
                        item.section.noun(),
                        ids.join(", ")
                    ),
                ));
            }
        }
    }
    // Deletions last, windows first: they name services, services name
    // channels.
    for section in Section::ALL.iter().rev() {
        for answer in current.of(*section) {
            let Some(name) = name_of(answer) else {
                continue;
            };
            if items
                .iter()
                .any(|i| i.section == *section && i.name == name)
            {
                continue;
            }
            actions.push(Action::Delete {
                section: *section,
                id: id_of(answer).unwrap_or_default(),
                name: name.to_owned(),
            });
        }
    }
    if !options.prune {
        // Counted, not done.
        for action in &mut actions {
            if let Action::Delete { .. } = action {
                *action = Action::Kept;
            }
        }
    }
    if problems.is_empty() {
        Ok(actions)
    } else {
        Err(problems)
    }
}

/// Whether `field` is a service's timeout or retry interval that the file
/// leaves to follow the interval, and that follows it on the monitor too:
/// its value then changes with the interval, and is no change of its own.
fn follows(item: &Item, now: &Canon, field: &str) -> bool {
    if item.section != Section::Services || item.body.contains_key(field) {
        return false;
    }
    let interval = now.get("interval").and_then(Value::as_i64);
    let value = now.get(field).and_then(Value::as_i64);
    match field {
        "timeout" => value.is_some() && value == interval.map(|i| i.min(10)),
        "retry_interval" => value.is_some() && value == interval,
        _ => false,
    }
}

/// How many objects each action touches.
#[derive(Debug, Default)]
struct Counts {
    created: usize,
    updated: usize,
    unchanged: usize,
    deleted: usize,
    kept: usize,
}

impl Counts {
    fn of(actions: &[Action<'_>]) -> Self {
        let mut c = Counts::default();
        for a in actions {
            match a {
                Action::Create(_) => c.created += 1,
                Action::Update { .. } => c.updated += 1,
                Action::Unchanged => c.unchanged += 1,
                Action::Delete { .. } => c.deleted += 1,
                Action::Kept => c.kept += 1,
            }
        }
        c
    }

    fn summary(&self, prune: bool) -> String {
        let mut s = format!(
            "{} created, {} updated, {} unchanged",
            self.created, self.updated, self.unchanged
        );
        if prune {
            let _ = write!(s, ", {} deleted", self.deleted);
        }
        s
    }

    fn kept_note(&self) -> String {
        match self.kept {
            0 => String::new(),
            n => format!(
                "{n} object{} on the monitor but not in the file: kept (--prune deletes {})\n",
                if n == 1 { "" } else { "s" },
                if n == 1 { "it" } else { "them" }
            ),
        }
    }
}

fn shown(v: Option<&Value>) -> String {
    v.map_or_else(|| "null".to_owned(), Value::to_string)
}

/// `+ service "api"`, `~ service "api": interval: 30 → 60`, `- channel "old"`.
fn describe(action: &Action<'_>) -> String {
    match action {
        Action::Create(item) => format!("+ {} {:?}\n", item.section.noun(), item.name),
        Action::Update {
            item,
            current,
            changed,
            ..
        } => changed
            .iter()
            .map(|f| {
                if *f == "secrets" {
                    format!(
                        "~ {} {:?}: secrets: sent again from the file\n",
                        item.section.noun(),
                        item.name
                    )
                } else {
                    format!(
                        "~ {} {:?}: {f}: {} → {}\n",
                        item.section.noun(),
                        item.name,
                        shown(current.get(*f)),
                        shown(item.canon.get(*f)),
                    )
                }
            })
            .collect(),
        Action::Unchanged | Action::Kept => String::new(),
        Action::Delete { section, name, .. } => format!("- {} {name:?}\n", section.noun()),
    }
}

fn render_plan(actions: &[Action<'_>]) -> String {
    actions.iter().map(describe).collect()
}

/// Does every action in order, printing each as it is done; stops at the
/// first failure, with the object it concerned.
async fn execute<'a>(
    actions: &[Action<'a>],
    current: &Current,
    api: &Api,
    out: &mut impl Write,
) -> Result<(), (Option<&'a Item>, ClientError)> {
    // Names to ids, including what this run creates.
    let mut ids: HashMap<(Section, String), i64> = HashMap::new();
    for section in Section::ALL {
        for o in current.of(section) {
            if let (Some(id), Some(name)) = (id_of(o), name_of(o)) {
                ids.entry((section, name.to_owned())).or_insert(id);
            }
        }
    }
    for action in actions {
        match action {
            Action::Create(item) => {
                let body = Value::Object(request_body(item, &item.body, &ids));
                let made = api
                    .send(Method::POST, item.section.path(), Some(&body))
                    .await
                    .map_err(|e| (Some(*item), e))?;
                if let Some(id) = id_of(&made) {
                    ids.insert((item.section, item.name.clone()), id);
                }
            }
            Action::Update {
                item,
                id,
                changed,
                current,
            } => {
                let body = Value::Object(patch_body(item, changed, current, &ids));
                let path = format!("{}/{id}", item.section.path());
                api.send(Method::PATCH, &path, Some(&body))
                    .await
                    .map_err(|e| (Some(*item), e))?;
            }
            Action::Unchanged | Action::Kept => continue,
            Action::Delete { section, id, .. } => {
                let path = format!("{}/{id}", section.path());
                match api.send(Method::DELETE, &path, None).await {
                    // Gone already: what was asked for.
                    Ok(_) | Err(ClientError::Status { status: 404, .. }) => {}
                    Err(e) => return Err((None, e)),
                }
            }
        }
        let _ = out.write_all(describe(action).as_bytes());
    }
    Ok(())
}

/// `fields` of the file's object as a request sends them: other objects
/// by id.
fn request_body(
    item: &Item,
    fields: &Map<String, Value>,
    ids: &HashMap<(Section, String), i64>,
) -> Map<String, Value> {
    let mut body = fields.clone();
    let (field, names) = item.refs();
    let target = match item.section {
        Section::Services => Section::Channels,
        _ => Section::Services,
    };
    if body.get(field).is_some_and(Value::is_array) {
        let list: Vec<Value> = names
            .iter()
            .filter_map(|n| ids.get(&(target, n.clone())))
            .map(|id| Value::from(*id))
            .collect();
        body.insert(field.to_owned(), Value::Array(list));
    }
    body
}

/// The `PATCH` of an update: each changed field as the file gives it, or
/// its default where the file leaves it out; and the object's secrets,
/// which travel with every change (a changed destination needs them).
fn patch_body(
    item: &Item,
    changed: &[&'static str],
    current: &Canon,
    ids: &HashMap<(Section, String), i64>,
) -> Map<String, Value> {
    let mut fields = Map::new();
    for f in changed {
        if *f == "secrets" {
            continue;
        }
        let value = match item.body.get(*f) {
            Some(v) => v.clone(),
            // Left out: a null goes back to the default (a timeout that
            // follows the interval); plain values are sent as they are.
            None => match (item.section, *f) {
                (Section::Services, "timeout" | "retry_interval") => Value::Null,
                _ => item.canon.get(*f).cloned().unwrap_or(Value::Null),
            },
        };
        fields.insert((*f).to_owned(), value);
    }
    match item.section {
        Section::Services => {
            for secret in ["url", "headers"] {
                if let Some(v) = item.body.get(secret) {
                    fields.insert(secret.to_owned(), v.clone());
                }
            }
        }
        Section::Channels => {
            if let Some(Value::Object(config)) = item.body.get("config") {
                let mut config = config.clone();
                // PATCH merges config key by key: a key the file dropped
                // is removed with a null, unless the kind changes (the
                // config is then replaced whole).
                if let (false, Some(Value::Object(now))) =
                    (changed.contains(&"kind"), current.get("config"))
                {
                    for key in now.keys() {
                        config.entry(key.clone()).or_insert(Value::Null);
                    }
                }
                fields.insert("config".into(), Value::Object(config));
            }
        }
        Section::Maintenance => {}
    }
    request_body(item, &fields, ids)
}
