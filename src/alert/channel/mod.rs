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

mod fields;
mod secret;

use fields::{Fields, looks_like_address};
pub use secret::{Secret, shown_origin, shown_url};

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

#[cfg(test)]
mod tests;
