//! Service tags: `["prod", "api"]`.
//!
//! A tag is 1 to [`MAX_TAG_LEN`] characters from [`TAG_CHARS`]: ASCII
//! letters and digits and `-`, `_`, `.`, `:` and `/`, so `team:payments`
//! and `eu-west/1` work, while a tag never needs escaping in a URL query, a
//! Prometheus label or a YAML file, and never looks like another by a
//! Unicode look-alike or a stray space. Tags are case-sensitive (`prod` and
//! `Prod` are two tags, as labels are in Kubernetes and Prometheus); a
//! service has at most [`MAX_TAGS`], each once, kept in the order given.

use super::FieldError;
use serde_json::Value;

/// Most tags on one service.
pub const MAX_TAGS: usize = 32;
/// Longest tag, in characters (ASCII, so bytes too).
pub const MAX_TAG_LEN: usize = 64;
/// The characters a tag may use besides ASCII letters and digits.
pub const TAG_CHARS: &str = "-_.:/";

/// Checks one tag; the message says what is wrong.
pub fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() || tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "a tag is 1 to {MAX_TAG_LEN} characters (got {})",
            tag.chars().count()
        ));
    }
    match tag
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !TAG_CHARS.contains(*c))
    {
        Some(bad) => Err(format!(
            "{bad:?} is not allowed in a tag: use ASCII letters, digits and {TAG_CHARS}"
        )),
        None => Ok(()),
    }
}

/// The `tags` field (spelled `field` by the client): a list of tags, `null`
/// being none. Each bad entry is named `tags[i]`.
pub fn check_tags(field: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<Vec<String>> {
    if v.is_null() {
        return Some(Vec::new());
    }
    let Some(items) = v.as_array() else {
        errors.push(FieldError::new(field, "must be a list of tags or null"));
        return None;
    };
    if items.len() > MAX_TAGS {
        errors.push(FieldError::new(
            field,
            format!("must list at most {MAX_TAGS} tags (got {})", items.len()),
        ));
        return None;
    }
    let before = errors.len();
    let mut tags: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let name = format!("{field}[{i}]");
        let Some(tag) = item.as_str() else {
            errors.push(FieldError::new(&name, "must be a string"));
            continue;
        };
        if let Err(message) = check_tag(tag) {
            errors.push(FieldError::new(&name, message));
        } else if let Some(first) = items[..i].iter().position(|t| t.as_str() == Some(tag)) {
            errors.push(FieldError::new(
                &name,
                format!("repeats {field}[{first}] ({tag:?})"),
            ));
        }
        tags.push(tag.to_owned());
    }
    (errors.len() == before).then_some(tags)
}
