//! Per-field checkers: one scalar or list field of a body at a time.

use super::super::channel::ChannelId;
use super::{
    DEFAULT_TIMEOUT_S, FieldError, MAX_CHANNELS, MAX_EXPECTED_STATUSES, MAX_INTERVAL_S,
    MAX_THRESHOLD, MIN_INTERVAL_S,
};
use serde_json::Value;

pub(super) fn check_seconds(
    field: &str,
    v: &Value,
    min: i64,
    max: i64,
    errors: &mut Vec<FieldError>,
) -> Option<i64> {
    check_whole(field, v, (min, max), "seconds", errors)
}

/// A whole number of `unit` within `range` (inclusive).
pub(super) fn check_whole(
    field: &str,
    v: &Value,
    (min, max): (i64, i64),
    unit: &str,
    errors: &mut Vec<FieldError>,
) -> Option<i64> {
    match v.as_i64() {
        Some(n) if (min..=max).contains(&n) => Some(n),
        Some(n) => {
            errors.push(FieldError::new(
                field,
                format!("must be between {min} and {max} {unit} (got {n})"),
            ));
            None
        }
        None => {
            let msg = if v.is_number() {
                format!("must be a whole number of {unit} between {min} and {max}")
            } else {
                format!("must be a number ({unit})")
            };
            errors.push(FieldError::new(field, msg));
            None
        }
    }
}

pub(super) fn check_expected(
    field: &str,
    v: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<Option<Vec<u16>>> {
    if v.is_null() {
        return Some(None);
    }
    let Some(items) = v.as_array() else {
        errors.push(FieldError::new(
            field,
            "must be a list of HTTP status codes or null",
        ));
        return None;
    };
    if items.is_empty() || items.len() > MAX_EXPECTED_STATUSES {
        errors.push(FieldError::new(
            field,
            format!("must list between 1 and {MAX_EXPECTED_STATUSES} status codes"),
        ));
        return None;
    }
    let mut codes = Vec::with_capacity(items.len());
    for item in items {
        match item.as_u64() {
            Some(c @ 100..=599) => codes.push(c as u16),
            _ => {
                errors.push(FieldError::new(
                    field,
                    "status codes must be integers from 100 to 599",
                ));
                return None;
            }
        }
    }
    codes.sort_unstable();
    codes.dedup();
    Some(Some(codes))
}

pub(super) fn check_threshold(field: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<u32> {
    match v.as_u64() {
        Some(n) if (1..=u64::from(MAX_THRESHOLD)).contains(&n) => Some(n as u32),
        _ => {
            errors.push(FieldError::new(
                field,
                format!("must be a whole number of rounds from 1 to {MAX_THRESHOLD}"),
            ));
            None
        }
    }
}

/// The timeout a user did not set: 10 s, or the interval if shorter.
pub(super) fn default_timeout(interval: i64) -> i64 {
    DEFAULT_TIMEOUT_S.min(interval)
}

/// `null` is the default: `min(10, interval)`, following the interval.
pub(super) fn check_timeout(
    field: &str,
    v: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<Option<i64>> {
    if v.is_null() {
        return Some(None);
    }
    check_seconds(field, v, 1, MAX_INTERVAL_S, errors).map(Some)
}

/// `null` is the default: follow the interval.
pub(super) fn check_retry(
    field: &str,
    v: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<Option<i64>> {
    if v.is_null() {
        return Some(None);
    }
    check_seconds(field, v, MIN_INTERVAL_S, MAX_INTERVAL_S, errors).map(Some)
}

/// A list of channel ids, without repeats, in the order given; `null` is
/// none. Whether each channel exists is the API's question (it needs the
/// store).
pub(super) fn check_channels(
    field: &str,
    v: &Value,
    errors: &mut Vec<FieldError>,
) -> Option<Vec<ChannelId>> {
    if v.is_null() {
        return Some(Vec::new());
    }
    let Some(items) = v.as_array() else {
        errors.push(FieldError::new(field, "must be a list of channel ids"));
        return None;
    };
    if items.len() > MAX_CHANNELS {
        errors.push(FieldError::new(
            field,
            format!("must list at most {MAX_CHANNELS} channels"),
        ));
        return None;
    }
    let mut ids: Vec<ChannelId> = Vec::with_capacity(items.len());
    for item in items {
        match item.as_i64() {
            Some(id) if id >= 1 => {
                if !ids.contains(&ChannelId(id)) {
                    ids.push(ChannelId(id));
                }
            }
            _ => {
                errors.push(FieldError::new(
                    field,
                    "channel ids must be positive integers",
                ));
                return None;
            }
        }
    }
    Some(ids)
}

pub(super) fn check_paused(field: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<bool> {
    match v.as_bool() {
        Some(b) => Some(b),
        None => {
            errors.push(FieldError::new(field, "must be true or false"));
            None
        }
    }
}
