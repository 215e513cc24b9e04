//! The SQLite backend: a file in WAL mode behind a deadpool of
//! `SyncConnectionWrapper`s, migrations embedded and run at start.

use super::Recorded;
use super::StoreError;
use super::models::{self, NewAlertRow, NewHealthLog, NewStateChange};
use super::schema::{alerts as schema_alerts, channels, health_logs, services, state_changes};
use crate::domain::plan::{self, History, Logged, StatusUpdate};
use crate::domain::time::Millis;
use crate::domain::{CheckResult, ServiceId};
use diesel::connection::SimpleConnection;
use diesel::dsl::max;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;
use std::path::Path;

/// An async SQLite connection (blocking calls run on tokio's blocking pool).
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;
/// The pool of SQLite connections.
pub type SqlitePool = Pool<SqliteConn>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Per-connection settings. WAL lets readers run beside the one writer;
/// `synchronous=NORMAL` is durable against a process crash (kill -9) and only
/// risks the last transactions on power loss; `busy_timeout` makes a second
/// writer wait instead of failing. It comes first: `journal_mode` needs a
/// lock, and without a busy handler a new pool connection failed at once
/// ("database is locked", a 503 to the client) whenever the writer held the
/// file at that moment, which a loaded machine made frequent.
const PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

/// The pools of one database file: readers, and the one writer.
pub struct SqlitePools {
    /// For reads; WAL lets them run beside the writer.
    pub readers: SqlitePool,
    /// One connection for every write. SQLite lets one transaction write
    /// at a time; queueing writes here, in order, instead of in SQLite's
    /// busy handler (which polls, and can starve a writer past its timeout
    /// while the recorder keeps the lock busy) makes a write wait its turn
    /// rather than fail with "database is locked".
    pub writer: SqlitePool,
}

/// Opens (creating if needed) the database file, runs pending migrations
/// and returns its pools.
pub async fn open(path: &Path, pool_size: usize) -> Result<SqlitePools, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Open(format!("cannot create {}: {e}", dir.display())))?;
    }
    let url = path.to_string_lossy().into_owned();
    let migrate_url = url.clone();
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        let mut conn = SqliteConnection::establish(&migrate_url)
            .map_err(|e| StoreError::Open(format!("{migrate_url}: {e}")))?;
        conn.batch_execute(PRAGMAS)?;
        conn.run_pending_migrations(MIGRATIONS)
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(())
    })
    .await
    .map_err(|e| StoreError::Open(format!("migration task failed: {e}")))??;
    Ok(SqlitePools {
        readers: pool(&url, pool_size)?,
        writer: pool(&url, 1)?,
    })
}

fn pool(url: &str, size: usize) -> Result<SqlitePool, StoreError> {
    let mut config = ManagerConfig::<SqliteConn>::default();
    config.custom_setup = Box::new(|url| {
        async move {
            let mut conn = SqliteConn::establish(url).await?;
            conn.batch_execute(PRAGMAS)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<SqliteConn>::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(size.max(1))
        .build()
        .map_err(|e| StoreError::Open(e.to_string()))
}

/// Records a batch on the writer connection, in one `IMMEDIATE` transaction
/// (the write lock is taken at `BEGIN`, so nothing read can go stale), all
/// of it on one blocking thread: a few microseconds a statement instead of
/// a thread hand-off each. See [`super::Store::record`] for the promises.
pub fn record(
    conn: &mut SqliteConnection,
    results: &[CheckResult],
    now: Millis,
) -> QueryResult<Recorded> {
    conn.immediate_transaction(|conn| {
        let ids: Vec<i64> = plan::service_ids(results)
            .into_iter()
            .map(ServiceId::get)
            .collect();
        let rows: Vec<models::CurrentRow> = services::table
            .filter(services::id.eq_any(&ids))
            .select(models::CurrentRow::as_select())
            .load(conn)?;
        let current = models::current(rows);
        let logged = insert_logs(conn, plan::fresh(results, &current), &current)?;
        let mut history = History::new();
        for (service, n) in plan::history_wanted(&current, logged.iter().map(|l| l.result)) {
            let rounds: Vec<(i64, String)> = health_logs::table
                .filter(health_logs::service_id.eq(service.get()))
                // Rounds only: a regional service's votes are not rounds.
                .filter(health_logs::region.eq(""))
                .order(health_logs::scheduled_at.desc())
                .limit(n)
                .select((health_logs::scheduled_at, health_logs::status))
                .load(conn)?;
            history.insert(service, models::rounds(rounds));
        }
        let plan = plan::plan(current, logged, &history);
        set_statuses(conn, &plan.updates)?;
        // Read before this batch's transitions are in: an `up` after a DOWN
        // (or DEGRADED) recorded earlier needs when that began, not a change
        // later in the batch.
        let outbox = if plan.alerts.is_empty() {
            Vec::new()
        } else {
            let listed: Vec<i64> = plan
                .listed_channels()
                .into_iter()
                .map(|c| c.get())
                .collect();
            let found: Vec<(i64, bool)> = channels::table
                .filter(
                    channels::all_services
                        .eq(true)
                        .or(channels::id.eq_any(&listed)),
                )
                .select((channels::id, channels::all_services))
                .load(conn)?;
            let since_ids: Vec<i64> = plan
                .since_wanted()
                .into_iter()
                .map(ServiceId::get)
                .collect();
            let since: Vec<models::SinceRow> = if since_ids.is_empty() {
                Vec::new()
            } else {
                state_changes::table
                    .filter(state_changes::service_id.eq_any(&since_ids))
                    .filter(state_changes::new_status.eq_any(models::ENDED_BY_UP))
                    .group_by((state_changes::service_id, state_changes::new_status))
                    .select((
                        state_changes::service_id,
                        state_changes::new_status,
                        max(state_changes::changed_at),
                    ))
                    .load(conn)?
            };
            models::outbox_rows(&plan, found, since)
        };
        for t in &plan.transitions {
            diesel::insert_into(state_changes::table)
                .values(NewStateChange::from(t))
                .on_conflict((state_changes::service_id, state_changes::scheduled_at))
                .do_nothing()
                .execute(conn)?;
        }
        let mut alerts = 0;
        for row in &outbox {
            alerts += diesel::insert_into(schema_alerts::table)
                .values(NewAlertRow::new(row, now))
                .on_conflict((
                    schema_alerts::service_id,
                    schema_alerts::channel_id,
                    schema_alerts::event,
                    schema_alerts::scheduled_at,
                ))
                .do_nothing()
                .execute(conn)?;
        }
        Ok(Recorded {
            events: plan.events,
            retries: plan.retries,
            alerts,
        })
    })
}

/// Most logs in one INSERT: 9 values a row stays far below SQLite's limit
/// of 32,766 bound values a statement.
const LOGS_PER_INSERT: usize = 1_000;

/// A log row as one multi-row INSERT takes it. `NewHealthLog` leaves a
/// `None` to the column's default, which SQLite's multi-row `VALUES` cannot
/// say, so diesel would send it a row at a time; a `NULL` is what the
/// default is anyway.
#[derive(Insertable)]
#[diesel(table_name = health_logs, treat_none_as_default_value = false)]
struct LogRow<'a> {
    service_id: i64,
    status: &'static str,
    latency_ms: i64,
    status_code: Option<i32>,
    error: Option<&'a str>,
    scheduled_at: i64,
    checked_at: i64,
    cert_expires_at: Option<i64>,
    region: &'a str,
}

impl<'a> From<NewHealthLog<'a>> for LogRow<'a> {
    fn from(n: NewHealthLog<'a>) -> Self {
        Self {
            service_id: n.service_id,
            status: n.status,
            latency_ms: n.latency_ms,
            status_code: n.status_code,
            error: n.error,
            scheduled_at: n.scheduled_at,
            checked_at: n.checked_at,
            cert_expires_at: n.cert_expires_at,
            region: n.region,
        }
    }
}

/// Inserts the logs of `fresh` (distinct by service, due time and region:
/// see [`plan::fresh`]) with one statement per [`LOGS_PER_INSERT`], and
/// returns those inserted, in `fresh`'s order, with their ids; a log
/// already there is skipped (`ON CONFLICT DO NOTHING`). One INSERT per log
/// had SQLite run 5,000 statements a second at 100,000 services, and diesel
/// build each one's SQL text to find it in its cache (BENCHMARKS.md "The
/// price of a check"). SQLite returns the inserted rows in no promised
/// order, so each comes back with its key.
fn insert_logs<'r>(
    conn: &mut SqliteConnection,
    fresh: Vec<&'r CheckResult>,
    current: &std::collections::HashMap<ServiceId, plan::Current>,
) -> QueryResult<Vec<Logged<'r>>> {
    let mut ids = std::collections::HashMap::with_capacity(fresh.len());
    for chunk in fresh.chunks(LOGS_PER_INSERT) {
        let rows: Vec<LogRow<'_>> = chunk
            .iter()
            .map(|r| {
                let region = current.get(&r.service_id).and_then(|c| c.log_region(r));
                LogRow::from(NewHealthLog::from_result(r, region))
            })
            .collect();
        let inserted: Vec<(i64, i64, i64, String)> = diesel::insert_into(health_logs::table)
            .values(&rows)
            .on_conflict((
                health_logs::service_id,
                health_logs::scheduled_at,
                health_logs::region,
            ))
            .do_nothing()
            .returning((
                health_logs::id,
                health_logs::service_id,
                health_logs::scheduled_at,
                health_logs::region,
            ))
            .get_results(conn)?;
        for (id, service, scheduled_at, region) in inserted {
            ids.insert((service, scheduled_at, region), id);
        }
    }
    Ok(fresh
        .into_iter()
        .filter_map(|r| {
            let region = current.get(&r.service_id).and_then(|c| c.log_region(r));
            let key = (
                r.service_id.get(),
                r.scheduled_at,
                models::encode_region(region).to_owned(),
            );
            ids.get(&key).map(|&id| Logged {
                result: r,
                log_id: Some(id),
            })
        })
        .collect())
}

/// Sets the status columns of every service in `updates` with one
/// statement. diesel prepares every UPDATE afresh (it never caches one), and
/// an UPDATE per check made SQLite parse and plan 5,000 statements a second
/// at 100,000 services: 2.4 % of the process's CPU, the largest single item
/// above the bare request (BENCHMARKS.md "The price of a check"). One
/// statement per batch is parsed once; PostgreSQL does the same with
/// `unnest`. Only integers and a status name go into the text.
fn set_statuses(conn: &mut SqliteConnection, updates: &[StatusUpdate]) -> QueryResult<()> {
    use std::fmt::Write as _;
    if updates.is_empty() {
        return Ok(());
    }
    // A service's last update wins, as it did with one UPDATE after another.
    let mut seen = std::collections::HashSet::with_capacity(updates.len());
    let mut sql = String::with_capacity(200 + updates.len() * 64);
    sql.push_str("WITH u (id, status, checked_at, latency_ms, scheduled_at) AS (VALUES ");
    for u in updates.iter().rev() {
        if !seen.insert(u.service_id) {
            continue;
        }
        if seen.len() > 1 {
            sql.push(',');
        }
        let _ = write!(
            sql,
            "({}, '{}', {}, {}, {})",
            u.service_id.get(),
            u.status.as_str().replace('\'', "''"),
            u.checked_at,
            u.latency_ms,
            u.scheduled_at
        );
    }
    sql.push_str(
        ") UPDATE services SET last_status = u.status, last_check = u.checked_at, \
         last_latency_ms = u.latency_ms, last_scheduled_at = u.scheduled_at \
         FROM u WHERE services.id = u.id",
    );
    diesel::sql_query(sql).execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]
    use super::*;
    use crate::domain::time::Seconds;
    use crate::domain::{ServiceSpec, Status};

    fn spec(name: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            url: "http://127.0.0.1:9/".into(),
            interval: Seconds(10),
            timeout: Seconds(5),
            timeout_follows_interval: false,
            paused: false,
            expected_statuses: None,
            failure_threshold: 1,
            success_threshold: 1,
            retry_interval: None,
            channels: Vec::new(),
            check: Default::default(),
            tags: Vec::new(),
            regions: Vec::new(),
            quorum: None,
        }
    }

    fn result(id: ServiceId, scheduled_at: i64, status: Status) -> CheckResult {
        CheckResult {
            service_id: id,
            scheduled_at,
            status,
            latency_ms: 7,
            status_code: (status == Status::Up).then_some(200),
            error: (status == Status::Down).then(|| "connect: connection refused".into()),
            checked_at: scheduled_at + 7,
            cert_expires_at: None,
            region: None,
        }
    }

    /// More logs than one INSERT takes, some already stored: each new one
    /// is stored once, and comes back with the id of its own row (the
    /// alerts' check snapshot carries it), whatever order SQLite returned
    /// the rows in.
    #[tokio::test]
    async fn logs_over_several_inserts_come_back_with_their_own_ids_and_repeats_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hm.db");
        let store = crate::store::Store::open(&crate::config::DatabaseUrl::Sqlite(path.clone()), 1)
            .await
            .unwrap();
        let a = store.create_service(&spec("a"), 0).await.unwrap().id;
        let b = store.create_service(&spec("b"), 0).await.unwrap().id;
        let mut conn = SqliteConnection::establish(&path.to_string_lossy()).unwrap();
        let rows: Vec<models::CurrentRow> = services::table
            .select(models::CurrentRow::as_select())
            .load(&mut conn)
            .unwrap();
        let (current, n) = (models::current(rows), LOGS_PER_INSERT + 300);
        let first: Vec<CheckResult> = (0..n as i64)
            .map(|i| result(if i % 2 == 0 { a } else { b }, 1000 * i, Status::Up))
            .collect();
        // Half of the first batch again, among as many new results.
        let second: Vec<CheckResult> = (n as i64 / 2..n as i64 + n as i64 / 2)
            .map(|i| result(if i % 2 == 0 { a } else { b }, 1000 * i, Status::Down))
            .collect();
        let mut logged_ids = Vec::new();
        for (batch, new) in [(&first, n), (&second, n - n / 2)] {
            let logged = insert_logs(&mut conn, batch.iter().collect(), &current).unwrap();
            assert_eq!(logged.len(), new, "each new result is logged once");
            let rows: std::collections::HashMap<i64, (i64, i64, String)> = health_logs::table
                .select((
                    health_logs::id,
                    (
                        health_logs::service_id,
                        health_logs::scheduled_at,
                        health_logs::status,
                    ),
                ))
                .load::<(i64, (i64, i64, String))>(&mut conn)
                .unwrap()
                .into_iter()
                .collect();
            for l in &logged {
                let id = l.log_id.expect("an inserted log has its id");
                assert_eq!(
                    rows[&id],
                    (
                        l.result.service_id.get(),
                        l.result.scheduled_at,
                        l.result.status.as_str().to_owned()
                    ),
                    "a log's id is its own row's"
                );
                logged_ids.push(id);
            }
        }
        let before = logged_ids.len();
        logged_ids.sort_unstable();
        logged_ids.dedup();
        assert_eq!(logged_ids.len(), before, "no two results share a log");
        let stored: i64 = health_logs::table.count().get_result(&mut conn).unwrap();
        assert_eq!(stored as usize, n + n - n / 2);
        // The skipped repeats kept what was first stored.
        let ups: i64 = health_logs::table
            .filter(health_logs::status.eq("UP"))
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(ups as usize, n);
    }
}
