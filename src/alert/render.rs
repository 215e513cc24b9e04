//! An alert in each channel's own format: a signed JSON body for webhooks,
//! Slack blocks, a Discord embed, a Teams adaptive card, an ntfy message, a
//! Telegram message, a PagerDuty Events API v2 event, a mail.
//!
//! Every message names the service, the change, since when, the reason code
//! and the latest error. Text that comes from users or targets (names,
//! error messages) is escaped for each format, and Discord is told to ping
//! no one, so a service named `@everyone` cannot page a whole server.

use super::channel::ChannelConfig;
use super::sign::signature;
use super::{Alert, AlertEvent};
use crate::domain::time::to_rfc3339;
use crate::domain::{ServiceId, Status};
use serde_json::{Value, json};

/// Longest error text put in a message; chat services cap field sizes
/// (Discord at 1,024 characters) and a page of HTML is no help at 3 a.m.
pub const MAX_ERROR_CHARS: usize = 500;

/// What a delivery sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// An HTTP POST.
    Http(HttpRequest),
    /// A mail.
    Mail(Mail),
}

/// A POST to make. The URL may hold a credential (Slack, Telegram): it is
/// never logged, only the host is.
#[derive(Clone, PartialEq)]
pub struct HttpRequest {
    /// Where to POST.
    pub url: String,
    /// Headers besides `Content-Type: application/json`.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        f.debug_struct("HttpRequest")
            .field("host", &host)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// A mail to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

/// The request or mail `config` gets for `alert`, sent at `now_s` (unix
/// seconds: the webhook timestamp, signed, so it changes per attempt while
/// the delivery id stays).
pub fn render(config: &ChannelConfig, alert: &Alert, now_s: i64) -> Delivery {
    match config {
        ChannelConfig::Webhook {
            url,
            secret,
            api_base,
        } => {
            let body = webhook_body(alert);
            let mut headers = vec![
                ("X-Healthmon-Delivery".to_owned(), alert.id.to_string()),
                ("X-Healthmon-Timestamp".to_owned(), now_s.to_string()),
            ];
            if let Some(secret) = secret {
                headers.push((
                    "X-Healthmon-Signature".to_owned(),
                    signature(secret.expose().as_bytes(), now_s, &body),
                ));
            }
            Delivery::Http(HttpRequest {
                url: rebase(url, api_base.as_deref()),
                headers,
                body,
            })
        }
        ChannelConfig::Slack { url, api_base } => Delivery::Http(post(
            rebase(url.expose(), api_base.as_deref()),
            &slack(alert),
        )),
        ChannelConfig::Discord { url, api_base } => Delivery::Http(post(
            rebase(url.expose(), api_base.as_deref()),
            &discord(alert),
        )),
        ChannelConfig::Teams { url, api_base } => Delivery::Http(post(
            rebase(url.expose(), api_base.as_deref()),
            &teams(alert),
        )),
        ChannelConfig::Ntfy {
            api_base,
            topic,
            token,
        } => {
            let mut request = post(format!("{api_base}/"), &ntfy(alert, topic));
            if let Some(token) = token {
                request
                    .headers
                    .push(("Authorization".into(), format!("Bearer {}", token.expose())));
            }
            Delivery::Http(request)
        }
        ChannelConfig::Telegram {
            api_base,
            bot_token,
            chat_id,
        } => Delivery::Http(post(
            format!("{api_base}/bot{}/sendMessage", bot_token.expose()),
            &telegram(alert, chat_id),
        )),
        ChannelConfig::Pagerduty {
            api_base,
            routing_key,
        } => Delivery::Http(post(
            format!("{api_base}/v2/enqueue"),
            &pagerduty(alert, routing_key.expose()),
        )),
        ChannelConfig::Email { .. } => Delivery::Mail(mail(alert)),
    }
}

fn post(url: String, body: &Value) -> HttpRequest {
    HttpRequest {
        url,
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
    }
}

/// `url` with its scheme, host and port replaced by `api_base`'s.
fn rebase(url: &str, api_base: Option<&str>) -> String {
    let Some(base) = api_base else {
        return url.to_owned();
    };
    match url::Url::parse(url) {
        Ok(u) => {
            let tail = match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_owned(),
            };
            format!("{}{tail}", base.trim_end_matches('/'))
        }
        Err(_) => url.to_owned(),
    }
}

/// The webhook body of DESIGN.md: `id, event, service, old_status,
/// new_status, at, check`.
pub fn webhook_body(alert: &Alert) -> Vec<u8> {
    let mut body = json!({
        "id": alert.id,
        "event": alert.event.as_str(),
        "service": alert.service,
        "old_status": alert.old_status,
        "new_status": alert.new_status,
        "at": to_rfc3339(alert.at),
        "since": to_rfc3339(alert.since),
        "check": alert.check,
    });
    // A region alert also names the region (its `service` is only a name).
    if let (Some(region), Some(fields)) = (&alert.region, body.as_object_mut()) {
        fields.insert("region".to_owned(), json!(region));
    }
    body.to_string().into_bytes()
}

/// The facts every format lists, as (label, value) in order.
fn facts(alert: &Alert) -> Vec<(&'static str, String)> {
    if let Some(region) = &alert.region {
        return vec![
            ("Region", region.name.clone()),
            (
                "Failing",
                format!(
                    "{} of {} services that other regions see UP",
                    region.failing, region.compared
                ),
            ),
            ("At", to_rfc3339(alert.at)),
        ];
    }
    let mut facts = vec![
        ("Service", alert.service_name.clone()),
        (
            "Change",
            format!("{} → {}", alert.old_status, alert.new_status),
        ),
        ("Since", to_rfc3339(alert.since)),
    ];
    if let Some(url) = alert.service.get("url").and_then(Value::as_str) {
        // The API's form of the URL: any password is already `***`.
        facts.insert(1, ("URL", url.to_owned()));
    }
    if let Some(reason) = alert.reason() {
        facts.push(("Reason", reason.to_owned()));
    }
    if let Some(error) = &alert.error {
        facts.push(("Error", truncate(error, MAX_ERROR_CHARS)));
    }
    facts
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Slack's mrkdwn escapes: `&`, `<` and `>` (links and mentions).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack(alert: &Alert) -> Value {
    let headline = alert.headline();
    let fields: Vec<Value> = facts(alert)
        .into_iter()
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{}", slack_escape(&v))}))
        .collect();
    json!({
        "text": slack_escape(&headline),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate(&headline, 150)}},
            // Slack takes at most 10 fields in a section.
            {"type": "section", "fields": fields.into_iter().take(10).collect::<Vec<_>>()},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": format!("healthmon · delivery {}", alert.id)}
            ]}
        ]
    })
}

/// How an alert reads at a glance: the colours and priorities of chats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    /// DOWN, still DOWN.
    Bad,
    /// DEGRADED: passing over a soft limit, also when back from DOWN so.
    Warning,
    /// UP.
    Good,
    /// A test.
    Info,
}

fn tone(alert: &Alert) -> Tone {
    match alert.event {
        AlertEvent::Down | AlertEvent::Reminder => Tone::Bad,
        AlertEvent::Degraded => Tone::Warning,
        AlertEvent::Up if alert.new_status == Status::Degraded => Tone::Warning,
        AlertEvent::Up => Tone::Good,
        AlertEvent::Test => Tone::Info,
        AlertEvent::RegionImpaired => Tone::Warning,
        AlertEvent::RegionRecovered => Tone::Good,
    }
}

/// Discord embed colours: red, amber, green, blue.
fn colour(alert: &Alert) -> u32 {
    match tone(alert) {
        Tone::Bad => 0xD7_3A_49,
        Tone::Warning => 0xD2_99_22,
        Tone::Good => 0x2E_A0_43,
        Tone::Info => 0x3B_82_F6,
    }
}

fn discord(alert: &Alert) -> Value {
    let fields: Vec<Value> = facts(alert)
        .into_iter()
        .map(|(k, v)| {
            let inline = !matches!(k, "Error" | "URL");
            json!({"name": k, "value": truncate(&v, 1000), "inline": inline})
        })
        .collect();
    json!({
        "username": "healthmon",
        // Names and errors are user text: mention no one, whatever they say.
        "allowed_mentions": {"parse": []},
        "embeds": [{
            "title": truncate(&alert.headline(), 250),
            "color": colour(alert),
            "fields": fields,
            "timestamp": to_rfc3339(alert.at),
            "footer": {"text": format!("healthmon · delivery {}", alert.id)},
        }]
    })
}

fn teams(alert: &Alert) -> Value {
    let colour = match tone(alert) {
        Tone::Bad => "Attention",
        Tone::Warning => "Warning",
        Tone::Good => "Good",
        Tone::Info => "Accent",
    };
    let facts: Vec<Value> = facts(alert)
        .into_iter()
        .map(|(k, v)| json!({"title": k, "value": v}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
                     "color": colour, "text": alert.headline()},
                    {"type": "FactSet", "facts": facts}
                ]
            }
        }]
    })
}

fn plain_text(alert: &Alert) -> String {
    facts(alert)
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ntfy(alert: &Alert, topic: &str) -> Value {
    let (priority, tag) = match (alert.event, tone(alert)) {
        (AlertEvent::Down, _) => (5, "rotating_light"),
        (AlertEvent::Reminder, _) => (4, "rotating_light"),
        (AlertEvent::Test, _) => (2, "test_tube"),
        (AlertEvent::RegionImpaired, _) => (4, "warning"),
        (_, Tone::Warning) => (3, "warning"),
        _ => (3, "white_check_mark"),
    };
    json!({
        "topic": topic,
        "title": alert.headline(),
        "message": plain_text(alert),
        "priority": priority,
        "tags": [tag, "healthmon"],
    })
}

/// Telegram's HTML mode escapes: `&`, `<`, `>`.
fn html_escape(s: &str) -> String {
    slack_escape(s)
}

fn telegram(alert: &Alert, chat_id: &str) -> Value {
    let mut text = format!("<b>{}</b>", html_escape(&alert.headline()));
    for (k, v) in facts(alert) {
        text.push_str(&format!("\n<b>{k}:</b> {}", html_escape(&v)));
    }
    json!({
        "chat_id": chat_id,
        "text": text,
        "parse_mode": "HTML",
        "disable_web_page_preview": true,
    })
}

/// The dedup key that ties PagerDuty's trigger and resolve for a service.
pub fn pagerduty_dedup_key(service_id: ServiceId) -> String {
    format!("healthmon-service-{service_id}")
}

fn pagerduty(alert: &Alert, routing_key: &str) -> Value {
    let dedup_key = match alert.event {
        // A test must not resolve (or be merged into) a real incident.
        AlertEvent::Test => format!("healthmon-test-{}", alert.id),
        // One incident per region, opened by `region_impaired`, resolved
        // by `region_recovered`.
        AlertEvent::RegionImpaired | AlertEvent::RegionRecovered => format!(
            "healthmon-region-{}",
            alert.region.as_ref().map_or("", |r| r.name.as_str())
        ),
        _ => pagerduty_dedup_key(alert.service_id),
    };
    // An `up` resolves the service's incident, a `down`'s or a
    // `degraded`'s (one key per service: a service has one incident at a
    // time, its severity that of the alert that opened it).
    if matches!(alert.event, AlertEvent::Up | AlertEvent::RegionRecovered) {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let severity = match alert.event {
        AlertEvent::Down | AlertEvent::Reminder => "critical",
        AlertEvent::Degraded => "warning",
        AlertEvent::RegionImpaired => "error",
        _ => "info",
    };
    let details: serde_json::Map<String, Value> = facts(alert)
        .into_iter()
        .map(|(k, v)| (k.to_lowercase(), Value::String(v)))
        .collect();
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": truncate(&alert.headline(), 1000),
            "source": alert.service.get("url").and_then(Value::as_str).unwrap_or(&alert.service_name),
            "severity": severity,
            "timestamp": to_rfc3339(alert.at),
            "component": alert.service_name,
            "class": alert.reason().unwrap_or("status"),
            "custom_details": details,
        },
        "client": "healthmon",
    })
}

fn mail(alert: &Alert) -> Mail {
    // Subjects are one line: a name cannot add headers.
    let subject = format!("[healthmon] {}", alert.headline()).replace(['\r', '\n'], " ");
    let body = format!(
        "{}\n\n{}\n\nDelivery {} from healthmon.\n",
        alert.headline(),
        plain_text(alert),
        alert.id
    );
    Mail { subject, body }
}

#[cfg(test)]
mod tests;
