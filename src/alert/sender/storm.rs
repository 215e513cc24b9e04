//! A storm's one grouped message: when more than `alerts.storm_threshold`
//! status changes hit one channel within `alerts.storm_window_s`, the
//! channel gets at most one message per `STORM_GAP` (1 s): those due are
//! sent together, listed one line each (one due alone goes as itself). The
//! first `storm_threshold` changes of a window go out one by one.
//!
//! A webhook gets `{"id": "storm-<first id>-<count>", "event": "storm",
//! "count", "at", "alerts": [<each alert's own webhook body>]}`, signed like
//! any webhook, with `X-Healthmon-Delivery: storm-<first id>-<count>` (a
//! receiver that keys on single ids can still tell every alert by the
//! `alerts[].id` inside). A group's members are stored with it before the
//! first attempt, so a retry sends the same set under the same id; a member
//! no longer to be sent (held by a window since) leaves a smaller set,
//! whose count, and so whose id, differs: one id never names two
//! different sets. Chat kinds and mail get a summary
//! with a line per alert. PagerDuty is never grouped: its incidents are
//! keyed per service, and it groups alerts itself.

use crate::alert::channel::ChannelConfig;
use crate::alert::render::{Delivery, HttpRequest, Mail, render, webhook_body};
use crate::alert::sign::signature;
use crate::alert::{Alert, AlertEvent};
use crate::domain::time::to_rfc3339;
use serde_json::{Value, json};

/// Lines listed one by one in a chat message; the rest are named on one
/// line ("and 30 more: db (DOWN), cache (UP), ..."), cut to the kind's
/// size limit. Mail lists every alert on its own line.
pub const MAX_LINES: usize = 25;

/// Characters of a chat message's text kept, per kind (their limits, with
/// room for the JSON around it).
const SLACK_TEXT: usize = 39_000;
const TELEGRAM_TEXT: usize = 4_000;
const NTFY_MESSAGE: usize = 3_800;
const TEAMS_LINE: usize = 20_000;

/// `text` cut to `limit` characters, marked with "…" when cut.
fn fit(text: String, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text;
    }
    text.chars()
        .take(limit.saturating_sub(1))
        .collect::<String>()
        + "…"
}

/// Whether alerts for this channel may be grouped.
pub fn groups(config: &ChannelConfig) -> bool {
    !matches!(config, ChannelConfig::Pagerduty { .. })
}

/// The delivery id of a group: its lowest alert id and its size. A group's
/// set only ever shrinks on a retry, so these two tell its sets apart.
pub fn group_id(alerts: &[Alert]) -> String {
    let first = alerts.iter().map(|a| a.id).min().unwrap_or_default();
    format!("storm-{first}-{}", alerts.len())
}

/// What a service is now, as a storm's summary counts and names it: the
/// status a change left it in (an `up` back from DOWN may leave it
/// DEGRADED), DOWN for a reminder.
fn now_is(alert: &Alert) -> &'static str {
    match alert.event {
        AlertEvent::Down | AlertEvent::Reminder => "DOWN",
        AlertEvent::Up | AlertEvent::Degraded => alert.new_status.as_str(),
        AlertEvent::Test => "test",
        AlertEvent::RegionImpaired | AlertEvent::RegionRecovered => "region",
    }
}

/// The summary line: "Alert storm: 23 changes (18 DOWN, 3 DEGRADED, 2 UP)".
fn title(alerts: &[Alert]) -> String {
    let count = |status: &str| alerts.iter().filter(|a| now_is(a) == status).count();
    let mut parts = Vec::new();
    let mut named = 0;
    for status in ["DOWN", "DEGRADED", "UP"] {
        let n = count(status);
        named += n;
        if n > 0 {
            parts.push(format!("{n} {status}"));
        }
    }
    let other = alerts.len() - named;
    if other > 0 {
        parts.push(format!("{other} other"));
    }
    format!(
        "Alert storm: {} changes ({})",
        alerts.len(),
        parts.join(", ")
    )
}

/// One line per alert (`shown` of them), then the rest named on one line.
fn lines(alerts: &[Alert], shown: usize) -> Vec<String> {
    let mut lines: Vec<String> = alerts
        .iter()
        .take(shown)
        .map(|a| format!("{} (at {})", a.headline(), to_rfc3339(a.at)))
        .collect();
    if alerts.len() > shown {
        let names: Vec<String> = alerts[shown..]
            .iter()
            .map(|a| format!("{} ({})", a.service_name, now_is(a)))
            .collect();
        lines.push(format!(
            "and {} more: {}",
            alerts.len() - shown,
            names.join(", ")
        ));
    }
    lines
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The grouped delivery of `alerts` (at least one) for `config`.
pub fn render_group(config: &ChannelConfig, alerts: &[Alert], now_s: i64) -> Option<Delivery> {
    let first = alerts.first()?;
    let title = title(alerts);
    let single = render(config, first, now_s);
    let lines = lines(
        alerts,
        match single {
            Delivery::Mail(_) => alerts.len(),
            Delivery::Http(_) => MAX_LINES,
        },
    );
    let (url, headers) = match &single {
        Delivery::Http(r) => (r.url.clone(), r.headers.clone()),
        Delivery::Mail(_) => {
            return Some(Delivery::Mail(Mail {
                subject: format!("[healthmon] {title}").replace(['\r', '\n'], " "),
                body: format!(
                    "{title}\n\n{}\n\nDelivery {} from healthmon.\n",
                    lines.join("\n"),
                    group_id(alerts)
                ),
            }));
        }
    };
    let http = |body: Value, headers: Vec<(String, String)>| {
        Some(Delivery::Http(HttpRequest {
            url: url.clone(),
            headers,
            body: body.to_string().into_bytes(),
        }))
    };
    match config {
        ChannelConfig::Webhook { secret, .. } => {
            let items: Vec<Value> = alerts
                .iter()
                .filter_map(|a| serde_json::from_slice(&webhook_body(a)).ok())
                .collect();
            let body = json!({
                "id": group_id(alerts),
                "event": "storm",
                "count": alerts.len(),
                "at": to_rfc3339(now_s * 1000),
                "alerts": items,
            })
            .to_string()
            .into_bytes();
            let mut headers = vec![
                ("X-Healthmon-Delivery".to_owned(), group_id(alerts)),
                ("X-Healthmon-Timestamp".to_owned(), now_s.to_string()),
            ];
            if let Some(secret) = secret {
                headers.push((
                    "X-Healthmon-Signature".to_owned(),
                    signature(secret.expose().as_bytes(), now_s, &body),
                ));
            }
            Some(Delivery::Http(HttpRequest { url, headers, body }))
        }
        ChannelConfig::Slack { .. } => {
            let text = format!(
                "{}\n{}",
                escape_html(&title),
                lines
                    .iter()
                    .map(|l| format!("• {}", escape_html(l)))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            http(json!({"text": fit(text, SLACK_TEXT)}), headers)
        }
        ChannelConfig::Discord { .. } => {
            let mut content = format!("**{title}**\n{}", lines.join("\n"));
            if content.chars().count() > 1_990 {
                content = content.chars().take(1_990).collect::<String>() + "…";
            }
            http(
                json!({
                    "username": "healthmon",
                    "allowed_mentions": {"parse": []},
                    "content": content,
                }),
                headers,
            )
        }
        ChannelConfig::Teams { .. } => {
            let mut body = vec![
                json!({"type": "TextBlock", "size": "Large", "weight": "Bolder",
                "wrap": true, "color": "Attention", "text": title}),
            ];
            body.extend(lines.iter().map(
                |l| json!({"type": "TextBlock", "wrap": true, "text": fit(l.clone(), TEAMS_LINE)}),
            ));
            http(
                json!({
                    "type": "message",
                    "attachments": [{
                        "contentType": "application/vnd.microsoft.card.adaptive",
                        "content": {
                            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard",
                            "version": "1.4",
                            "body": body,
                        }
                    }]
                }),
                headers,
            )
        }
        ChannelConfig::Ntfy { topic, .. } => http(
            json!({
                "topic": topic,
                "title": title,
                "message": fit(lines.join("\n"), NTFY_MESSAGE),
                "priority": 5,
                "tags": ["rotating_light", "healthmon"],
            }),
            headers,
        ),
        ChannelConfig::Telegram { chat_id, .. } => {
            // Cut before escaping, so no entity is cut in half.
            let text = format!(
                "<b>{}</b>\n{}",
                escape_html(&title),
                escape_html(&fit(lines.join("\n"), TELEGRAM_TEXT))
            );
            http(
                json!({"chat_id": chat_id, "text": text, "parse_mode": "HTML",
                       "disable_web_page_preview": true}),
                headers,
            )
        }
        ChannelConfig::Pagerduty { .. } | ChannelConfig::Email { .. } => Some(single),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::channel::Secret;
    use crate::alert::sign::verify;
    use crate::alert::tests::down_alert;
    use crate::domain::Status;

    fn alerts(n: usize) -> Vec<Alert> {
        (0..n)
            .map(|i| {
                let mut a = down_alert();
                a.id = 100 + i as i64;
                a.service_name = format!("svc-{i}");
                if i % 4 == 3 {
                    a.event = AlertEvent::Up;
                    (a.old_status, a.new_status) = (Status::Down, Status::Up);
                    a.since = a.at - 60_000;
                }
                a
            })
            .collect()
    }

    #[test]
    fn a_webhook_storm_is_one_signed_body_listing_every_alert() {
        let config = ChannelConfig::Webhook {
            url: "https://hooks.example/in".into(),
            secret: Some(Secret::new("s3cret")),
            api_base: None,
        };
        let group = alerts(30);
        let Some(Delivery::Http(r)) = render_group(&config, &group, 1_700_000_000) else {
            panic!("not an HTTP delivery");
        };
        assert_eq!(r.url, "https://hooks.example/in");
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(header("X-Healthmon-Delivery"), "storm-100-30");
        assert!(verify(
            b"s3cret",
            1_700_000_000,
            &r.body,
            &header("X-Healthmon-Signature")
        ));
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["event"], "storm");
        assert_eq!(body["count"], 30);
        let items = body["alerts"].as_array().unwrap();
        assert_eq!(items.len(), 30);
        // Each listed alert keeps the single alert's shape.
        assert_eq!(items[0]["id"], 100);
        assert_eq!(items[0]["event"], "down");
        assert_eq!(items[3]["event"], "up");
        assert_eq!(items[0]["service"]["name"], "api");
    }

    #[test]
    fn chat_storms_list_a_bounded_number_of_lines() {
        let config = ChannelConfig::Slack {
            url: Secret::new("https://hooks.slack.com/services/T/B/x"),
            api_base: None,
        };
        let Some(Delivery::Http(r)) = render_group(&config, &alerts(40), 1) else {
            panic!("not an HTTP delivery");
        };
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(
            text.starts_with("Alert storm: 40 changes (30 DOWN, 10 UP)"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1 + MAX_LINES + 1, "{text}");
        // The rest are named, every one of them.
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("• and 15 more: svc-25 (DOWN)"), "{text}");
        assert!(last.ends_with("svc-39 (UP)"), "{text}");
        assert!(text.contains("svc-0 is DOWN (timeout)"), "{text}");
    }

    #[test]
    fn degraded_changes_are_counted_and_named_as_what_the_service_is_now() {
        let mut group = alerts(4);
        group[1].event = AlertEvent::Degraded;
        (group[1].old_status, group[1].new_status) = (Status::Up, Status::Degraded);
        group[1].error = Some("cert_expiry: the certificate expires in 3 days".into());
        // Back from DOWN, but slow: an `up` that leaves it DEGRADED.
        (group[3].old_status, group[3].new_status) = (Status::Down, Status::Degraded);
        assert_eq!(title(&group), "Alert storm: 4 changes (2 DOWN, 2 DEGRADED)");
        let named = lines(&group, 1);
        assert_eq!(
            named[1],
            "and 3 more: svc-1 (DEGRADED), svc-2 (DOWN), svc-3 (DEGRADED)"
        );
        let all = lines(&group, 4).join("\n");
        assert!(all.contains("svc-1 is DEGRADED (cert_expiry)"), "{all}");
    }

    #[test]
    fn a_huge_storm_is_cut_to_the_kinds_limit() {
        let telegram = ChannelConfig::parse(
            "telegram",
            &json!({"bot_token": "123:abc", "chat_id": "42"}),
        )
        .unwrap();
        let Some(Delivery::Http(r)) = render_group(&telegram, &alerts(500), 1) else {
            panic!("not an HTTP delivery");
        };
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(text.chars().count() <= 4_096, "{}", text.chars().count());
        assert!(text.ends_with('…'), "{text}");
    }

    #[test]
    fn pagerduty_is_never_grouped_and_mail_gets_one_summary() {
        let pd = ChannelConfig::Pagerduty {
            api_base: "https://events.pagerduty.com".into(),
            routing_key: Secret::new("k"),
        };
        assert!(!groups(&pd));
        let mail = ChannelConfig::parse(
            "email",
            &json!({"host": "smtp.example", "from": "hm@example.com", "to": ["ops@example.com"]}),
        )
        .unwrap();
        assert!(groups(&mail));
        let Some(Delivery::Mail(m)) = render_group(&mail, &alerts(3), 1) else {
            panic!("not a mail");
        };
        assert_eq!(m.subject, "[healthmon] Alert storm: 3 changes (3 DOWN)");
        assert!(m.body.contains("svc-2 is DOWN"), "{}", m.body);
        // Mail lists every alert on its own line, however many.
        let Some(Delivery::Mail(m)) = render_group(&mail, &alerts(60), 1) else {
            panic!("not a mail");
        };
        for i in 0..60 {
            assert!(
                m.body
                    .lines()
                    .any(|l| l.starts_with(&format!("svc-{i} is "))),
                "svc-{i}: {}",
                m.body
            );
        }
        assert!(!m.body.contains("more:"), "{}", m.body);
    }
}
