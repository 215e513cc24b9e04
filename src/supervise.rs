//! The supervisor: runs every long-lived task, restarts the ones that fail,
//! and stops them all in order on shutdown.
//!
//! Policy: a task that returns an error, panics, or ends while it should be
//! running is logged and restarted with exponential backoff (100 ms doubling
//! to 10 s). A task that fails `max_restarts` times within `window` is
//! considered broken beyond retry: the supervisor shuts everything down and
//! returns an error, so the process exits non-zero and its service manager
//! (systemd, docker, kubernetes) can restart it or alert.
//!
//! Shutdown is staged so no work is lost in between: first the intake stage
//! (HTTP server, scheduler, workers) is cancelled and awaited, so no new
//! results arise; then the drain stage (the recorder) is cancelled and writes
//! (and acknowledges) what is still queued; last the transport stage (a
//! broker connection) closes. Each stage gets a deadline after which its
//! tasks are aborted.

use futures_util::future::BoxFuture;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The error a task reports to the supervisor.
pub type TaskError = Box<dyn std::error::Error + Send + Sync>;

type Factory =
    Box<dyn Fn(CancellationToken) -> BoxFuture<'static, Result<(), TaskError>> + Send + Sync>;

/// When a task is stopped at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Stopped first: whatever takes in new work.
    Intake,
    /// Stopped after every intake task has ended: whatever flushes work.
    Drain,
    /// Stopped last: connections the other stages talk through.
    Transport,
}

/// A supervised task: a name and a way to start it (again).
pub struct Task {
    name: &'static str,
    stage: Stage,
    factory: Factory,
}

impl Task {
    /// A task made by `factory`, which is called again for each restart with
    /// the token that tells it to stop.
    pub fn new<F, Fut, E>(name: &'static str, stage: Stage, factory: F) -> Self
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<TaskError> + 'static,
    {
        Self {
            name,
            stage,
            factory: Box::new(move |token| {
                let fut = factory(token);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }),
        }
    }
}

/// Restart and stop limits.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures tolerated within `window` before giving up.
    pub max_restarts: u32,
    /// The window failures are counted in.
    pub window: Duration,
    /// First restart delay (doubles up to `max_backoff`).
    pub initial_backoff: Duration,
    /// Longest restart delay.
    pub max_backoff: Duration,
    /// How long the intake stage may take to stop.
    pub intake_deadline: Duration,
    /// How long the drain stage may take to stop.
    pub drain_deadline: Duration,
    /// How long the transport stage may take to stop.
    pub transport_deadline: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            intake_deadline: Duration::from_secs(7),
            drain_deadline: Duration::from_secs(2),
            transport_deadline: Duration::from_secs(1),
        }
    }
}

/// Why the supervisor stopped other than by request.
#[derive(Debug, thiserror::Error)]
#[error("task {task} failed {failures} times within {window:?}; last error: {last}")]
pub struct GaveUp {
    /// The task's name.
    pub task: &'static str,
    /// Failures counted.
    pub failures: u32,
    /// The counting window.
    pub window: Duration,
    /// Its last error.
    pub last: String,
}

/// Runs `tasks` until `stop` resolves or a task fails too often, then shuts
/// them all down in stages.
pub async fn run(
    tasks: Vec<Task>,
    policy: Policy,
    stop: impl Future<Output = ()>,
) -> Result<(), GaveUp> {
    let intake_token = CancellationToken::new();
    let drain_token = CancellationToken::new();
    let transport_token = CancellationToken::new();
    let mut intake = JoinSet::new();
    let mut drain = JoinSet::new();
    let mut transport = JoinSet::new();
    for task in tasks {
        let (set, token) = match task.stage {
            Stage::Intake => (&mut intake, intake_token.clone()),
            Stage::Drain => (&mut drain, drain_token.clone()),
            Stage::Transport => (&mut transport, transport_token.clone()),
        };
        set.spawn(supervise_one(task, policy, token));
    }
    tokio::pin!(stop);
    let outcome = tokio::select! {
        () = &mut stop => Ok(()),
        Some(done) = intake.join_next() => flatten(done),
        Some(done) = drain.join_next() => flatten(done),
        Some(done) = transport.join_next() => flatten(done),
    };
    if let Err(e) = &outcome {
        tracing::error!(error = %e, "a task keeps failing; shutting down");
    } else {
        tracing::info!("shutting down");
    }
    intake_token.cancel();
    stop_stage(&mut intake, policy.intake_deadline, "intake").await;
    drain_token.cancel();
    stop_stage(&mut drain, policy.drain_deadline, "drain").await;
    transport_token.cancel();
    stop_stage(&mut transport, policy.transport_deadline, "transport").await;
    outcome
}

fn flatten(done: Result<Result<(), GaveUp>, tokio::task::JoinError>) -> Result<(), GaveUp> {
    match done {
        Ok(r) => r,
        Err(e) => Err(GaveUp {
            task: "supervisor",
            failures: 1,
            window: Duration::ZERO,
            last: e.to_string(),
        }),
    }
}

async fn stop_stage(set: &mut JoinSet<Result<(), GaveUp>>, deadline: Duration, stage: &str) {
    let finished = tokio::time::timeout(deadline, async {
        while let Some(done) = set.join_next().await {
            if let Err(e) = flatten(done) {
                tracing::warn!(error = %e, "task failed while stopping");
            }
        }
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            stage,
            remaining = set.len(),
            "tasks did not stop in time; aborting them"
        );
        set.shutdown().await;
    }
}

/// Runs one task, restarting it per the policy, until its token is
/// cancelled.
async fn supervise_one(task: Task, policy: Policy, token: CancellationToken) -> Result<(), GaveUp> {
    let mut failures: Vec<Instant> = Vec::new();
    let mut backoff = policy.initial_backoff;
    loop {
        // Run in its own task so a panic is caught as a JoinError.
        let handle = tokio::spawn((task.factory)(token.clone()));
        let error = match handle.await {
            Ok(Ok(())) if token.is_cancelled() => return Ok(()),
            Ok(Ok(())) => "ended while it should be running".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) if e.is_panic() => format!("panicked: {}", panic_text(e)),
            Err(e) => e.to_string(),
        };
        if token.is_cancelled() {
            tracing::warn!(task = task.name, error = %error, "task failed while stopping");
            return Ok(());
        }
        let now = Instant::now();
        failures.retain(|t| now.duration_since(*t) < policy.window);
        failures.push(now);
        if failures.len() as u32 >= policy.max_restarts {
            return Err(GaveUp {
                task: task.name,
                failures: failures.len() as u32,
                window: policy.window,
                last: error,
            });
        }
        tracing::error!(task = task.name, error = %error, restart_in_ms = backoff.as_millis() as u64,
            "task failed; restarting");
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(policy.max_backoff);
    }
}

fn panic_text(e: tokio::task::JoinError) -> String {
    let payload = e.into_panic();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> Policy {
        Policy {
            max_restarts: 3,
            window: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            intake_deadline: Duration::from_secs(1),
            drain_deadline: Duration::from_secs(1),
            transport_deadline: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn a_task_that_fails_once_is_restarted_and_keeps_running() {
        let starts = Arc::new(AtomicU32::new(0));
        let s = Arc::clone(&starts);
        let task = Task::new("flaky", Stage::Intake, move |token: CancellationToken| {
            let n = s.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    return Err::<(), TaskError>("boom".into());
                }
                token.cancelled().await;
                Ok(())
            }
        });
        let seen = Arc::clone(&starts);
        let stop = async move {
            while seen.load(Ordering::SeqCst) < 2 {
                tokio::task::yield_now().await;
            }
        };
        run(vec![task], fast(), stop).await.unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_task_that_keeps_failing_takes_the_process_down() {
        let task = Task::new("broken", Stage::Intake, |_token| async {
            Err::<(), TaskError>("always".into())
        });
        let err = run(vec![task], fast(), std::future::pending())
            .await
            .unwrap_err();
        assert_eq!(err.task, "broken");
        assert_eq!(err.failures, 3);
        assert!(err.last.contains("always"));
    }

    #[tokio::test]
    async fn panics_count_as_failures() {
        let task = Task::new("panicky", Stage::Intake, |_token| async {
            if true {
                panic!("kaboom");
            }
            Ok::<(), TaskError>(())
        });
        let err = run(vec![task], fast(), std::future::pending())
            .await
            .unwrap_err();
        assert!(err.last.contains("kaboom"), "{}", err.last);
    }

    #[tokio::test]
    async fn drain_tasks_stop_only_after_intake_tasks_have_ended() {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let o1 = Arc::clone(&order);
        let intake = Task::new("intake", Stage::Intake, move |token: CancellationToken| {
            let o = Arc::clone(&o1);
            async move {
                token.cancelled().await;
                // Slow to stop: the drain task must still be running.
                tokio::time::sleep(Duration::from_millis(20)).await;
                o.lock().unwrap().push("intake");
                Ok::<(), TaskError>(())
            }
        });
        let o2 = Arc::clone(&order);
        let drain = Task::new("drain", Stage::Drain, move |token: CancellationToken| {
            let o = Arc::clone(&o2);
            async move {
                token.cancelled().await;
                o.lock().unwrap().push("drain");
                Ok::<(), TaskError>(())
            }
        });
        run(vec![drain, intake], fast(), async {}).await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["intake", "drain"]);
    }
}
