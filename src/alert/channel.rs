//! A channel's settings by kind (`webhook`, `slack`, `discord`, `teams`,
//! `email`, `ntfy`, `telegram`, `pagerduty`), read from the API's `config`
//! object and checked field by field.
//!
//! Secrets (signing secrets, tokens, passwords, webhook URLs that carry a
//! token) are [`Secret`]s: they print and serialize as `***`, so a response,
//! a log line or a debug print cannot leak them; only a delivery reads them.

use crate::domain::validate::{FieldError, check_url};
use serde::Serialize;
use serde_json::{Map, Value};

/// A write-only value: shown as `***` everywhere but where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

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

/// The kinds of channel, as the API names them.
pub const KINDS: [&str; 8] = [
    "webhook",
    "slack",
    "discord",
    "teams",
    "email",
    "ntfy",
    "telegram",
    "pagerduty",
];

/// A channel's settings, by kind. Its `Debug` prints what [`Self::shown`]
/// shows, so a debug print of a channel hides what a response hides.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChannelConfig {
    /// A JSON POST of the alert, signed when a secret is set.
    Webhook {
        /// Where to POST.
        url: String,
        /// HMAC-SHA256 key for `X-Healthmon-Signature`.
        secret: Option<Secret>,
        /// Replaces the URL's scheme and host (self-hosted relays, tests).
        api_base: Option<String>,
    },
    /// A Slack incoming webhook (its URL is the credential).
    Slack {
        /// The incoming webhook URL.
        url: Secret,
        /// Replaces the URL's scheme and host.
        api_base: Option<String>,
    },
    /// A Discord webhook (its URL is the credential).
    Discord {
        /// The webhook URL.
        url: Secret,
        /// Replaces the URL's scheme and host.
        api_base: Option<String>,
    },
    /// A Microsoft Teams incoming webhook or workflow URL.
    Teams {
        /// The webhook URL.
        url: Secret,
        /// Replaces the URL's scheme and host.
        api_base: Option<String>,
    },
    /// Mail through an SMTP server.
    Email {
        /// SMTP host.
        host: String,
        /// SMTP port (465 with implicit TLS, 587 otherwise).
        port: u16,
        /// How the connection is encrypted (`tls`: `starttls`, `implicit`
        /// or `none`; by default `implicit` on port 465, else `starttls`).
        tls: MailTls,
        /// SMTP user, if the server wants a login.
        username: Option<String>,
        /// SMTP password.
        password: Option<Secret>,
        /// The sender address.
        from: String,
        /// Recipients.
        to: Vec<String>,
    },
    /// An ntfy topic.
    Ntfy {
        /// The server (`https://ntfy.sh` by default).
        api_base: String,
        /// The topic.
        topic: String,
        /// An access token, for protected topics.
        token: Option<Secret>,
    },
    /// A Telegram chat, through a bot.
    Telegram {
        /// The Bot API (`https://api.telegram.org` by default).
        api_base: String,
        /// The bot's token.
        bot_token: Secret,
        /// The chat to write to.
        chat_id: String,
    },
    /// PagerDuty's Events API v2: trigger on down, resolve on up.
    Pagerduty {
        /// The Events API (`https://events.pagerduty.com` by default).
        api_base: String,
        /// The service integration's routing key.
        routing_key: Secret,
    },
}

/// How an SMTP connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MailTls {
    /// Plain connection upgraded with STARTTLS (submission, port 587);
    /// a server that does not offer it gets nothing, not a plain mail.
    Starttls,
    /// TLS from the first byte (submissions, port 465, RFC 8314).
    Implicit,
    /// No encryption at all: only when asked for (a local relay, tests).
    None,
}

/// Reads a field set, reporting each problem under `config.<key>`.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    errors: Vec<FieldError>,
    known: &'static [&'static str],
}

impl<'a> Fields<'a> {
    fn bad(&mut self, key: &str, why: impl Into<String>) {
        self.errors
            .push(FieldError::new(&format!("config.{key}"), why));
    }

    fn string(&mut self, key: &str, required: bool) -> Option<String> {
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

    fn url(&mut self, key: &str, required: bool) -> Option<String> {
        let raw = self.string(key, required)?;
        match check_url(&raw) {
            Ok(url) => Some(url),
            Err(why) => {
                self.bad(key, why);
                None
            }
        }
    }

    fn base(&mut self, default: &str) -> String {
        self.url("api_base", false)
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| default.to_owned())
    }

    fn port(&mut self, key: &str, default: u16) -> u16 {
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

    fn addresses(&mut self, key: &str) -> Vec<String> {
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

    fn finish(mut self) -> Result<(), Vec<FieldError>> {
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
fn looks_like_address(a: &str) -> bool {
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

impl ChannelConfig {
    /// Reads `config` for a channel of `kind`; every problem is reported,
    /// each naming its field (`kind`, `config.url`, ...).
    pub fn parse(kind: &str, config: &Value) -> Result<Self, Vec<FieldError>> {
        if !KINDS.contains(&kind) {
            return Err(vec![FieldError::new(
                "kind",
                format!("unknown kind {kind:?}; one of {}", KINDS.join(", ")),
            )]);
        }
        let Some(map) = config.as_object() else {
            return Err(vec![FieldError::new("config", "must be an object")]);
        };
        let known: &'static [&'static str] = match kind {
            "webhook" => &["url", "secret", "api_base"],
            "slack" | "discord" | "teams" => &["url", "api_base"],
            "email" => &["host", "port", "tls", "username", "password", "from", "to"],
            "ntfy" => &["api_base", "topic", "token"],
            "telegram" => &["api_base", "bot_token", "chat_id"],
            _ => &["api_base", "routing_key"],
        };
        let mut f = Fields {
            map,
            errors: Vec::new(),
            known,
        };
        let parsed = match kind {
            "webhook" => {
                let url = f.url("url", true);
                let secret = f.string("secret", false).map(Secret);
                let api_base = f.url("api_base", false);
                url.map(|url| ChannelConfig::Webhook {
                    url,
                    secret,
                    api_base,
                })
            }
            "slack" | "discord" | "teams" => {
                let url = f.url("url", true).map(Secret);
                let api_base = f.url("api_base", false);
                url.map(|url| match kind {
                    "slack" => ChannelConfig::Slack { url, api_base },
                    "discord" => ChannelConfig::Discord { url, api_base },
                    _ => ChannelConfig::Teams { url, api_base },
                })
            }
            "email" => {
                let host = f.string("host", true);
                let tls = match f.string("tls", false).as_deref() {
                    None => None,
                    Some("starttls") => Some(MailTls::Starttls),
                    Some("implicit") => Some(MailTls::Implicit),
                    Some("none") => Some(MailTls::None),
                    Some(_) => {
                        f.bad("tls", "must be one of starttls, implicit, none");
                        None
                    }
                };
                let port = f.port(
                    "port",
                    if tls == Some(MailTls::Implicit) {
                        465
                    } else {
                        587
                    },
                );
                let tls = tls.unwrap_or(if port == 465 {
                    MailTls::Implicit
                } else {
                    MailTls::Starttls
                });
                let username = f.string("username", false);
                let password = f.string("password", false).map(Secret);
                // One without the other cannot log in; say so now, not at 3 a.m.
                match (&username, &password) {
                    (Some(_), None) => f.bad("password", "is required with config.username"),
                    (None, Some(_)) => f.bad("username", "is required with config.password"),
                    _ => {}
                }
                let from = f.string("from", true);
                if from.as_deref().is_some_and(|a| !looks_like_address(a)) {
                    f.bad("from", "is not a mail address");
                }
                let to = f.addresses("to");
                match (host, from) {
                    (Some(host), Some(from)) => Some(ChannelConfig::Email {
                        host,
                        port,
                        tls,
                        username,
                        password,
                        from,
                        to,
                    }),
                    _ => None,
                }
            }
            "ntfy" => {
                let api_base = f.base("https://ntfy.sh");
                let topic = f.string("topic", true);
                if topic.as_deref().is_some_and(|t| {
                    !t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
                }) {
                    f.bad("topic", "may hold only letters, digits, - and _");
                }
                let token = f.string("token", false).map(Secret);
                topic.map(|topic| ChannelConfig::Ntfy {
                    api_base,
                    topic,
                    token,
                })
            }
            "telegram" => {
                let api_base = f.base("https://api.telegram.org");
                let bot_token = f.string("bot_token", true).map(Secret);
                let chat_id = f.string("chat_id", true);
                match (bot_token, chat_id) {
                    (Some(bot_token), Some(chat_id)) => Some(ChannelConfig::Telegram {
                        api_base,
                        bot_token,
                        chat_id,
                    }),
                    _ => None,
                }
            }
            _ => {
                let api_base = f.base("https://events.pagerduty.com");
                let routing_key = f.string("routing_key", true).map(Secret);
                routing_key.map(|routing_key| ChannelConfig::Pagerduty {
                    api_base,
                    routing_key,
                })
            }
        };
        f.finish()?;
        parsed.ok_or_else(|| vec![FieldError::new("config", "is incomplete")])
    }

    /// The kind, as the API names it.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelConfig::Webhook { .. } => "webhook",
            ChannelConfig::Slack { .. } => "slack",
            ChannelConfig::Discord { .. } => "discord",
            ChannelConfig::Teams { .. } => "teams",
            ChannelConfig::Email { .. } => "email",
            ChannelConfig::Ntfy { .. } => "ntfy",
            ChannelConfig::Telegram { .. } => "telegram",
            ChannelConfig::Pagerduty { .. } => "pagerduty",
        }
    }

    /// The settings as the API shows them: secrets as `***`; a webhook's
    /// `url` as its scheme, host and port followed by `/***` (see
    /// [`shown_origin`]); an `api_base` with its user info, query values
    /// and fragment as `***` (see [`shown_url`]).
    pub fn shown(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(map) = v.as_object_mut() {
            map.remove("kind");
            map.retain(|_, value| !value.is_null());
            if matches!(self, ChannelConfig::Webhook { .. })
                && let Some(Value::String(url)) = map.get_mut("url")
            {
                *url = shown_origin(url);
            }
            if let Some(Value::String(base)) = map.get_mut("api_base") {
                *base = shown_url(base);
            }
        }
        v
    }

    /// Where the settings send things, setting by setting, defaults
    /// applied: a stored secret kept across a change of any of these would
    /// follow the channel to a destination it was not given for.
    pub fn destination(&self) -> Vec<(&'static str, String)> {
        let base = |b: &Option<String>| b.clone().unwrap_or_default();
        match self {
            ChannelConfig::Webhook { url, api_base, .. } => {
                vec![("url", url.clone()), ("api_base", base(api_base))]
            }
            ChannelConfig::Slack { url, api_base }
            | ChannelConfig::Discord { url, api_base }
            | ChannelConfig::Teams { url, api_base } => vec![
                ("url", url.expose().to_owned()),
                ("api_base", base(api_base)),
            ],
            ChannelConfig::Email {
                host, port, tls, ..
            } => vec![
                ("host", host.to_ascii_lowercase()),
                ("port", port.to_string()),
                ("tls", format!("{tls:?}")),
            ],
            ChannelConfig::Ntfy {
                api_base, topic, ..
            } => vec![("api_base", api_base.clone()), ("topic", topic.clone())],
            ChannelConfig::Telegram {
                api_base, chat_id, ..
            } => vec![("api_base", api_base.clone()), ("chat_id", chat_id.clone())],
            ChannelConfig::Pagerduty { api_base, .. } => vec![("api_base", api_base.clone())],
        }
    }
}

// By hand: the derived one printed a webhook's url and every api_base in
// full, tokens in their paths or queries included.
impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChannelConfig::{}({})", self.kind(), self.shown())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(r: Result<ChannelConfig, Vec<FieldError>>) -> Vec<String> {
        let mut f: Vec<String> = r
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect();
        f.sort();
        f
    }

    #[test]
    fn every_kind_reads_its_settings_and_shows_its_secrets_as_stars() {
        let cases = [
            (
                "webhook",
                json!({"url": "http://127.0.0.1:9/h", "secret": "s3"}),
                "s3",
            ),
            (
                "slack",
                json!({"url": "https://hooks.slack.com/services/T/B/XYZ"}),
                "XYZ",
            ),
            (
                "discord",
                json!({"url": "https://discord.com/api/webhooks/1/tok"}),
                "tok",
            ),
            (
                "teams",
                json!({"url": "https://x.webhook.office.com/wh/abc"}),
                "abc",
            ),
            (
                "email",
                json!({"host": "127.0.0.1", "port": 2525, "password": "pw!", "username": "u",
                       "from": "hm@example.org", "to": ["ops@example.org"]}),
                "pw!",
            ),
            ("ntfy", json!({"topic": "ops", "token": "tk_1"}), "tk_1"),
            (
                "telegram",
                json!({"bot_token": "123:AA", "chat_id": "-100"}),
                "123:AA",
            ),
            ("pagerduty", json!({"routing_key": "R0UT1NG"}), "R0UT1NG"),
        ];
        for (kind, config, secret) in cases {
            let parsed =
                ChannelConfig::parse(kind, &config).unwrap_or_else(|e| panic!("{kind}: {e:?}"));
            let shown = parsed.shown().to_string();
            assert!(!shown.contains(secret), "{kind}: {shown}");
            assert!(shown.contains("***"), "{kind}: {shown}");
            assert!(
                !format!("{parsed:?}").contains(secret),
                "{kind}: Debug leaks"
            );
        }
    }

    #[test]
    fn tokens_in_urls_are_not_shown_nor_debug_printed() {
        let hook = ChannelConfig::parse(
            "webhook",
            &json!({"url": "https://u:pw1@hooks.example:8443/in/PATHTOK?token=QTOK#FTOK",
                    "api_base": "https://BUSER:bpw@relay.example/base?key=BTOK&BARE"}),
        )
        .unwrap();
        let shown = hook.shown();
        assert_eq!(shown["url"], "https://hooks.example:8443/***");
        assert_eq!(
            shown["api_base"],
            "https://***:***@relay.example/base?key=***&***"
        );
        let ntfy = ChannelConfig::parse(
            "ntfy",
            &json!({"topic": "ops", "api_base": "https://ntfy.example/sub#FTOK"}),
        )
        .unwrap();
        assert_eq!(ntfy.shown()["api_base"], "https://ntfy.example/sub#***");
        let debug = format!("{hook:?} {ntfy:?}");
        for token in [
            "pw1", "PATHTOK", "QTOK", "FTOK", "BUSER", "bpw", "BTOK", "BARE",
        ] {
            assert!(!debug.contains(token), "{token} in {debug}");
        }
        assert!(
            debug.contains("webhook") && debug.contains("ntfy"),
            "{debug}"
        );
        // Nothing after the host: nothing to hide.
        assert_eq!(shown_origin("http://127.0.0.1:9/"), "http://127.0.0.1:9/");
        assert_eq!(shown_origin("http://[::1]:9/x"), "http://[::1]:9/***");
        assert_eq!(shown_url("https://h.example/p"), "https://h.example/p");
    }

    #[test]
    fn the_destination_names_where_secrets_go() {
        let names = |kind: &str, config: Value| -> Vec<&'static str> {
            ChannelConfig::parse(kind, &config)
                .unwrap()
                .destination()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        assert_eq!(
            names(
                "email",
                json!({"host": "h.example", "from": "a@b.cd", "to": "e@f.gh"})
            ),
            ["host", "port", "tls"]
        );
        assert_eq!(
            names("telegram", json!({"bot_token": "1:A", "chat_id": "5"})),
            ["api_base", "chat_id"]
        );
        let pd = |config: Value| {
            ChannelConfig::parse("pagerduty", &config)
                .unwrap()
                .destination()
        };
        // The default spelled out is the same destination.
        assert_eq!(
            pd(json!({"routing_key": "k"})),
            pd(json!({"routing_key": "k", "api_base": "https://events.pagerduty.com/"}))
        );
        assert_ne!(
            pd(json!({"routing_key": "k"})),
            pd(json!({"routing_key": "k", "api_base": "https://evil.example"}))
        );
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let ntfy = ChannelConfig::parse("ntfy", &json!({"topic": "ops"})).unwrap();
        assert!(
            matches!(ntfy, ChannelConfig::Ntfy { ref api_base, .. } if api_base == "https://ntfy.sh")
        );
        let mail = ChannelConfig::parse(
            "email",
            &json!({"host": "smtp.example.org", "from": "a@example.org", "to": "b@example.org"}),
        )
        .unwrap();
        assert!(matches!(
            mail,
            ChannelConfig::Email {
                port: 587,
                tls: MailTls::Starttls,
                ..
            }
        ));
        let email = |config: Value| match ChannelConfig::parse("email", &config) {
            Ok(ChannelConfig::Email { port, tls, .. }) => (port, tls),
            other => panic!("{other:?}"),
        };
        let base = json!({"host": "h.example", "from": "a@example.org", "to": "b@example.org"});
        let with = |extra: Value| {
            let mut c = base.clone();
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            c
        };
        // Port 465 means implicit TLS, and implicit TLS means port 465.
        assert_eq!(email(with(json!({"port": 465}))), (465, MailTls::Implicit));
        assert_eq!(
            email(with(json!({"tls": "implicit"}))),
            (465, MailTls::Implicit)
        );
        assert_eq!(
            email(with(json!({"tls": "none", "port": 25}))),
            (25, MailTls::None)
        );
        assert_eq!(
            email(with(json!({"tls": "starttls", "port": 2525}))),
            (2525, MailTls::Starttls)
        );
    }

    #[test]
    fn bad_settings_name_their_field() {
        assert_eq!(fields(ChannelConfig::parse("sms", &json!({}))), ["kind"]);
        assert_eq!(
            fields(ChannelConfig::parse("webhook", &json!([]))),
            ["config"]
        );
        assert_eq!(
            fields(ChannelConfig::parse("webhook", &json!({}))),
            ["config.url"]
        );
        assert_eq!(
            fields(ChannelConfig::parse(
                "webhook",
                &json!({"url": "ftp://x/", "sekret": 1})
            )),
            ["config.sekret", "config.url"]
        );
        assert_eq!(
            fields(ChannelConfig::parse("telegram", &json!({"chat_id": 5}))),
            ["config.bot_token", "config.chat_id"]
        );
        assert_eq!(
            fields(ChannelConfig::parse(
                "email",
                &json!({"host": "h", "port": 0, "from": "nobody", "to": ["x@y.z\r\nBcc: a@b.c"]})
            )),
            ["config.from", "config.port", "config.to"]
        );
        assert_eq!(
            fields(ChannelConfig::parse(
                "email",
                &json!({"host": "h", "tls": "ssl", "username": "u",
                        "from": "a@example.org", "to": "b@example.org"})
            )),
            ["config.password", "config.tls"]
        );
        assert_eq!(
            fields(ChannelConfig::parse("ntfy", &json!({"topic": "../admin"}))),
            ["config.topic"]
        );
    }
}
