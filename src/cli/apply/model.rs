//! The file `healthmon apply` reads and `healthmon export` writes: its
//! YAML read with the line of every object and field, each object checked
//! by the same rules as the API (so `--dry-run` finds what the monitor
//! would refuse), and the comparable form of an object, the same whether it
//! comes from the file or from the monitor's answer.

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

mod canon;
mod check;

pub use canon::{canon_of_answer, is_default};
use check::{
    CHANNEL_FIELDS, SERVICE_FIELDS, WINDOW_FIELDS, check_channel, check_service, check_window,
};

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
#[cfg(test)]
mod tests;
