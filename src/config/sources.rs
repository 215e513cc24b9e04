//! Where each setting comes from: the sources merged in order (defaults,
//! `--config FILE`, `.env`, the environment, flags), with the source of
//! every key remembered, so `healthmon config show` and error messages can
//! say which one chose a value.

use super::{ConfigError, DEFAULT_TOML, EnvVars, Settings, invalid};
use config::{Config, Environment, File, FileFormat, Value, ValueKind};
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Keys that have no default (commented out in `config/default.toml`).
const OPTIONAL_KEYS: &[&str] = &["checks.ca_file"];

/// The prefix of namespaced environment keys.
const ENV_PREFIX: &str = "HEALTHMON__";

/// Settings given as command-line flags; they win over every other source.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--bind`: `server.bind`.
    pub bind: Option<String>,
    /// `--database-url`: `database.url`.
    pub database_url: Option<String>,
    /// `--region`: `worker.region`.
    pub region: Option<String>,
}

/// Everything the settings are read from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// The environment, with `.env`'s variables added where the
    /// environment does not set them.
    pub env: EnvVars,
    /// Names in `env` whose value came from `.env`.
    pub dotenv: HashSet<String>,
    /// Command-line flags.
    pub flags: Flags,
}

impl Inputs {
    /// The process's inputs: its environment, `.env` in the working
    /// directory (for variables the environment does not set, as before),
    /// and the flags. The process environment itself is left unchanged.
    pub fn from_process(config_file: Option<&Path>, flags: Flags) -> Result<Self, ConfigError> {
        let mut inputs = Inputs {
            config_file: config_file.map(Path::to_path_buf),
            env: std::env::vars().collect(),
            dotenv: HashSet::new(),
            flags,
        };
        inputs.add_dotenv(Path::new(".env"))?;
        Ok(inputs)
    }

    /// Adds the variables of a `.env` file that `env` does not set yet; a
    /// missing file adds nothing.
    pub fn add_dotenv(&mut self, path: &Path) -> Result<(), ConfigError> {
        let iter = match dotenvy::from_path_iter(path) {
            Ok(iter) => iter,
            Err(e) if e.not_found() => return Ok(()),
            Err(e) => return Err(ConfigError::DotEnv(e.to_string())),
        };
        for item in iter {
            let (name, value) = item.map_err(|e| ConfigError::DotEnv(e.to_string()))?;
            if !self.env.contains_key(&name) {
                self.dotenv.insert(name.clone());
                self.env.insert(name, value);
            }
        }
        Ok(())
    }

    fn var(&self, name: &str) -> EnvVar {
        EnvVar {
            name: name.to_owned(),
            from_dotenv: self.dotenv.contains(name),
        }
    }

    fn nonempty(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

/// One environment variable a value was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// Its name.
    pub name: String,
    /// Whether `.env` set it (rather than the process environment).
    pub from_dotenv: bool,
}

/// Where a setting's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The compiled-in default.
    Default,
    /// The file given with `--config`.
    File(PathBuf),
    /// Environment variables (one, or the `DB_*` parts of a URL).
    Env(Vec<EnvVar>),
    /// A command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "{} (--config)", path.display()),
            Source::Flag(flag) => f.write_str(flag),
            Source::Env(vars) => {
                let names = |dotenv: bool| {
                    vars.iter()
                        .filter(|v| v.from_dotenv == dotenv)
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                };
                let (dotenv, process) = (names(true), names(false));
                if !dotenv.is_empty() {
                    write!(f, ".env's {}", dotenv.join("/"))?;
                    if !process.is_empty() {
                        f.write_str(" and ")?;
                    }
                }
                match process.len() {
                    0 => Ok(()),
                    1 => write!(f, "environment variable {}", process[0]),
                    _ => write!(f, "environment variables {}", process.join("/")),
                }
            }
        }
    }
}

/// One key of the effective configuration.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Dotted key, e.g. `server.bind`.
    pub key: String,
    /// The value as TOML would write it, secrets as `***`; `None` if unset.
    pub shown: Option<String>,
    /// Where it came from.
    pub source: Source,
}

/// The sources merged: every key's value and source, before validation.
#[derive(Debug, Clone)]
pub struct Resolved {
    merged: Config,
    entries: Vec<Entry>,
    warnings: Vec<String>,
}

impl Resolved {
    /// Every known key in the order of `config/default.toml`.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Where `key` (dotted) came from.
    pub fn source(&self, key: &str) -> Option<&Source> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.source)
    }

    /// One line for each environment variable that looks like a setting
    /// but is ignored (a single underscore after `HEALTHMON`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The validated settings. A bad value's error names its key and, when
    /// it is not the default, the source that set it.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let raw: super::Raw = self.merged.clone().try_deserialize()?;
        super::validate(raw).map_err(|e| match e {
            ConfigError::Invalid { key, message } => match self.source(&key) {
                Some(source) if *source != Source::Default => ConfigError::Invalid {
                    key: format!("{key} (from {source})"),
                    message,
                },
                _ => ConfigError::Invalid { key, message },
            },
            other => other,
        })
    }

    /// The effective configuration as TOML-like text: each key with its
    /// value and, as a comment, its source; secrets as `***`.
    pub fn render(&self) -> String {
        let lines: Vec<(String, &Entry)> = self
            .entries
            .iter()
            .map(|e| {
                let field = e.key.split_once('.').map_or(e.key.as_str(), |(_, f)| f);
                let text = match &e.shown {
                    Some(v) => format!("{field} = {v}"),
                    None => format!("# {field} (unset)"),
                };
                (text, e)
            })
            .collect();
        let width = lines
            .iter()
            .map(|(t, _)| t.len())
            .max()
            .unwrap_or(0)
            .min(48);
        let mut out = String::new();
        let mut section = "";
        for (text, entry) in &lines {
            let this = entry.key.split_once('.').map_or("", |(s, _)| s);
            if this != section {
                if !section.is_empty() {
                    out.push('\n');
                }
                out.push_str(&format!("[{this}]\n"));
                section = this;
            }
            out.push_str(&format!("{text:<width$}  # {}\n", entry.source));
        }
        out
    }
}

/// Merges the sources of `inputs` and records where each key came from.
pub fn resolve(inputs: &Inputs) -> Result<Resolved, ConfigError> {
    let mut builder = Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
    let mut file_config = None;
    if let Some(path) = &inputs.config_file {
        if !path.is_file() {
            return Err(invalid(
                "--config",
                format!("{} is not a readable file", path.display()),
            ));
        }
        builder = builder.add_source(File::from(path.as_path()).required(true));
        file_config = Some(
            Config::builder()
                .add_source(File::from(path.as_path()).required(true))
                .build()?,
        );
    }
    let namespaced: config::Map<String, String> = inputs
        .env
        .iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    builder = builder.add_source(
        Environment::with_prefix("HEALTHMON")
            .prefix_separator("__")
            .separator("__")
            .source(Some(namespaced)),
    );

    let keys = known_keys();
    let mut sources: Vec<Source> = keys
        .iter()
        .map(|key| {
            if file_config
                .as_ref()
                .is_some_and(|c| c.get::<Value>(key).is_ok())
            {
                Source::File(inputs.config_file.clone().unwrap_or_default())
            } else {
                Source::Default
            }
        })
        .collect();
    let mut set = |key: &str, source: Source| {
        if let Some(i) = keys.iter().position(|k| k == key) {
            sources[i] = source;
        }
    };
    for name in inputs.env.keys() {
        if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
            set(
                &rest.to_ascii_lowercase().replace("__", "."),
                Source::Env(vec![inputs.var(name)]),
            );
        }
    }

    // The short names of the original deployment notes count only where
    // the HEALTHMON__ form is absent, so the namespaced key always wins.
    if inputs.nonempty("HEALTHMON__DATABASE__URL").is_none() {
        if let Some(url) = inputs.nonempty("DATABASE_URL") {
            builder = builder.set_override("database.url", url)?;
            set(
                "database.url",
                Source::Env(vec![inputs.var("DATABASE_URL")]),
            );
        } else if let Some(url) =
            super::postgres_url_from_parts(&|k| inputs.nonempty(k).map(str::to_owned))?
        {
            builder = builder.set_override("database.url", url)?;
            let parts = ["DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME"]
                .into_iter()
                .filter(|k| inputs.nonempty(k).is_some())
                .map(|k| inputs.var(k))
                .collect();
            set("database.url", Source::Env(parts));
        }
    }
    if inputs.nonempty("HEALTHMON__QUEUE__URL").is_none()
        && let Some(url) = inputs.nonempty("RABBITMQ_URL")
    {
        builder = builder.set_override("queue.url", url)?;
        set("queue.url", Source::Env(vec![inputs.var("RABBITMQ_URL")]));
    }
    if let Some(bind) = &inputs.flags.bind {
        builder = builder.set_override("server.bind", bind.as_str())?;
        set("server.bind", Source::Flag("--bind"));
    }
    if let Some(url) = &inputs.flags.database_url {
        builder = builder.set_override("database.url", url.as_str())?;
        set("database.url", Source::Flag("--database-url"));
    }
    if let Some(region) = &inputs.flags.region {
        builder = builder.set_override("worker.region", region.as_str())?;
        set("worker.region", Source::Flag("--region"));
    }

    let merged = builder.build()?;
    let defaults = Config::builder()
        .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
        .build()?;
    let entries = keys
        .iter()
        .zip(sources)
        .map(|(key, source)| {
            let quoted = defaults
                .get::<Value>(key)
                .map_or(true, |d| matches!(d.kind, ValueKind::String(_)));
            Entry {
                key: key.clone(),
                shown: merged
                    .get::<Value>(key)
                    .ok()
                    .and_then(|v| shown(key, &v, quoted)),
                source,
            }
        })
        .collect();
    let mut names: Vec<&String> = inputs.env.keys().collect();
    names.sort();
    let warnings = names
        .into_iter()
        .filter_map(|name| single_underscore_warning(name, inputs.dotenv.contains(name), &keys))
        .collect();
    Ok(Resolved {
        merged,
        entries,
        warnings,
    })
}

/// The keys of `config/default.toml`, in its order, and the optional ones.
fn known_keys() -> Vec<String> {
    let mut keys = Vec::new();
    let mut section = "";
    for line in DEFAULT_TOML.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        } else if let Some((key, _)) = line.split_once('=')
            && !line.starts_with('#')
        {
            keys.push(format!("{section}.{}", key.trim()));
        }
    }
    for optional in OPTIONAL_KEYS {
        let section = optional.split_once('.').map_or("", |(s, _)| s);
        // After the last key of its section, so `config show` groups it.
        let at = keys
            .iter()
            .rposition(|k| k.starts_with(&format!("{section}.")))
            .map_or(keys.len(), |i| i + 1);
        keys.insert(at, (*optional).to_owned());
    }
    keys
}

/// A value as `config show` prints it; secrets as `***`.
fn shown(key: &str, value: &Value, quoted: bool) -> Option<String> {
    let text = match &value.kind {
        ValueKind::Nil => return None,
        ValueKind::String(s) => s.clone(),
        other => other.to_string(),
    };
    let field = key.rsplit('.').next().unwrap_or(key);
    let text = if ["password", "secret", "token"]
        .iter()
        .any(|s| field.contains(s))
        && !text.is_empty()
    {
        "***".to_owned()
    } else if field == "url" || field.ends_with("_url") {
        mask_url(&text)
    } else {
        text
    };
    Some(if quoted { format!("{text:?}") } else { text })
}

/// `url` with its password (in the user part or a `password` query
/// parameter) replaced by `***`.
pub fn mask_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // Unparsable: the user part might still hold a password.
        return if url.contains('@') {
            "***".to_owned()
        } else {
            url.to_owned()
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// A warning for `HEALTHMON_SERVER_BIND` and the like: a single underscore
/// means the variable is ignored. Variables that name no key or section
/// (`HEALTHMON_TEST_PG`, used by the test suites) are not settings and get
/// no warning.
fn single_underscore_warning(name: &str, from_dotenv: bool, keys: &[String]) -> Option<String> {
    let rest = name
        .strip_prefix("HEALTHMON_")
        .filter(|_| !name.starts_with(ENV_PREFIX))?
        .to_ascii_lowercase();
    let env_name = |key: &str| {
        format!(
            "{ENV_PREFIX}{}",
            key.to_ascii_uppercase().replace('.', "__")
        )
    };
    let ignored = |hint: String| {
        format!(
            "{name}{} is ignored: {hint} (setting names take two underscores, after \
             HEALTHMON and between levels)",
            if from_dotenv { " (in .env)" } else { "" }
        )
    };
    if let Some(key) = keys.iter().find(|k| k.replace('.', "_") == rest) {
        return Some(ignored(format!("did you mean {}?", env_name(key))));
    }
    let by_field: Vec<&String> = keys
        .iter()
        .filter(|k| k.split_once('.').is_some_and(|(_, f)| f == rest))
        .collect();
    if let [key] = by_field.as_slice() {
        return Some(ignored(format!("did you mean {}?", env_name(key))));
    }
    let section = keys
        .iter()
        .filter_map(|k| k.split_once('.').map(|(s, _)| s))
        .find(|s| rest.starts_with(&format!("{s}_")))?;
    Some(ignored(format!(
        "keys of [{section}] are set as {ENV_PREFIX}{}__KEY",
        section.to_ascii_uppercase()
    )))
}
