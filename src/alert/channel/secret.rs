//! What a channel's settings show: [`Secret`]s as `***`, and URLs with the
//! parts that carry tokens hidden.

use serde::Serialize;

/// A write-only value: shown as `***` everywhere but where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// A URL as a response shows it when only its path may be told: the user
/// info, each query value (a bare query key too) and the fragment as `***`.
/// Tokens often ride in a query (`?token=...`) or the user info; an
/// `api_base` names a server, so its path stays readable.
pub fn shown_url(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        // Stored URLs were checked, so this guards only odd legacy rows.
        return String::from("***");
    };
    if !u.username().is_empty() && u.set_username("***").is_err() {
        return String::from("***");
    }
    if u.password().is_some() && u.set_password(Some("***")).is_err() {
        return String::from("***");
    }
    if let Some(query) = u.query().map(str::to_owned) {
        let hidden: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) => format!("{key}=***"),
                None if pair.is_empty() => String::new(),
                None => String::from("***"),
            })
            .collect();
        u.set_query(Some(&hidden.join("&")));
    }
    if u.fragment().is_some() {
        u.set_fragment(Some("***"));
    }
    u.to_string()
}

/// A webhook URL as a response shows it: scheme, host and port, then `/***`
/// for everything else (user info, path, query, fragment), since generic
/// webhooks carry their token anywhere in there, most often in the path.
/// A URL with nothing after the host shows as it is.
pub fn shown_origin(raw: &str) -> String {
    let Ok(u) = url::Url::parse(raw) else {
        return String::from("***");
    };
    let origin = u.origin();
    if !origin.is_tuple() {
        return String::from("***");
    }
    let bare = u.path() == "/"
        && u.query().is_none()
        && u.fragment().is_none()
        && u.username().is_empty()
        && u.password().is_none();
    if bare {
        u.to_string()
    } else {
        format!("{}/***", origin.ascii_serialization())
    }
}
