//! Check kinds (DESIGN.md "Check kinds"): the URL's scheme says what a check
//! does, and each kind reads its own few settings from [`CheckOptions`].
//!
//! The options are one plain serde document: stored whole in the
//! `services.check_options` column, carried whole in every
//! [`crate::domain::CheckJob`], so a worker needs nothing else. Which fields a
//! kind accepts, and their limits, is judged by `domain::validate`; this
//! module only names them and the defaults in effect.

use super::time::Seconds;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a check does, chosen by the URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// `http://`, `https://`: a request, its status, body and timing.
    Http,
    /// `tcp://host:port`: a TCP connect.
    Tcp,
    /// `tls://host:port`: a TCP connect and a TLS handshake, certificate
    /// checked.
    Tls,
    /// `dns://[resolver[:port]]/name?type=A`: a DNS query.
    Dns,
    /// `push://`: no request; the service pings us, and a missed deadline
    /// is DOWN.
    Push,
}

impl CheckKind {
    /// The kind a URL's scheme selects, if any.
    pub fn of_scheme(scheme: &str) -> Option<Self> {
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => Some(Self::Http),
            "tcp" => Some(Self::Tcp),
            "tls" => Some(Self::Tls),
            "dns" => Some(Self::Dns),
            "push" => Some(Self::Push),
            _ => None,
        }
    }

    /// The kind of a stored (validated) URL; an unreadable one is treated
    /// as HTTP, which then fails its check with a clear error.
    pub fn of_url(url: &str) -> Self {
        url.split_once("://")
            .and_then(|(scheme, _)| Self::of_scheme(scheme))
            .unwrap_or(Self::Http)
    }

    /// The name users see in errors and documents.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Dns => "dns",
            Self::Push => "push",
        }
    }
}

impl std::fmt::Display for CheckKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Days before a `tls://` certificate's expiry from which the check is
/// DEGRADED, when the service does not say (DESIGN.md).
pub const DEFAULT_TLS_CERT_EXPIRY_DAYS: u32 = 14;

/// Seconds a push service may be late before it is DOWN, when it does not
/// say (DESIGN.md).
pub const DEFAULT_PUSH_GRACE: Seconds = Seconds(60);

/// What a header value looks like in every answer: header values are
/// write-only (they often carry tokens).
pub const HIDDEN: &str = "***";

/// One assertion on a JSON response body: the value at `pointer` (RFC 6901)
/// must equal `equals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonAssertion {
    /// RFC 6901 pointer, `""` or starting with `/`.
    pub pointer: String,
    /// The JSON value expected there.
    #[schema(value_type = Value)]
    pub equals: serde_json::Value,
}

// A JSON value holds no NaN (serde_json's numbers cannot), so equality is
// total and options can sit in the `Eq` types that carry them.
impl Eq for JsonAssertion {}

/// The fields of [`CheckOptions`]. Every field is optional: `None` means
/// "not set", and the kind's default applies. Unknown fields in the stored
/// document are ignored, so an older process reads a newer row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct CheckFields {
    /// HTTP method (GET when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// HTTP request headers; values are secrets (shown as `***`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// HTTP request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Whether HTTP redirects are followed (true when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<bool>,
    /// Text the HTTP response body must contain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// Text the HTTP response body must not contain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_not_contains: Option<String>,
    /// Assertions on the JSON response body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<Vec<JsonAssertion>>,
    /// A passing HTTP or TCP check slower than this is DEGRADED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded_latency_ms: Option<i64>,
    /// A certificate expiring within this many days makes a passing check
    /// DEGRADED (https, tls; `tls://` defaults to
    /// [`DEFAULT_TLS_CERT_EXPIRY_DAYS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_expiry_days: Option<u32>,
    /// Strings a DNS answer must contain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<Vec<String>>,
    /// Seconds a push service may be late (`push://`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace: Option<Seconds>,
}

impl CheckFields {
    /// No field set.
    pub const NONE: CheckFields = CheckFields {
        method: None,
        headers: None,
        body: None,
        follow_redirects: None,
        body_contains: None,
        body_not_contains: None,
        json: None,
        degraded_latency_ms: None,
        cert_expiry_days: None,
        expect: None,
        grace: None,
    };
}

/// What [`CheckOptions`] reads as while it holds nothing.
static NO_FIELDS: CheckFields = CheckFields::NONE;

/// A service's kind-specific settings: [`CheckFields`] behind a shared
/// pointer, and nothing at all while none is set. The scheduler keeps a spec
/// per service and every job carries one: inline, the fields took 224 bytes
/// each (about 22 MB at 100,000 services, BENCHMARKS.md "Check kinds"), and
/// a job copied its strings and assertions each time. Now an unset one takes
/// 8 bytes, a job shares its service's fields, and services with the same
/// options can share one copy (the store interns them). Reads go through
/// `Deref` to the fields (all `None` when unset); writes through `DerefMut`
/// copy shared fields first, so a change never shows in another service.
#[derive(Clone, Default)]
pub struct CheckOptions(Option<Arc<CheckFields>>);

impl std::ops::Deref for CheckOptions {
    type Target = CheckFields;

    fn deref(&self) -> &CheckFields {
        self.0.as_deref().unwrap_or(&NO_FIELDS)
    }
}

impl std::ops::DerefMut for CheckOptions {
    fn deref_mut(&mut self) -> &mut CheckFields {
        Arc::make_mut(self.0.get_or_insert_with(Arc::default))
    }
}

impl From<CheckFields> for CheckOptions {
    fn from(fields: CheckFields) -> Self {
        if fields == CheckFields::NONE {
            Self(None)
        } else {
            Self(Some(Arc::new(fields)))
        }
    }
}

// Equal when the fields are: a box emptied by writes equals no box.
impl PartialEq for CheckOptions {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for CheckOptions {}

impl std::fmt::Debug for CheckOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl Serialize for CheckOptions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for CheckOptions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        CheckFields::deserialize(d).map(Self::from)
    }
}

impl CheckOptions {
    /// Options sharing `fields` (for an interner).
    pub fn from_shared(fields: Arc<CheckFields>) -> Self {
        Self(Some(fields))
    }

    /// The shared fields, if any is set (for an interner).
    pub fn shared(&self) -> Option<&Arc<CheckFields>> {
        self.0.as_ref()
    }

    /// Whether no field is set (the stored `{}`).
    pub fn is_empty(&self) -> bool {
        **self == CheckFields::NONE
    }

    /// The same options as an answer may show them: header values hidden.
    pub fn shown(&self) -> Self {
        let mut shown = self.clone();
        // Only options with headers are touched (a write makes the box).
        if self.headers.is_none() {
            return shown;
        }
        if let Some(headers) = shown.headers.as_mut() {
            for value in headers.values_mut() {
                *value = HIDDEN.to_owned();
            }
        }
        shown
    }

    /// The certificate expiry threshold in effect for `kind`, if any.
    pub fn effective_cert_expiry_days(&self, kind: CheckKind) -> Option<u32> {
        match (kind, self.cert_expiry_days) {
            (_, Some(days)) => Some(days),
            (CheckKind::Tls, None) => Some(DEFAULT_TLS_CERT_EXPIRY_DAYS),
            _ => None,
        }
    }

    /// The push grace in effect.
    pub fn effective_grace(&self) -> Seconds {
        self.grace.unwrap_or(DEFAULT_PUSH_GRACE)
    }

    /// The stored form: compact JSON.
    pub fn to_json(&self) -> String {
        // A map of strings, numbers and JSON values cannot fail to encode.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// Reads the stored form; an unreadable document (a row edited by hand)
    /// reads as no options rather than failing the whole listing.
    pub fn from_json(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_kind() {
        assert_eq!(CheckKind::of_url("https://x/"), CheckKind::Http);
        assert_eq!(CheckKind::of_url("HTTP://x/"), CheckKind::Http);
        assert_eq!(CheckKind::of_url("tcp://db:5432"), CheckKind::Tcp);
        assert_eq!(CheckKind::of_url("tls://x:443"), CheckKind::Tls);
        assert_eq!(CheckKind::of_url("dns:///example.com"), CheckKind::Dns);
        assert_eq!(CheckKind::of_url("push://"), CheckKind::Push);
        assert_eq!(CheckKind::of_scheme("ftp"), None);
    }

    #[test]
    fn header_values_are_never_shown_and_the_stored_form_round_trips() {
        let opts = CheckOptions::from(CheckFields {
            headers: Some(BTreeMap::from([(
                "Authorization".into(),
                "Bearer s3cret".into(),
            )])),
            json: Some(vec![JsonAssertion {
                pointer: "/a/0".into(),
                equals: serde_json::json!({"ok": true}),
            }]),
            ..CheckFields::default()
        });
        let shown = serde_json::to_string(&opts.shown()).unwrap();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains(HIDDEN));
        assert_eq!(CheckOptions::from_json(&opts.to_json()), opts);
        assert_eq!(CheckOptions::default().to_json(), "{}");
        assert!(CheckOptions::from_json("not json").is_empty());
    }

    #[test]
    fn defaults_in_effect() {
        let none = CheckOptions::default();
        assert_eq!(none.effective_cert_expiry_days(CheckKind::Tls), Some(14));
        assert_eq!(none.effective_cert_expiry_days(CheckKind::Http), None);
        assert_eq!(none.effective_grace(), Seconds(60));
    }
}
