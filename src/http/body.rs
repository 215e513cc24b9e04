//! Reading a JSON request body with the API's rules: declared as JSON, at
//! most the size limit (checked before and while reading), valid JSON, no
//! key given twice in one object.

use super::problem::ApiError;
use crate::domain::validate::FieldError;
use actix_web::{HttpRequest, http::header, web};
use futures_util::StreamExt;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Largest request body accepted, bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest a body may take to arrive once its headers have: actix bounds
/// only the head, so a client trickling a body would otherwise hold its
/// connection and buffer for as long as it likes.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and parses the body, or says exactly what is wrong with it.
pub async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<serde_json::Value, ApiError> {
    read_json_up_to(req, payload, MAX_BODY_BYTES).await
}

/// [`read_json`] with a route's own size limit, `max_bytes` (413 over it).
pub async fn read_json_up_to(
    req: &HttpRequest,
    mut payload: web::Payload,
    max_bytes: usize,
) -> Result<serde_json::Value, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" && !(mime.starts_with("application/") && mime.ends_with("+json"))
    {
        return Err(ApiError::UnsupportedMediaType);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max_bytes) {
        return Err(ApiError::PayloadTooLarge(max_bytes));
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(max_bytes));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadBody(e.to_string()))?;
            if body.len() + chunk.len() > max_bytes {
                return Err(ApiError::PayloadTooLarge(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_| ApiError::RequestTimeout(BODY_TIMEOUT.as_secs()))??;
    let value =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    match repeated_key(&body) {
        Some(field) => Err(ApiError::Validation(vec![FieldError::new(
            &field,
            "is given more than once; give each field once",
        )])),
        None => Ok(value),
    }
}

/// The first key that appears twice in one object of `json` (valid JSON),
/// as a path (`name`, `headers.X`, `list[2].a`). A parser keeps one of the
/// two values silently, so a client would not learn which one was stored.
fn repeated_key(json: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    FindRepeat {
        path: String::new(),
    }
    .deserialize(&mut de)
    .ok()
    .flatten()
}

/// Walks a JSON document looking for a repeated key below `path`.
struct FindRepeat {
    path: String,
}

impl FindRepeat {
    fn child(&self, key: &str) -> FindRepeat {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        FindRepeat { path }
    }
}

impl<'de> DeserializeSeed<'de> for FindRepeat {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FindRepeat {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut i = 0usize;
        loop {
            let item = FindRepeat {
                path: format!("{}[{i}]", self.path),
            };
            match seq.next_element_seed(item)? {
                Some(inner) => found = found.or(inner),
                None => return Ok(found),
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            let child = self.child(&key);
            if found.is_none() && seen.contains(&key) {
                found = Some(child.path.clone());
            }
            let inner = map.next_value_seed(child)?;
            found = found.or(inner);
            seen.insert(key);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::repeated_key;

    #[test]
    fn a_repeated_key_is_found_at_any_depth_and_named_by_its_path() {
        assert_eq!(repeated_key(br#"{"a":1,"b":2}"#), None);
        assert_eq!(repeated_key(br#"{"a":1,"a":2}"#).as_deref(), Some("a"));
        assert_eq!(
            repeated_key(br#"{"a":{"x":1,"y":{"z":1,"z":2}}}"#).as_deref(),
            Some("a.y.z")
        );
        assert_eq!(
            repeated_key(br#"{"l":[{"k":1},{"k":1,"k":2}]}"#).as_deref(),
            Some("l[1].k")
        );
        // The same key in two objects is no repeat.
        assert_eq!(repeated_key(br#"[{"k":1},{"k":2}]"#), None);
        // Keys compare after unescaping: "\u0061" is "a".
        assert_eq!(repeated_key(br#"{"a":1,"\u0061":2}"#).as_deref(), Some("a"));
    }
}
