//! `healthmon export`: a running monitor's services, channels and
//! maintenance windows as the YAML `healthmon apply` reads, defaults left
//! out and secrets as `***`, so applying it back changes nothing.

use super::apply::client::{Api, ClientError};
use super::apply::model::{self, Canon, Section};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use std::collections::HashMap;

/// The comment on top of every export.
const HEADER: &str = "\
# healthmon services, alert channels and maintenance windows, as `healthmon export` wrote them.
# Apply with `healthmon apply FILE` (add --dry-run to see the changes first).
#
# Secrets (header values, URL passwords, channel tokens, webhook URLs past the host) show as
# ***: the monitor never reveals them. Applied to the same monitor, *** keeps the stored
# secret; fill them in (marked `# secret`) before applying this file to another monitor.
";

/// One object, its fields in the order of its section.
struct Ordered(Vec<(&'static str, Value)>);

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(serde::Serialize)]
struct File {
    channels: Vec<Ordered>,
    services: Vec<Ordered>,
    maintenance: Vec<Ordered>,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A REST call failed.
    #[error(transparent)]
    Api(#[from] ClientError),
    /// The YAML could not be written.
    #[error("cannot write YAML: {0}")]
    Yaml(String),
}

/// The YAML of everything `api`'s monitor has.
pub async fn export(api: &Api) -> Result<String, ExportError> {
    let mut answers: HashMap<Section, Vec<Value>> = HashMap::new();
    for section in Section::ALL {
        answers.insert(section, api.list(section.path()).await?);
    }
    let names = |section: Section| -> HashMap<i64, String> {
        answers
            .get(&section)
            .into_iter()
            .flatten()
            .filter_map(|o| Some((o.get("id")?.as_i64()?, o.get("name")?.as_str()?.to_owned())))
            .collect()
    };
    let channel_names = names(Section::Channels);
    let service_names = names(Section::Services);
    let mut file = File {
        channels: Vec::new(),
        services: Vec::new(),
        maintenance: Vec::new(),
    };
    for section in Section::ALL {
        let refs = match section {
            Section::Services => &channel_names,
            Section::Maintenance => &service_names,
            Section::Channels => &HashMap::new(),
        };
        let mut objects: Vec<Canon> = answers
            .get(&section)
            .into_iter()
            .flatten()
            .map(|a| model::canon_of_answer(section, a, refs))
            .collect();
        // By name, so two exports of the same monitor diff cleanly.
        objects.sort_by(|a, b| {
            let name = |c: &Canon| c.get("name").and_then(Value::as_str).map(str::to_owned);
            name(a).cmp(&name(b))
        });
        let list = match section {
            Section::Channels => &mut file.channels,
            Section::Services => &mut file.services,
            Section::Maintenance => &mut file.maintenance,
        };
        for canon in objects {
            list.push(Ordered(
                section
                    .fields()
                    .iter()
                    .filter(|f| !model::is_default(section, &canon, f))
                    .map(|f| (*f, canon.get(*f).cloned().unwrap_or(Value::Null)))
                    .collect(),
            ));
        }
    }
    let yaml = serde_saphyr::to_string(&file).map_err(|e| ExportError::Yaml(e.to_string()))?;
    let mut text = String::from(HEADER);
    for line in yaml.lines() {
        text.push_str(line);
        if line.contains("***") {
            text.push_str("  # secret");
        }
        text.push('\n');
    }
    Ok(text)
}
