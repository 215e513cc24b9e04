//! Log maintenance fixtures shared by the embedded (tests/api/maintenance.rs)
//! and distributed (tests/fleet.rs) tests: a service's history written
//! straight into the store, partly beyond `logs.retention_days`, and what
//! the API must show once maintenance ran over it.

use super::{Monitor, eventually};
use serde_json::Value;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// Rollups and retention every second, logs kept 7 days.
pub const MAINTAIN_OFTEN: [(&str, &str); 3] = [
    ("HEALTHMON__LOGS__RETENTION_DAYS", "7"),
    ("HEALTHMON__LOGS__ROLLUP_INTERVAL_S", "1"),
    ("HEALTHMON__LOGS__MAINTENANCE_INTERVAL_S", "1"),
];

/// SQL, the same for PostgreSQL and SQLite, that writes `n` logs of
/// `service`, one a minute from `from` (epoch ms): latency `i + 1` ms for the
/// `i`-th, DOWN when `i` is a multiple of `down_every` (0: never).
pub fn insert_logs_sql(service: i64, from: i64, n: i64, down_every: i64) -> String {
    let down = if down_every > 0 {
        format!("i % {down_every} = 0")
    } else {
        "1 = 0".to_owned()
    };
    format!(
        "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < {n} - 1) \
         INSERT INTO health_logs \
         (service_id, status, latency_ms, status_code, error, scheduled_at, checked_at) \
         SELECT {service}, CASE WHEN {down} THEN 'DOWN' ELSE 'UP' END, i + 1, 200, NULL, \
         {from} + i * 60000, {from} + i * 60000 FROM g"
    )
}

/// A service's history: 40 logs in an hour ten days ago (every tenth DOWN),
/// beyond the 7 days [`MAINTAIN_OFTEN`] keeps, and 30 in an hour two days
/// ago.
pub struct History {
    pub service: i64,
    pub expired_hour: i64,
    pub kept_hour: i64,
}

impl History {
    pub fn new(service: i64) -> History {
        let now = chrono::Utc::now().timestamp_millis();
        let hour = |t: i64| t - t.rem_euclid(HOUR_MS);
        History {
            service,
            expired_hour: hour(now - 10 * DAY_MS),
            kept_hour: hour(now - 2 * DAY_MS),
        }
    }

    /// The statements that write it (each may be its own transaction).
    pub fn sql(&self) -> [String; 2] {
        [
            insert_logs_sql(self.service, self.expired_hour, 40, 10),
            insert_logs_sql(self.service, self.kept_hour, 30, 0),
        ]
    }

    /// Waits until `m` shows what maintenance leaves of it: exactly the 30
    /// recent logs, and both hours in the rollups with their counts (the
    /// deleted hour's included).
    pub async fn assert_maintained(&self, m: &Monitor) {
        let id = self.service;
        let shown = eventually("only the recent logs left", || async {
            let logs = m.logs(id, "limit=1000").await;
            (logs.len() == 30).then_some(logs)
        })
        .await;
        assert!(
            shown
                .iter()
                .all(|l| (self.kept_hour..self.kept_hour + HOUR_MS)
                    .contains(&millis(&l["checked_at"]))),
            "{shown:?}"
        );
        // The pass reports once it has also looked at the rollups.
        eventually("a maintenance pass to report the 40 deleted", || async {
            m.log_text().contains("deleted_logs=40").then_some(())
        })
        .await;
        let uptime = eventually("both hours rolled up", || async {
            let (status, uptime) = m.get(&format!("/services/{id}/uptime?hours=2160")).await;
            assert_eq!(status, 200, "{uptime}");
            (uptime["totals"]["checks"] == 70).then_some(uptime)
        })
        .await;
        let hours: Vec<(i64, &Value)> = uptime["hourly"]
            .as_array()
            .expect("hourly")
            .iter()
            .map(|h| (millis(&h["hour_start"]), h))
            .collect();
        assert_eq!(hours.len(), 2, "{uptime}");
        let (start, expired) = hours[0];
        assert_eq!(start, self.expired_hour, "{uptime}");
        assert_eq!(
            (
                &expired["checks"],
                &expired["failures"],
                &expired["max_latency_ms"],
                &expired["mean_latency_ms"]
            ),
            (
                &Value::from(40),
                &Value::from(4),
                &Value::from(40),
                &Value::from(20.5)
            ),
            "{uptime}"
        );
        let (start, kept) = hours[1];
        assert_eq!(start, self.kept_hour, "{uptime}");
        assert_eq!(
            (&kept["checks"], &kept["failures"], &kept["max_latency_ms"]),
            (&Value::from(30), &Value::from(0), &Value::from(30)),
            "{uptime}"
        );
    }
}

/// Registers a paused service (its history is all the test writes).
pub async fn register_history(m: &Monitor) -> i64 {
    let mut body = super::service("history", "http://127.0.0.1:9/", 60);
    body["paused"] = Value::Bool(true);
    m.register(body).await["id"].as_i64().expect("id")
}

/// Waits until `live` (a service checked every second) has a few logs,
/// pauses it, and waits until its rollups count every one of them.
pub async fn assert_live_checks_rolled_up(m: &Monitor, live: i64) {
    eventually("three live checks", || async {
        (m.logs(live, "limit=10").await.len() >= 3).then_some(())
    })
    .await;
    let (status, body) = m
        .send_json(
            reqwest::Method::PATCH,
            &format!("/services/{live}"),
            serde_json::json!({"paused": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("every live check rolled up", || async {
        let logged = m.logs(live, "limit=1000").await.len() as i64;
        let (_, uptime) = m.get(&format!("/services/{live}/uptime")).await;
        (uptime["totals"]["checks"].as_i64() == Some(logged)).then_some(())
    })
    .await;
}

/// An RFC 3339 time as epoch milliseconds.
pub fn millis(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().expect("a time"))
        .expect("RFC 3339")
        .timestamp_millis()
}
