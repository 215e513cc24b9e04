//! `--regions N [--quorum Q]` (distributed mode only; issue 16 point 7):
//! every service lists the regions `r1` .. `rN` (and `quorum` Q, or the
//! service's default, a majority), and the fleet is 1 `api,scheduler` + one
//! `--role worker --region rK` process per region. A round is then N checks
//! (votes, logged with their region) and one verdict (logged without a
//! region, `region = ''`) that the recorder writes when the round closes.
//!
//! The run's usual figures count checks, that is votes: `checks`,
//! `checks_due` (N a round), `requests_at_targets` and the sanity check
//! (UP votes against requests) leave the verdicts out. The `regions` object
//! adds, for the rounds due in the window:
//! - `rounds` (verdicts stored), `rounds_due` and `rounds_per_s`;
//! - `verdict_latency_*_ms`: the verdict's `checked_at` (the recorder's
//!   clock when it closed the round) minus the latest `checked_at` of the
//!   round's votes logged up to then (the worker's clock when its check
//!   ended). Both from the logs, not from WebSocket events, and both
//!   clocks are this machine's. A round whose region did not answer closes
//!   at its deadline (timeout + 5 s after it was due), so its latency runs
//!   from the last vote that did come to that deadline;
//!   `verdict_latency_slowest_seconds`: the window's 10 seconds (by due
//!   time) with the worst p99, as [second, rounds, p99 ms, max ms];
//! - `rounds_at_deadline` (closed by the deadline, not by the last region's
//!   vote), `rounds_short` (judged on fewer than N votes),
//!   `rounds_without_verdict` (votes but no verdict: too few answers keep
//!   the status, or a recorder bug) and `late_votes` (logged after their
//!   round's verdict);
//! - `cpu_s_per_1k_rounds`: the healthmon processes' CPU over the window
//!   per 1,000 rounds, and `system_cpu_s_per_1k_rounds` with PostgreSQL and
//!   RabbitMQ.

use crate::{Opts, Proc, Store, Stored, spawn_healthmon};
use serde_json::{Value, json};
use std::time::Duration;

/// Most regions a run may list (a service takes at most a handful).
const MAX_REGIONS: usize = 8;
/// How long past its timeout a round waits for late regions
/// (healthmon's `recorder::rounds::GRACE_MS`).
const GRACE_MS: i64 = 5_000;

/// The names of `n` regions: `r1` .. `rn`.
pub fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("r{i}")).collect()
}

/// Whether the options fit a regional run.
pub fn validate(o: &Opts) -> Result<(), String> {
    if o.quorum.is_some() && o.regions == 0 {
        return Err("--quorum needs --regions N".into());
    }
    if o.regions == 0 {
        return Ok(());
    }
    if o.regions > MAX_REGIONS {
        return Err(format!("--regions: at most {MAX_REGIONS}"));
    }
    if o.quorum.is_some_and(|q| q == 0 || q as usize > o.regions) {
        return Err("--quorum must be in 1..=--regions".into());
    }
    if o.mode != "distributed" {
        return Err("--regions needs --mode distributed (a worker process per region)".into());
    }
    if !o.kind.is_http() {
        return Err("--regions is for --kind http or https".into());
    }
    if o.compare || o.prefill_days > 0 || o.flap_every > 0 || o.restart {
        return Err(
            "--regions is not for --compare, --prefill-days, --flap-every or --restart".into(),
        );
    }
    Ok(())
}

/// The fields every registered service gets: `regions` and `quorum`.
pub fn fields(o: &Opts) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    if o.regions > 0 {
        m.insert("regions".into(), json!(names(o.regions)));
        if let Some(q) = o.quorum {
            m.insert("quorum".into(), json!(q));
        }
    }
    m
}

/// 1 `api,scheduler` and one worker process per region.
pub fn spawn_fleet(env: &[(String, String)], regions: usize) -> Result<Vec<Proc>, String> {
    let mut procs = vec![spawn_healthmon(env, &["--role", "api,scheduler"], None)?];
    for region in names(regions) {
        let args = [
            "--role",
            "worker",
            "--region",
            region.as_str(),
            "--health-bind",
            "127.0.0.1:0",
        ];
        procs.push(spawn_healthmon(env, &args, None)?);
    }
    Ok(procs)
}

/// The bus names a regional run adds to the plain ones: the regions' job
/// queues (`P.jobs.rK`), for the run's clean-up.
pub fn queues(o: &Opts) -> Vec<String> {
    names(o.regions)
        .into_iter()
        .map(|r| format!("jobs.{r}"))
        .collect()
}

#[derive(diesel::QueryableByName)]
struct StatusCount {
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// One verdict of the window with what its votes say.
#[derive(diesel::QueryableByName, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    scheduled_at: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    verdict_at: i64,
    /// The latest vote logged no later than the verdict.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    last_vote_at: Option<i64>,
    /// Votes logged no later than the verdict.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    votes_before: i64,
    /// All the round's votes.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    votes: i64,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Runs one read-only query on the run's PostgreSQL database.
async fn load<R>(store: &Store, sql: String) -> Result<Vec<R>, String>
where
    R: diesel::QueryableByName<diesel::pg::Pg> + Send + 'static,
{
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let Store::Pg { url, .. } = store else {
        return Err("--regions runs on PostgreSQL".into());
    };
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|e| e.to_string())?;
    diesel::sql_query(sql)
        .load::<R>(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

/// The votes (logs with a region) due in [from, to), by status: what the
/// run's `checks` are in a regional run.
pub async fn stored_votes(store: &Store, from: i64, to: i64) -> Result<Stored, String> {
    let sql = format!(
        "SELECT status, COUNT(*) AS n FROM health_logs WHERE checked_at >= {from} \
         AND scheduled_at >= {from} AND scheduled_at < {to} AND region <> '' GROUP BY status"
    );
    let mut stored = Stored::default();
    for r in load::<StatusCount>(store, sql).await? {
        match r.status.as_str() {
            "UP" => stored.up += r.n,
            "DOWN" => stored.down += r.n,
            _ => stored.other += r.n,
        }
    }
    Ok(stored)
}

/// The verdicts due in [from, to), each with its votes' times.
async fn rounds(store: &Store, from: i64, to: i64) -> Result<Vec<Round>, String> {
    let sql = format!(
        "SELECT v.scheduled_at, v.checked_at AS verdict_at, \
         MAX(r.checked_at) FILTER (WHERE r.checked_at <= v.checked_at) AS last_vote_at, \
         COUNT(r.id) FILTER (WHERE r.checked_at <= v.checked_at) AS votes_before, \
         COUNT(r.id) AS votes \
         FROM health_logs v LEFT JOIN health_logs r ON r.service_id = v.service_id \
         AND r.scheduled_at = v.scheduled_at AND r.region <> '' \
         WHERE v.region = '' AND v.checked_at >= {from} AND v.scheduled_at >= {from} \
         AND v.scheduled_at < {to} GROUP BY v.id, v.scheduled_at, v.checked_at"
    );
    load::<Round>(store, sql).await
}

/// Rounds due in [from, to) with votes but no verdict.
async fn without_verdict(store: &Store, from: i64, to: i64) -> Result<i64, String> {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM (SELECT DISTINCT service_id, scheduled_at FROM health_logs \
         WHERE region <> '' AND checked_at >= {from} AND scheduled_at >= {from} \
         AND scheduled_at < {to}) x WHERE NOT EXISTS (SELECT 1 FROM health_logs v \
         WHERE v.service_id = x.service_id AND v.scheduled_at = x.scheduled_at AND v.region = '')"
    );
    Ok(load::<Count>(store, sql).await?.first().map_or(0, |c| c.n))
}

/// What the window's rounds add up to (see the module's doc).
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    pub rounds: usize,
    /// Verdict latencies, sorted (ms).
    pub latencies: Vec<i64>,
    pub at_deadline: usize,
    pub short: usize,
    pub late_votes: i64,
}

/// Sums up `rounds` of services with `regions` regions and a check
/// timeout of `timeout_ms`.
pub fn summarize(rounds: &[Round], regions: usize, timeout_ms: i64) -> Summary {
    let mut s = Summary {
        rounds: rounds.len(),
        ..Summary::default()
    };
    for r in rounds {
        if let Some(last) = r.last_vote_at {
            s.latencies.push((r.verdict_at - last).max(0));
        }
        if r.verdict_at >= r.scheduled_at + timeout_ms + GRACE_MS {
            s.at_deadline += 1;
        }
        if (r.votes_before as usize) < regions {
            s.short += 1;
        }
        s.late_votes += r.votes - r.votes_before;
    }
    s.latencies.sort_unstable();
    s
}

/// Waits until every round due in the window could have closed (its
/// deadline and a second more), then the `regions` object. `cpu` is the
/// healthmon processes' CPU over the window, `system_cpu` that plus the
/// servers'.
pub async fn figures(
    o: &Opts,
    store: &Store,
    (from, to): (i64, i64),
    cpu: f64,
    system_cpu: Option<f64>,
) -> Result<Value, String> {
    let timeout_ms = o.interval.min(5) as i64 * 1000;
    let closed_by = to + timeout_ms + GRACE_MS + 1000;
    let wait = closed_by - crate::now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let rounds = rounds(store, from, to).await?;
    let s = summarize(&rounds, o.regions, timeout_ms);
    // By due second, as the schedule lag's: stalls or a spread tail.
    let by_due: Vec<(i64, i64)> = rounds
        .iter()
        .filter_map(|r| Some((r.scheduled_at, r.verdict_at - r.last_vote_at?)))
        .collect();
    let slowest = crate::slow_seconds(&by_due, from);
    let without = without_verdict(store, from, to).await?;
    let secs = (to - from) as f64 / 1000.0;
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    let per_1k = |cpu: f64| round(cpu / (s.rounds.max(1) as f64 / 1000.0), 3);
    let pct = |q: f64| crate::percentile(&s.latencies, q);
    let rounds_due = (o.services as f64 * secs / o.interval as f64).round();
    println!(
        "[regions] {} regions, quorum {}: {} rounds ({:.0}/s, {:.1}% of {rounds_due:.0} due); \
         verdict latency (last vote's checked_at to the verdict's) p50 {} ms, p99 {} ms, max {} ms; \
         {} closed at their deadline, {} on fewer than {} votes, {without} without a verdict, \
         {} late votes; {:.3} CPU-s per 1,000 rounds (healthmon){}",
        o.regions,
        o.quorum.map_or("a majority".to_owned(), |q| q.to_string()),
        s.rounds,
        s.rounds as f64 / secs,
        100.0 * s.rounds as f64 / rounds_due.max(1.0),
        pct(0.50),
        pct(0.99),
        s.latencies.last().copied().unwrap_or(0),
        s.at_deadline,
        s.short,
        o.regions,
        s.late_votes,
        per_1k(cpu),
        system_cpu.map_or(String::new(), |c| format!(
            ", {:.3} with PostgreSQL and RabbitMQ",
            per_1k(c)
        )),
    );
    Ok(json!({
        "regions": o.regions,
        "quorum": o.quorum,
        "rounds": s.rounds,
        "rounds_due": rounds_due,
        "rounds_per_s": round(s.rounds as f64 / secs, 1),
        "verdict_latency_from": "health_logs.checked_at: the round's last vote (worker) to its verdict (recorder)",
        "verdict_latency_p50_ms": pct(0.50),
        "verdict_latency_p99_ms": pct(0.99),
        "verdict_latency_max_ms": s.latencies.last().copied().unwrap_or(0),
        "verdict_latency_slowest_seconds": slowest,
        "rounds_at_deadline": s.at_deadline,
        "rounds_short": s.short,
        "rounds_without_verdict": without,
        "late_votes": s.late_votes,
        "cpu_s_per_1k_rounds": per_1k(cpu),
        "system_cpu_s_per_1k_rounds": system_cpu.map(per_1k),
    }))
}

/// What a test run can check without servers: the summary of rounds.
pub fn self_check() -> Result<(), String> {
    let r = |scheduled_at, verdict_at, last_vote_at, votes_before, votes| Round {
        scheduled_at,
        verdict_at,
        last_vote_at,
        votes_before,
        votes,
    };
    let rounds = [
        // Complete: closed 30 ms after the third vote.
        r(1_000, 1_130, Some(1_100), 3, 3),
        // A region missing: closed at the deadline (1 s timeout + 5 s).
        r(2_000, 8_000, Some(2_050), 2, 3),
        // The same clock read twice: never negative.
        r(3_000, 3_010, Some(3_010), 3, 3),
    ];
    let s = summarize(&rounds, 3, 1_000);
    let want = Summary {
        rounds: 3,
        latencies: vec![0, 30, 5_950],
        at_deadline: 1,
        short: 1,
        late_votes: 1,
    };
    if s != want {
        return Err(format!("regions::summarize: {s:?}, not {want:?}"));
    }
    if names(3) != ["r1", "r2", "r3"] {
        return Err(format!("regions::names(3) = {:?}", names(3)));
    }
    Ok(())
}
