//! The PostgreSQL backend: diesel-async's `AsyncPgConnection` (tokio-postgres
//! underneath, no libpq) behind deadpool. Migrations are embedded and run at
//! start under an advisory lock, so processes starting together take turns
//! instead of failing.

use super::models;
use super::pg_connect::Connector;
use super::schema::{channels, services, state_changes};
use super::{Recorded, StoreError};
use crate::domain::plan::{self, History, Logged};
use crate::domain::time::Millis;
use crate::domain::{CheckResult, ServiceId};
use diesel::dsl::max;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;
use std::collections::HashMap;
use std::time::Duration;

/// The pool of PostgreSQL connections.
pub type PgPool = Pool<AsyncPgConnection>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Advisory-lock keys; arbitrary, fixed, and distinct per purpose.
pub const MIGRATION_LOCK: i64 = 0x6865_616c_7468_0001;
/// Held by the active scheduler.
pub const SCHEDULER_LOCK: i64 = 0x6865_616c_7468_0002;
/// Held by the process that runs log maintenance (rollups, retention).
pub const LOG_MAINTENANCE_LOCK: i64 = 0x6865_616c_7468_0003;
/// Held by the one alert sender of a fleet.
pub const ALERT_SENDER_LOCK: i64 = 0x6865_616c_7468_0004;

/// Longest wait for a new connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a connection outside the pool, with a timeout.
pub async fn connect(connector: &Connector) -> Result<AsyncPgConnection, StoreError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(StoreError::Open(e.to_string())),
        Err(_) => Err(StoreError::Open(format!(
            "{}: no connection within {CONNECT_TIMEOUT:?}",
            connector.describe()
        ))),
    }
}

/// Runs pending migrations (one process at a time) and returns a pool.
pub async fn open(connector: &Connector, pool_size: usize) -> Result<PgPool, StoreError> {
    let mut conn = connect(connector).await?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .execute(&mut conn)
        .await?;
    let mut harness = AsyncMigrationHarness::new(conn);
    // block_in_place inside: needs the multi-thread runtime, which main uses.
    let migrated = harness
        .run_pending_migrations(MIGRATIONS)
        .map(|_| ())
        .map_err(|e| StoreError::Migration(e.to_string()));
    let mut conn = harness.into_inner();
    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .execute(&mut conn)
        .await?;
    migrated?;
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    let pooled = connector.clone();
    // The pool's own URL is unused: every connection comes from the
    // connector, TLS settings and all.
    config.custom_setup = Box::new(move |_url| {
        let connector = pooled.clone();
        async move { connector.connect().await }.boxed()
    });
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config("postgres://", config);
    Pool::builder(manager)
        .max_size(pool_size)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| StoreError::Open(e.to_string()))
}

#[derive(diesel::QueryableByName)]
struct LoggedRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    service_id: i64,
    #[diesel(sql_type = BigInt)]
    scheduled_at: i64,
    #[diesel(sql_type = Text)]
    region: String,
}

#[derive(diesel::QueryableByName)]
struct Round {
    #[diesel(sql_type = BigInt)]
    service_id: i64,
    #[diesel(sql_type = BigInt)]
    scheduled_at: i64,
    #[diesel(sql_type = Text)]
    status: String,
}

/// Records a batch in one transaction of a few statements, whatever its
/// size: the batch's service rows are locked (in id order, so two recorders
/// never deadlock) and read, the logs inserted from arrays with `unnest`,
/// the newest rounds read for the services whose thresholds need them (one
/// statement), then the statuses, transitions and outbox rows
/// [`plan::plan`] decides are written the same way (the channels read once
/// for a batch that alerts). The row locks make the status update a
/// compare-and-set: a second recorder waits for this one and then judges
/// against its result. See [`super::Store::record_batch`] for the promises.
pub async fn record(
    conn: &mut AsyncPgConnection,
    results: &[CheckResult],
    now: Millis,
) -> Result<Recorded, diesel::result::Error> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let ids: Vec<i64> = plan::service_ids(results)
            .into_iter()
            .map(ServiceId::get)
            .collect();
        let rows: Vec<models::CurrentRow> = services::table
            .filter(services::id.eq_any(&ids))
            .select(models::CurrentRow::as_select())
            .order(services::id.asc())
            .for_update()
            .load(conn)
            .await?;
        let current = models::current(rows);
        let fresh: Vec<&CheckResult> = plan::fresh(results, &current);
        let region = |r: &CheckResult| {
            models::encode_region(current.get(&r.service_id).and_then(|c| c.log_region(r)))
                .to_owned()
        };
        let logged: HashMap<(i64, i64, String), i64> = if fresh.is_empty() {
            HashMap::new()
        } else {
            diesel::sql_query(
                "INSERT INTO health_logs \
                 (service_id, status, latency_ms, status_code, error, scheduled_at, checked_at, \
                 cert_expires_at, region) \
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int4[], \
                 $5::text[], $6::int8[], $7::int8[], $8::int8[], $9::text[]) \
                 ON CONFLICT (service_id, scheduled_at, region) DO NOTHING \
                 RETURNING id, service_id, scheduled_at, region",
            )
            .bind::<Array<BigInt>, _>(fresh.iter().map(|r| r.service_id.get()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(fresh.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(fresh.iter().map(|r| r.latency_ms).collect::<Vec<_>>())
            .bind::<Array<Nullable<Integer>>, _>(
                fresh
                    .iter()
                    .map(|r| r.status_code.map(i32::from))
                    .collect::<Vec<_>>(),
            )
            .bind::<Array<Nullable<Text>>, _>(
                fresh.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>(),
            )
            .bind::<Array<BigInt>, _>(fresh.iter().map(|r| r.scheduled_at).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(fresh.iter().map(|r| r.checked_at).collect::<Vec<_>>())
            .bind::<Array<Nullable<BigInt>>, _>(
                fresh.iter().map(|r| r.cert_expires_at).collect::<Vec<_>>(),
            )
            .bind::<Array<Text>, _>(fresh.iter().map(|r| region(r)).collect::<Vec<_>>())
            .load::<LoggedRow>(conn)
            .await?
            .into_iter()
            .map(|l| ((l.service_id, l.scheduled_at, l.region), l.id))
            .collect()
        };
        let logged: Vec<Logged> = fresh
            .into_iter()
            .filter_map(|r| {
                let id = logged.get(&(r.service_id.get(), r.scheduled_at, region(r)))?;
                Some(Logged {
                    result: r,
                    log_id: Some(*id),
                })
            })
            .collect();
        let wanted = plan::history_wanted(&current, logged.iter().map(|l| l.result));
        let mut history = History::new();
        if !wanted.is_empty() {
            // Each service's newest rounds down its (service_id,
            // scheduled_at) index, in one statement.
            let rounds: Vec<Round> = diesel::sql_query(
                "SELECT l.service_id, l.scheduled_at, l.status \
                 FROM unnest($1::int8[], $2::int8[]) AS w(id, n) \
                 CROSS JOIN LATERAL (SELECT h.service_id, h.scheduled_at, h.status \
                 FROM health_logs h WHERE h.service_id = w.id AND h.region = '' \
                 ORDER BY h.scheduled_at DESC LIMIT w.n) AS l",
            )
            .bind::<Array<BigInt>, _>(wanted.iter().map(|(id, _)| id.get()).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(wanted.iter().map(|(_, n)| *n).collect::<Vec<_>>())
            .load(conn)
            .await?;
            let mut by_service: HashMap<ServiceId, Vec<(i64, String)>> = HashMap::new();
            for r in rounds {
                by_service
                    .entry(ServiceId(r.service_id))
                    .or_default()
                    .push((r.scheduled_at, r.status));
            }
            for (id, mut rows) in by_service {
                rows.sort_unstable_by_key(|(at, _)| std::cmp::Reverse(*at));
                history.insert(id, models::rounds(rows));
            }
        }
        let plan = plan::plan(current, logged, &history);
        if !plan.updates.is_empty() {
            let u = &plan.updates;
            diesel::sql_query(
                "UPDATE services AS s SET last_status = u.status, last_check = u.checked_at, \
                 last_latency_ms = u.latency_ms, last_scheduled_at = u.scheduled_at \
                 FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::int8[]) \
                 AS u(id, status, checked_at, latency_ms, scheduled_at) WHERE s.id = u.id",
            )
            .bind::<Array<BigInt>, _>(u.iter().map(|u| u.service_id.get()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(u.iter().map(|u| u.status.as_str()).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(u.iter().map(|u| u.checked_at).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(u.iter().map(|u| u.latency_ms).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(u.iter().map(|u| u.scheduled_at).collect::<Vec<_>>())
            .execute(conn)
            .await?;
        }
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
                .load(conn)
                .await?;
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
                    .load(conn)
                    .await?
            };
            models::outbox_rows(&plan, found, since)
        };
        if !plan.transitions.is_empty() {
            let t = &plan.transitions;
            diesel::sql_query(
                "INSERT INTO state_changes \
                 (service_id, old_status, new_status, latency_ms, scheduled_at, changed_at) \
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[], \
                 $5::int8[], $6::int8[]) \
                 ON CONFLICT (service_id, scheduled_at) DO NOTHING",
            )
            .bind::<Array<BigInt>, _>(t.iter().map(|t| t.service_id.get()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(t.iter().map(|t| t.old.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(t.iter().map(|t| t.new.as_str()).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(t.iter().map(|t| t.latency_ms).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(t.iter().map(|t| t.scheduled_at).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(t.iter().map(|t| t.changed_at).collect::<Vec<_>>())
            .execute(conn)
            .await?;
        }
        let alerts = if outbox.is_empty() {
            0
        } else {
            let a = &outbox;
            diesel::sql_query(
                "INSERT INTO alerts (service_id, channel_id, event, old_status, new_status, \
                 scheduled_at, payload, created_at, next_attempt_at) \
                 SELECT s, c, e, o, n, at, p, $8, $8 FROM unnest($1::int8[], $2::int8[], \
                 $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[]) \
                 AS a(s, c, e, o, n, at, p) \
                 ON CONFLICT (service_id, channel_id, event, scheduled_at) DO NOTHING",
            )
            .bind::<Array<BigInt>, _>(a.iter().map(|a| a.service_id.get()).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(a.iter().map(|a| a.channel_id.get()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(a.iter().map(|a| a.event.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(a.iter().map(|a| a.old.as_str()).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(a.iter().map(|a| a.new.as_str()).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(a.iter().map(|a| a.scheduled_at).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(a.iter().map(models::payload_json).collect::<Vec<_>>())
            .bind::<BigInt, _>(now)
            .execute(conn)
            .await?
        };
        Ok(Recorded {
            events: plan.events,
            retries: plan.retries,
            alerts,
        })
    })
    .await
}
