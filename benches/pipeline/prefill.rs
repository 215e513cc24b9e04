//! `--prefill-days D`: retention measured on a store that has something to
//! delete (issue 19, point 4).
//!
//! After the services are registered, healthmon is stopped and the store is
//! filled with synthetic health logs for every registered service: `D` days
//! back from now, `--prefill-per-day R` rows per service and day (1), each
//! service's rows at its own phase within the step so deletion (oldest
//! first) moves across all services at once. Rows are inserted in bulk:
//! multi-row `INSERT`s of [`ROWS_PER_INSERT`], one transaction per
//! [`ROWS_PER_TRANSACTION`].
//!
//! The synthetic rows get negative ids. Rollups read logs by id above their
//! progress mark (never below 0) and retention deletes only logs at or below
//! it, so the synthetic rows count as logs rolled up long ago, as 30-day-old
//! logs of a monitor in steady state are, while the real logs of the run are
//! rolled up as usual. (Their hourly rollup rows are not synthesized: nothing
//! here reads them.)
//!
//! healthmon is then started again on the same store with
//! `logs.retention_days` = `--retention-days` (7): its maintenance pass runs
//! at start-up, so it deletes every synthetic row older than that while the
//! checks go on. The benchmark reads when the pass ended from its
//! "log maintenance done" line (`deleted_logs`, `elapsed_ms`); if it has not
//! ended by the time the window's checks are stored, it reports what was
//! deleted so far (synthetic rows left) over the time since the restart.
//! `rollup_backlog_logs` is how many logs were not rolled up yet then: a
//! pass rolls up until caught up before it deletes, and rolls up nothing
//! while it deletes.

use super::Store;
use std::time::Instant;

/// Rows in one `INSERT` statement.
pub const ROWS_PER_INSERT: usize = 500;
/// Rows in one transaction.
pub const ROWS_PER_TRANSACTION: usize = 20_000;
const DAY_MS: i64 = 86_400_000;

/// What to pre-fill.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub days: u64,
    pub per_day: u64,
    pub retention_days: u64,
}

/// What the pre-fill did.
pub struct Filled {
    /// Rows inserted.
    pub rows: i64,
    /// Rows older than the retention at the time of the insert.
    pub rows_due: i64,
    /// Seconds the insert took.
    pub secs: f64,
}

impl Plan {
    fn step_ms(&self) -> i64 {
        DAY_MS / self.per_day.max(1) as i64
    }

    fn rows_per_service(&self) -> i64 {
        (self.days * self.per_day) as i64
    }
}

/// One row's values, as SQL text (integers and fixed literals only).
fn row(plan: &Plan, now: i64, service: i64, k: i64, j: i64) -> String {
    let step = plan.step_ms();
    // The service's phase within a step, spread by a prime stride.
    let phase = (k * 7_919) % step;
    let checked_at = now - (j + 1) * step - phase;
    let id = -(1 + k * plan.rows_per_service() + j);
    // One check in 20 failed, as a monitored fleet's history would have.
    if (k + j) % 20 == 0 {
        format!(
            "({id},{service},'DOWN',2000,NULL,'timeout: no complete response within 2000 ms',{},{checked_at})",
            checked_at - 2_005
        )
    } else {
        let latency = 3 + (k * 31 + j * 17) % 60;
        format!(
            "({id},{service},'UP',{latency},200,NULL,{},{checked_at})",
            checked_at - latency - 2
        )
    }
}

/// The transactions that insert the rows for `services`, one SQL text each.
fn transactions(plan: Plan, now: i64, services: Vec<i64>) -> impl Iterator<Item = String> {
    let per_service = plan.rows_per_service();
    let total = services.len() as i64 * per_service;
    let mut next = 0i64;
    std::iter::from_fn(move || {
        if next >= total {
            return None;
        }
        let end = (next + ROWS_PER_TRANSACTION as i64).min(total);
        let mut sql = String::with_capacity((end - next) as usize * 90 + 256);
        sql.push_str("BEGIN;\n");
        let mut in_insert = 0;
        for n in next..end {
            let (k, j) = (n / per_service, n % per_service);
            if in_insert == 0 {
                sql.push_str(
                    "INSERT INTO health_logs \
                     (id, service_id, status, latency_ms, status_code, error, scheduled_at, checked_at) VALUES ",
                );
            } else {
                sql.push(',');
            }
            sql.push_str(&row(&plan, now, services[k as usize], k, j));
            in_insert += 1;
            if in_insert == ROWS_PER_INSERT {
                sql.push_str(";\n");
                in_insert = 0;
            }
        }
        if in_insert > 0 {
            sql.push_str(";\n");
        }
        sql.push_str("COMMIT;\n");
        next = end;
        Some(sql)
    })
}

/// Fills `store` (healthmon stopped) for every registered service.
pub async fn fill(store: &Store, plan: Plan) -> Result<Filled, String> {
    let services = store.service_ids().await?;
    if services.is_empty() {
        return Err("prefill: no services registered".into());
    }
    let now = super::now_ms();
    let started = Instant::now();
    let rows = services.len() as i64 * plan.rows_per_service();
    let cutoff = now - plan.retention_days as i64 * DAY_MS;
    // Rows j with checked_at = now - (j+1)*step - phase < cutoff: counted
    // exactly, phase by phase.
    let step = plan.step_ms();
    let rows_due: i64 = (0..services.len() as i64)
        .map(|k| {
            let phase = (k * 7_919) % step;
            (0..plan.rows_per_service())
                .filter(|j| now - (j + 1) * step - phase < cutoff)
                .count() as i64
        })
        .sum();
    store.execute_all(transactions(plan, now, services)).await?;
    Ok(Filled {
        rows,
        rows_due,
        secs: started.elapsed().as_secs_f64(),
    })
}
