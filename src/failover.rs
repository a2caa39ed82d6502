//! Workflows for the failover test (`tests/failover.rs`), run by the `failover-worker` binary
//! in several processes on one store, which the test kills (SIGKILL), restarts and freezes
//! (SIGSTOP/SIGCONT) at random moments.
//!
//! [`parent`] runs a heartbeating activity ([`beat`]), sleeps on a durable timer, starts a
//! child workflow ([`child_work`], one short activity) and awaits it, then runs a last
//! activity ([`finish`]). When it is cancelled, its `on_cancel!` handler runs the [`cleanup`]
//! activity on the disconnected context. Each step logs one line with `ctx.log(..)`, so a
//! step committed twice would show as a repeated line in the history.
//!
//! # The side log
//!
//! Every activity attempt appends lines to a file shared by all the worker processes (opened
//! with `O_APPEND`, one `write` per line, so lines of different processes never interleave):
//!
//! ```text
//! start   <workflow-id> <activity> <attempt> <worker-id> <unix-ms>   an attempt begins
//! done    <workflow-id> <activity> <attempt> <worker-id> <unix-ms>   it returns Ok
//! cleanup <workflow-id> <activity> <attempt> <worker-id> <unix-ms>   the cleanup activity ran
//! ```
//!
//! Each activity is called at most once per workflow, so `(workflow, activity)` names one
//! operation. [`read_side_log`] parses the file.

use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use workflow_core::prelude::*;
use workflow_core::ActivityInfo;

/// How long the heartbeating activity may go without a heartbeat before the attempt times
/// out (and is retried).
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(400);

static SIDE_LOG: OnceLock<(PathBuf, String)> = OnceLock::new();

/// Sets the side log file and the worker id written on its lines (once per process, before
/// the engine is built: a worker resumes activities as it builds).
pub fn set_side_log(path: impl Into<PathBuf>, worker_id: impl Into<String>) {
    let _ = SIDE_LOG.set((path.into(), worker_id.into()));
}

/// Wall-clock time in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Appends `kind <workflow> <activity> <attempt> <worker> <now>` for this attempt.
fn side_log(kind: &str, info: &ActivityInfo) {
    let Some((path, worker)) = SIDE_LOG.get() else {
        return;
    };
    let line = format!(
        "{kind} {} {} {} {worker} {}\n",
        info.workflow_id,
        info.activity,
        info.attempt,
        now_ms()
    );
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // One write per line: appends of several processes do not interleave.
        let _ = file.write_all(line.as_bytes());
    }
}

/// One parsed line of the side log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideLine {
    /// `start`, `done` or `cleanup`.
    pub kind: String,
    /// The workflow the activity ran for.
    pub workflow: String,
    /// The activity's registered name.
    pub activity: String,
    /// The attempt number.
    pub attempt: u32,
    /// The worker process that ran it.
    pub worker: String,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
}

/// Reads and parses the side log; panics on a malformed line (a torn write would be a bug
/// of the log itself).
pub fn read_side_log(path: &Path) -> Vec<SideLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            let [kind, workflow, activity, attempt, worker, at_ms] = parts.as_slice() else {
                panic!("malformed side log line {line:?}");
            };
            SideLine {
                kind: kind.to_string(),
                workflow: workflow.to_string(),
                activity: activity.to_string(),
                attempt: attempt
                    .parse()
                    .unwrap_or_else(|_| panic!("bad attempt in {line:?}")),
                worker: worker.to_string(),
                at_ms: at_ms
                    .parse()
                    .unwrap_or_else(|_| panic!("bad time in {line:?}")),
            }
        })
        .collect()
}

/// What one [`parent`] run does; drawn at random by the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Heartbeats of [`beat`].
    pub beats: u32,
    /// Milliseconds between two heartbeats.
    pub beat_ms: u64,
    /// The durable timer, in ms.
    pub sleep_ms: u64,
    /// A number that makes each workflow's result its own.
    pub token: u64,
    /// How many attempts of [`beat`] fail (retryably) on purpose.
    pub failures: u32,
}

/// The input of [`beat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beats {
    /// How many heartbeats.
    pub count: u32,
    /// Milliseconds between two.
    pub every_ms: u64,
    /// Added to the count in the result.
    pub token: u64,
    /// Attempts up to this number fail (retryably) after their first heartbeat.
    pub failures: u32,
}

/// The result a [`child_work`] run on `n` returns.
pub fn child_result(n: u64) -> u64 {
    2 * n + 1
}

/// The result a [`parent`] run with `plan` completes with.
pub fn expected_result(plan: &Plan) -> u64 {
    child_result(plan.token + u64::from(plan.beats)) + 1
}

/// The retry policy of every activity here: quick retries, bounded.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        initial_interval: Duration::from_millis(50),
        backoff_coefficient: 2.0,
        maximum_interval: Duration::from_millis(500),
        maximum_attempts: 30,
    }
}

/// Heartbeats `count` times, `every_ms` apart; a retried attempt resumes after the last
/// heartbeat an earlier attempt recorded. The first `failures` attempts fail after their
/// first heartbeat. Returns `token + count`.
#[activity]
pub async fn beat(ctx: ActivityContext, work: Beats) -> Result<u64, ActivityError> {
    side_log("start", ctx.info());
    let from = ctx.heartbeat_details::<u32>().map_or(0, |last| last + 1);
    for i in from..work.count {
        tokio::time::sleep(Duration::from_millis(work.every_ms)).await;
        ctx.heartbeat(i)?;
        if i == from && ctx.attempt() <= work.failures {
            return Err(ActivityError::retryable(format!(
                "attempt {} fails on purpose",
                ctx.attempt()
            )));
        }
    }
    side_log("done", ctx.info());
    Ok(work.token + u64::from(work.count))
}

/// The child's one short activity: returns [`child_result`]`(n)`.
#[activity]
pub async fn child_step(ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    side_log("start", ctx.info());
    tokio::time::sleep(Duration::from_millis(15)).await;
    side_log("done", ctx.info());
    Ok(child_result(n))
}

/// The parent's last activity: returns `n + 1`.
#[activity]
pub async fn finish(ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    side_log("start", ctx.info());
    tokio::time::sleep(Duration::from_millis(15)).await;
    side_log("done", ctx.info());
    Ok(n + 1)
}

/// What the cancellation handler runs: writes a `cleanup` line.
#[activity]
pub async fn cleanup(ctx: ActivityContext) -> Result<(), ActivityError> {
    side_log("start", ctx.info());
    side_log("cleanup", ctx.info());
    tokio::time::sleep(Duration::from_millis(10)).await;
    side_log("done", ctx.info());
    Ok(())
}

/// The child: one short activity.
#[workflow]
pub async fn child_work(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let r: u64 = ctx.activity(child_step, n).retry(retry_policy()).await?;
    ctx.log(format!("child_step returned {r}"));
    Ok(r)
}

/// Heartbeating activity, durable timer, child workflow, last activity; cleans up when
/// cancelled. Completes with [`expected_result`]`(&plan)`.
#[workflow]
pub async fn parent(ctx: WorkflowContext, plan: Plan) -> Result<u64, WorkflowError> {
    on_cancel!(|cleanup_ctx| {
        // On the disconnected context: the workflow's cancel does not reach it.
        if let Err(e) = cleanup_ctx
            .activity(cleanup, ())
            .retry(retry_policy())
            .await
        {
            cleanup_ctx.log(format!("cleanup failed: {e}"));
        }
    });
    let work = Beats {
        count: plan.beats,
        every_ms: plan.beat_ms,
        token: plan.token,
        failures: plan.failures,
    };
    let beaten: u64 = ctx
        .activity(beat, work)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .retry(retry_policy())
        .await?;
    ctx.log(format!("beat returned {beaten}"));
    ctx.sleep(Duration::from_millis(plan.sleep_ms)).await?;
    ctx.log("timer fired");
    let child_id = format!("{}-child", ctx.workflow_id());
    let doubled: u64 = ctx.child(child_work, child_id, beaten).await?;
    ctx.log(format!("child returned {doubled}"));
    let finished: u64 = ctx.activity(finish, doubled).retry(retry_policy()).await?;
    ctx.log(format!("finish returned {finished}"));
    Ok(finished)
}

/// The failover workflows and activities, registered. The engine reads the wall clock, as
/// the side log and the test do, so that the history's times compare with theirs.
pub fn builder() -> workflow_core::EngineBuilder {
    Engine::builder()
        .clock(workflow_core::Clock::system())
        .register(parent)
        .register(child_work)
        .activity(beat)
        .activity(child_step)
        .activity(finish)
        .activity(cleanup)
}
