//! Regions and quorum: `"regions": ["eu", "us", "ap"], "quorum": 2`.
//!
//! A region name is 1 to [`MAX_REGION_LEN`] characters from `a-z`, `0-9`
//! and `-`: the same rule for a service's `regions` and a worker's
//! `--region`, and narrow enough to be a RabbitMQ queue-name suffix, an
//! HTTP header value, a Prometheus label and a URL query value as it is.
//! A service lists 1 to [`MAX_REGIONS`] regions, each once, in the order
//! given; `quorum` is 1 to the number listed, and only comes with
//! `regions`.

use super::FieldError;
use serde_json::Value;

/// Most regions on one service: each is a check every round.
pub const MAX_REGIONS: usize = 16;
/// Longest region name, in characters (ASCII, so bytes too).
pub const MAX_REGION_LEN: usize = 32;

/// Checks a region name (a service's or a worker's); the message says
/// what is wrong.
pub fn check_region(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_REGION_LEN {
        return Err(format!(
            "a region name is 1 to {MAX_REGION_LEN} characters (got {})",
            name.chars().count()
        ));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        Some(bad) => Err(format!(
            "{bad:?} is not allowed in a region name: use a-z, 0-9 and -"
        )),
        None => Ok(()),
    }
}

/// The `regions` field (spelled `field`): a list of region names, `null`
/// or `[]` being none. Each bad entry is named `regions[i]`.
pub(super) fn check_regions(
    field: &str,
    v: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<Vec<String>> {
    if v.is_null() {
        return Some(Vec::new());
    }
    let Some(items) = v.as_array() else {
        errors.push(FieldError::new(
            field,
            "must be a list of region names or null",
        ));
        return None;
    };
    if items.len() > MAX_REGIONS {
        errors.push(FieldError::new(
            field,
            format!(
                "must list at most {MAX_REGIONS} regions (got {})",
                items.len()
            ),
        ));
        return None;
    }
    let before = errors.len();
    let mut regions: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = format!("{field}[{i}]");
        let Some(region) = item.as_str() else {
            errors.push(FieldError::new(&name, "must be a string"));
            continue;
        };
        if let Err(message) = check_region(region) {
            errors.push(FieldError::new(&name, message));
        } else if let Some(first) = items[..i].iter().position(|r| r.as_str() == Some(region)) {
            errors.push(FieldError::new(
                &name,
                format!("repeats {field}[{first}] ({region:?})"),
            ));
        }
        regions.push(region.to_owned());
    }
    (errors.len() == before).then_some(regions)
}

/// The `quorum` field alone: a whole number from 1 to [`MAX_REGIONS`], or
/// `null` for a majority. [`check_quorum_fits`] judges it against the
/// regions.
pub(super) fn check_quorum(
    field: &str,
    v: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<Option<u32>> {
    if v.is_null() {
        return Some(None);
    }
    let most = MAX_REGIONS as i64;
    super::scalars::check_whole(field, v, (1, most), "regions", errors)
        .map(|n| Some(n.clamp(1, most) as u32))
}

/// A quorum set beside the regions it counts: none without regions, and
/// at most as many as listed.
pub(super) fn check_quorum_fits(
    field: &str,
    regions: &[String],
    quorum: Option<u32>,
    errors: &mut Vec<FieldError>,
) {
    let Some(q) = quorum else { return };
    if regions.is_empty() {
        errors.push(FieldError::new(
            field,
            "needs regions: a quorum counts regions, and this service lists none",
        ));
    } else if q as usize > regions.len() {
        errors.push(FieldError::new(
            field,
            format!(
                "must be between 1 and the number of regions ({q} > {})",
                regions.len()
            ),
        ));
    }
}

/// Regions that an embedded monitor (no `queue.url`) cannot check: every
/// one but its own `worker.region`. The message for the client says what
/// it takes.
pub fn embedded_regions_error(regions: &[String], own: &str) -> Option<String> {
    let others: Vec<&str> = regions
        .iter()
        .map(String::as_str)
        .filter(|r| *r != own)
        .collect();
    if others.is_empty() {
        return None;
    }
    Some(format!(
        "this monitor runs embedded, with the one region {own:?}, so it cannot check from {}: \
         checking from other regions needs a fleet (RabbitMQ and PostgreSQL, `queue.url` and \
         `database.url`, with workers started as `healthmon --role worker --region NAME`)",
        others
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}
