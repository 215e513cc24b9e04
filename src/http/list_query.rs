//! The query of `GET /services`: `limit`, `after`, `status`, `tag`, `q`, and
//! the `Link` to the next page, which keeps every filter.
//!
//! Bad values are 400 problem+json naming the parameter, as
//! `/services/{id}/logs` answers for its own; parameters it does not know
//! are ignored, as there.

use crate::domain::Status;
use crate::domain::validate::{FieldError, MAX_NAME_CHARS, check_tag};
use crate::store::ServiceFilter;

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 1000;
/// Largest page.
pub const MAX_LIMIT: i64 = 10_000;

/// Parses the query string of `GET /services`. `status` may be a comma
/// list and may be repeated (the lists add up: any of them); the others
/// may be given once. Statuses are read in any case.
pub fn parse(query: &str) -> Result<ServiceFilter, Vec<FieldError>> {
    let mut filter = ServiceFilter {
        limit: DEFAULT_LIMIT,
        ..ServiceFilter::default()
    };
    let mut errors = Vec::new();
    let mut seen: Vec<&'static str> = Vec::new();
    let mut once = |name: &'static str, errors: &mut Vec<FieldError>| {
        if seen.contains(&name) {
            errors.push(FieldError::new(name, "may be given only once"));
            false
        } else {
            seen.push(name);
            true
        }
    };
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "limit" if once("limit", &mut errors) => match value.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) && canonical(&value) => filter.limit = n,
                _ => errors.push(FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT} (got {value:?})"),
                )),
            },
            "after" if once("after", &mut errors) => match value.parse::<i64>() {
                Ok(id) if id >= 1 && canonical(&value) => filter.after = id,
                _ => errors.push(FieldError::new(
                    "after",
                    format!(
                        "must be a service id (the id of the last service of the previous \
                         page), not {value:?}"
                    ),
                )),
            },
            "status" => {
                for part in value.split(',') {
                    match part.trim().to_ascii_uppercase().parse::<Status>() {
                        Ok(s) if !filter.statuses.contains(&s) => filter.statuses.push(s),
                        Ok(_) => {}
                        Err(_) => errors.push(FieldError::new(
                            "status",
                            format!(
                                "unknown status {part:?}; one or a comma list of PENDING, UP, \
                                 DEGRADED, DOWN"
                            ),
                        )),
                    }
                }
            }
            "tag" if once("tag", &mut errors) => match check_tag(&value) {
                Ok(()) => filter.tag = Some(value.into_owned()),
                Err(message) => errors.push(FieldError::new("tag", message)),
            },
            "q" if once("q", &mut errors) => {
                if value.chars().count() > MAX_NAME_CHARS {
                    errors.push(FieldError::new(
                        "q",
                        format!("must be at most {MAX_NAME_CHARS} characters, as names are"),
                    ));
                } else if !value.is_empty() {
                    filter.name_contains = Some(value.into_owned());
                }
            }
            _ => {}
        }
    }
    errors.dedup();
    if errors.is_empty() {
        Ok(filter)
    } else {
        Err(errors)
    }
}

/// Whether `digits` is a number as the API writes it: no sign, no leading
/// zero, so one page has one URL.
fn canonical(digits: &str) -> bool {
    !digits.is_empty() && !digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The `Link` header value of the page after the one that ended at
/// `last_id`, with the same filters.
pub fn next_link(filter: &ServiceFilter, last_id: i64) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("limit", &filter.limit.to_string());
    query.append_pair("after", &last_id.to_string());
    if !filter.statuses.is_empty() {
        let list: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        query.append_pair("status", &list.join(","));
    }
    if let Some(tag) = &filter.tag {
        query.append_pair("tag", tag);
    }
    if let Some(q) = &filter.name_contains {
        query.append_pair("q", q);
    }
    format!("</services?{}>; rel=\"next\"", query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(query: &str) -> Vec<String> {
        parse(query)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn defaults_and_values() {
        let f = parse("").unwrap();
        assert_eq!((f.limit, f.after), (DEFAULT_LIMIT, 0));
        assert!(f.statuses.is_empty() && f.tag.is_none() && f.name_contains.is_none());
        let f =
            parse("limit=10000&after=7&status=up,DOWN&status=Up&tag=team:a/b&q=50%25+off").unwrap();
        assert_eq!((f.limit, f.after), (10_000, 7));
        assert_eq!(f.statuses, [Status::Up, Status::Down]);
        assert_eq!(f.tag.as_deref(), Some("team:a/b"));
        assert_eq!(f.name_contains.as_deref(), Some("50% off"));
        assert_eq!(parse("q=").unwrap().name_contains, None);
        assert_eq!(parse("access_token=x&other=1").unwrap(), parse("").unwrap());
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=10001", "limit"),
            ("limit=-1", "limit"),
            ("limit=abc", "limit"),
            ("limit=010", "limit"),
            ("limit=1&limit=2", "limit"),
            ("after=0", "after"),
            ("after=007", "after"),
            ("after=+7", "after"),
            ("after=x", "after"),
            ("after=", "after"),
            ("status=SIDEWAYS", "status"),
            ("status=UP,,DOWN", "status"),
            ("status=", "status"),
            ("tag=", "tag"),
            ("tag=a%20b", "tag"),
            ("tag=a&tag=b", "tag"),
        ] {
            assert_eq!(fields(query), [field], "{query}");
        }
        assert_eq!(fields(&format!("q={}", "x".repeat(201))), ["q"]);
        assert_eq!(
            fields("limit=0&after=x&status=NO"),
            ["limit", "after", "status"]
        );
    }

    #[test]
    fn the_next_link_keeps_every_filter() {
        let f = parse("limit=2&status=DOWN,UP&tag=prod&q=a+b%26c").unwrap();
        let link = next_link(&f, 42);
        assert_eq!(
            link,
            "</services?limit=2&after=42&status=DOWN%2CUP&tag=prod&q=a+b%26c>; rel=\"next\""
        );
        let inner = link
            .strip_prefix("</services?")
            .and_then(|l| l.strip_suffix(">; rel=\"next\""))
            .unwrap();
        let again = parse(inner).unwrap();
        assert_eq!(again, ServiceFilter { after: 42, ..f });
    }
}
