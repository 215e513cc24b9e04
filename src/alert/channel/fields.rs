//! Reading a `config` object field by field, each problem reported under
//! `config.<key>`.

use super::*;

/// Reads a field set, reporting each problem under `config.<key>`.
pub(super) struct Fields<'a> {
    pub(super) map: &'a Map<String, Value>,
    pub(super) errors: Vec<FieldError>,
    pub(super) known: &'static [&'static str],
}

impl<'a> Fields<'a> {
    pub(super) fn bad(&mut self, key: &str, why: impl Into<String>) {
        self.errors
            .push(FieldError::new(&format!("config.{key}"), why));
    }

    pub(super) fn string(&mut self, key: &str, required: bool) -> Option<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.bad(key, "is required");
                }
                None
            }
            Some(Value::String(s)) if !s.trim().is_empty() => {
                if s.chars().any(char::is_control) {
                    self.bad(key, "must not contain control characters");
                    return None;
                }
                Some(s.trim().to_owned())
            }
            Some(Value::String(_)) => {
                self.bad(key, "must not be empty");
                None
            }
            Some(_) => {
                self.bad(key, "must be a string");
                None
            }
        }
    }

    pub(super) fn url(&mut self, key: &str, required: bool) -> Option<String> {
        let raw = self.string(key, required)?;
        match check_url(&raw) {
            Ok(url) => Some(url),
            Err(why) => {
                self.bad(key, why);
                None
            }
        }
    }

    pub(super) fn base(&mut self, default: &str) -> String {
        self.url("api_base", false)
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| default.to_owned())
    }

    pub(super) fn port(&mut self, key: &str, default: u16) -> u16 {
        match self.map.get(key) {
            None | Some(Value::Null) => default,
            Some(v) => match v.as_u64().and_then(|n| u16::try_from(n).ok()) {
                Some(p) if p > 0 => p,
                _ => {
                    self.bad(key, "must be a port number from 1 to 65535");
                    default
                }
            },
        }
    }

    pub(super) fn addresses(&mut self, key: &str) -> Vec<String> {
        let list = match self.map.get(key) {
            Some(Value::String(one)) => vec![Value::String(one.clone())],
            Some(Value::Array(many)) => many.clone(),
            None | Some(Value::Null) => {
                self.bad(key, "is required: a list of mail addresses");
                return Vec::new();
            }
            Some(_) => {
                self.bad(key, "must be a list of mail addresses");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for v in list {
            match v.as_str().map(str::trim) {
                Some(a) if looks_like_address(a) => out.push(a.to_owned()),
                _ => self.bad(key, format!("{v} is not a mail address")),
            }
        }
        if out.is_empty()
            && self
                .errors
                .iter()
                .all(|e| e.field != format!("config.{key}"))
        {
            self.bad(key, "must name at least one address");
        }
        out
    }

    pub(super) fn finish(mut self) -> Result<(), Vec<FieldError>> {
        for key in self.map.keys() {
            if !self.known.contains(&key.as_str()) {
                let known = self.known.join(", ");
                self.bad(
                    key,
                    format!("is not a setting of this kind (known: {known})"),
                );
            }
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// `user@host`, with nothing that would let a value add mail headers.
pub(super) fn looks_like_address(a: &str) -> bool {
    match a.split_once('@') {
        Some((user, host)) => {
            !user.is_empty()
                && host.contains('.')
                && !a
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c))
        }
        None => false,
    }
}
