//! The runtime under races and failures (engine, stepper, runner, timers, store, client): a
//! cancel and an activity or timer finishing, workflows closing with operations pending,
//! terminate during a step, failing stores, outcome waiters, shutdown, describe, and edge
//! cases of the activity timeouts and retry policy; a result delivered in memory before a
//! cancel, the timer driver, and heartbeat writes still in flight when an attempt ends.
//!
//! The tests under "fixed bugs" once failed (a failing store stranded a workflow or dropped a
//! result, terminate raced dispatch, timeouts overflowed); all are regression tests now.
//! Everything runs on tokio's paused clock; a test that would hang on a bug waits for the
//! outcome under a (virtual) deadline instead.

use durable_workflows::journal;
use durable_workflows::testing::{count, logs};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use workflow_core::prelude::*;
use workflow_core::{
    ActivityFailure, ActivityOptions, Client, ClientError, Event, EventKind, Fence, HistoryEvent,
    InboxEntry, LeaseRequest, MemoryStore, NewWorkflow, OpId, RunningWorkflow, StepCommit, Store,
    StoreError, TaskRecord, WorkflowRecord,
};

const HOUR: Duration = Duration::from_secs(3600);

// ----- activities -------------------------------------------------------------------------

/// Records that it ran and returns its input.
#[activity]
async fn quick(ctx: ActivityContext, label: String) -> Result<String, ActivityError> {
    journal::write(&ctx.info().workflow_id, format!("quick ran: {label}"));
    Ok(label)
}

/// Sleeps `secs` seconds without heartbeating and returns `secs`.
#[activity]
async fn sleepy(ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    journal::write(&id, format!("sleepy {secs} started"));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    journal::write(&id, format!("sleepy {secs} finished"));
    Ok(secs)
}

/// Heartbeats every second for `secs` seconds; accepts a cancel seen at a heartbeat.
#[activity]
async fn beats(ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    journal::write(&id, format!("beats attempt {}", ctx.attempt()));
    for i in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        journal::write(&id, format!("beat {i}"));
        if let Err(e) = ctx.heartbeat(i) {
            journal::write(&id, "beats saw cancel");
            return Err(e);
        }
    }
    journal::write(&id, "beats finished");
    Ok(secs)
}

/// Heartbeats every second; once it sees the cancel it fails with a *retryable* error (its
/// cleanup failed), which must not be retried since the task was cancelled.
#[activity]
async fn cleanup_fails(ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    journal::write(&id, format!("cleanup_fails attempt {}", ctx.attempt()));
    for i in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if ctx.heartbeat(i).is_err() {
            return Err(ActivityError::retryable("cleanup failed"));
        }
    }
    Ok(secs)
}

/// Heartbeats every second, records what each heartbeat said, and ignores cancellation.
#[activity]
async fn ignores_cancel(ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    journal::write(&id, format!("ignores_cancel attempt {}", ctx.attempt()));
    for i in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match ctx.heartbeat(i) {
            Ok(()) => journal::write(&id, "hb ok"),
            Err(_) => journal::write(&id, "hb cancelled"),
        }
    }
    journal::write(&id, "ignores_cancel finished");
    Ok(secs)
}

/// Heartbeats every `secs / 5` seconds (4 s for 20), five times, then completes.
#[activity]
async fn slow_beats(ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    journal::write(&id, format!("slow_beats attempt {}", ctx.attempt()));
    for i in 0..5 {
        tokio::time::sleep(Duration::from_secs(secs / 5)).await;
        ctx.heartbeat(i)?;
    }
    Ok(secs)
}

// ----- workflows --------------------------------------------------------------------------

/// Which activity `call` runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub enum Which {
    Sleepy,
    Beats,
    CleanupFails,
    IgnoresCancel,
    SlowBeats,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    which: Which,
    secs: u64,
    options: ActivityOptions,
}

fn call_plan(which: Which, secs: u64, cancellation: ActivityCancellationType) -> Call {
    Call {
        which,
        secs,
        options: ActivityOptions {
            cancellation,
            retry: RetryPolicy::default().with_initial_interval(Duration::from_secs(1)),
            ..ActivityOptions::default()
        },
    }
}

/// Calls one activity with the given options and returns its result.
#[workflow]
async fn call(ctx: WorkflowContext, plan: Call) -> Result<u64, WorkflowError> {
    let secs: u64 = plan.secs;
    let options: ActivityOptions = plan.options;
    let r = if plan.which == Which::Sleepy {
        ctx.activity(sleepy, secs).options(options).await
    } else if plan.which == Which::Beats {
        ctx.activity(beats, secs).options(options).await
    } else if plan.which == Which::CleanupFails {
        ctx.activity(cleanup_fails, secs).options(options).await
    } else if plan.which == Which::IgnoresCancel {
        ctx.activity(ignores_cancel, secs).options(options).await
    } else {
        ctx.activity(slow_beats, secs).options(options).await
    };
    ctx.log(format!("call resolved: {r:?}"));
    r
}

/// Sleeps one second, then calls `quick`.
#[workflow]
async fn sleep_then_quick(ctx: WorkflowContext, label: String) -> Result<String, WorkflowError> {
    ctx.sleep(Duration::from_secs(1)).await?;
    let out = ctx.activity(quick, label).await?;
    Ok(out)
}

/// Two activities in a row.
#[workflow]
async fn two_quicks(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let first = ctx.activity(sleepy, 5).await?;
    let second = ctx.activity(quick, "second".to_string()).await?;
    Ok(format!("{first} {second}"))
}

/// Calls `quick` with the given options.
#[workflow]
async fn quick_with(
    ctx: WorkflowContext,
    options: ActivityOptions,
) -> Result<String, WorkflowError> {
    let out = ctx
        .activity(quick, "with options".to_string())
        .options(options)
        .await?;
    Ok(out)
}

#[workflow]
async fn sleeper(ctx: WorkflowContext, secs: u64) -> Result<String, WorkflowError> {
    let slept = ctx.sleep(Duration::from_secs(secs)).await;
    ctx.log(format!("sleep resolved: {slept:?}"));
    slept?;
    Ok("slept".to_string())
}

/// Starts an activity and a timer without awaiting them and returns at once.
#[workflow]
async fn start_and_return(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let _activity = ctx.activity(beats, 30).start();
    let _timer = ctx.sleep(HOUR).start();
    Ok("returned".to_string())
}

/// Starts a heartbeating activity, sleeps, and returns without awaiting the activity.
#[workflow]
async fn start_sleep_return(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let _activity = ctx.activity(beats, 60).start();
    ctx.sleep(Duration::from_secs(3)).await?;
    Ok("returned".to_string())
}

/// Three activities started together, completing at the same instant.
#[workflow]
async fn fan_out(ctx: WorkflowContext, secs: u64) -> Result<u64, WorkflowError> {
    let a = ctx.activity(sleepy, secs).start();
    let b = ctx.activity(sleepy, secs).start();
    let c = ctx.activity(sleepy, secs).start();
    let x = a.await?;
    let y = b.await?;
    let z = c.await?;
    Ok(x + y + z)
}

/// An activity that finished before the cancel, then a long sleep.
#[workflow]
async fn quick_then_sleep(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let label = ctx.activity(quick, "first".to_string()).await?;
    ctx.sleep(HOUR).await?;
    Ok(label)
}

// ----- a store that misbehaves on request -------------------------------------------------

type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A [`MemoryStore`] that can fail or pause some calls, and counts step conflicts.
#[derive(Default)]
struct TestStore {
    inner: MemoryStore,
    /// Fail (with a backend error, before writing anything) the next N commits that schedule
    /// an activity task.
    fail_task_commits: AtomicUsize,
    /// How many commits were failed on purpose.
    failed_commits: AtomicUsize,
    /// Pause the next commit that schedules an activity task: before or after it is written.
    pause_task_commit: Mutex<Option<Pause>>,
    paused: Notify,
    resume: Notify,
    /// Yield to the scheduler inside every read and commit, to widen race windows.
    yield_often: AtomicBool,
    /// Commits refused because of a version conflict (two steps of one workflow overlapped).
    conflicts: AtomicUsize,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Pause {
    BeforeWrite,
    AfterWrite,
}

impl TestStore {
    async fn maybe_yield(&self) {
        if self.yield_often.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    }

    fn take_pause(&self, commit: &StepCommit, when: Pause) -> bool {
        if commit.new_tasks.is_empty() {
            return false;
        }
        let mut pause = self.pause_task_commit.lock().unwrap();
        if *pause == Some(when) {
            *pause = None;
            true
        } else {
            false
        }
    }

    async fn hold(&self) {
        let resumed = self.resume.notified();
        tokio::pin!(resumed);
        resumed.as_mut().enable();
        self.paused.notify_one();
        resumed.await;
    }

    fn take_one(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    async fn commit(&self, commit: StepCommit) -> Result<u64, StoreError> {
        self.maybe_yield().await;
        if !commit.new_tasks.is_empty() && Self::take_one(&self.fail_task_commits) {
            self.failed_commits.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Backend("disk full (injected)".to_string()));
        }
        if self.take_pause(&commit, Pause::BeforeWrite) {
            self.hold().await;
        }
        let after = self.take_pause(&commit, Pause::AfterWrite);
        let result = self.inner.commit_step(commit).await;
        if matches!(result, Err(StoreError::Conflict { .. })) {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        if after && result.is_ok() {
            // The transaction is durable; the caller has not seen the answer yet (a real
            // database answers asynchronously).
            self.hold().await;
        }
        result
    }

    async fn enqueue(&self, id: &str, event: Event) -> Result<u64, StoreError> {
        self.maybe_yield().await;
        self.inner.enqueue_event(id, event).await
    }
}

// `Store` is an `#[async_trait]` trait; this crate does not depend on `async-trait`, so the
// methods are written in the form the attribute expands to.
impl Store for TestStore {
    fn create_workflow<'life0, 'async_trait>(
        &'life0 self,
        workflow: NewWorkflow,
    ) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.create_workflow(workflow))
    }

    fn load_workflow<'life0, 'life1, 'async_trait>(
        &'life0 self,
        id: &'life1 str,
    ) -> StoreFuture<'async_trait, WorkflowRecord>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.maybe_yield().await;
            self.inner.load_workflow(id).await
        })
    }

    fn list_workflows<'life0, 'async_trait>(
        &'life0 self,
        status: Option<WorkflowStatus>,
    ) -> StoreFuture<'async_trait, Vec<WorkflowRecord>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.list_workflows(status))
    }

    fn enqueue_event<'life0, 'life1, 'async_trait>(
        &'life0 self,
        id: &'life1 str,
        event: Event,
    ) -> StoreFuture<'async_trait, u64>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.enqueue(id, event))
    }

    fn read_inbox<'life0, 'life1, 'async_trait>(
        &'life0 self,
        id: &'life1 str,
    ) -> StoreFuture<'async_trait, Vec<InboxEntry>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.maybe_yield().await;
            self.inner.read_inbox(id).await
        })
    }

    fn request_cancel<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        id: &'life1 str,
        reason: &'life2 str,
    ) -> StoreFuture<'async_trait, bool>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.request_cancel(id, reason))
    }

    fn commit_step<'life0, 'async_trait>(
        &'life0 self,
        commit: StepCommit,
    ) -> StoreFuture<'async_trait, u64>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.commit(commit))
    }

    fn record_task_attempt<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        workflow_id: &'life1 str,
        op: OpId,
        attempt: u32,
        fence: Option<&'life2 Fence>,
    ) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(
            self.inner
                .record_task_attempt(workflow_id, op, attempt, fence),
        )
    }

    fn record_heartbeat<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        workflow_id: &'life1 str,
        op: OpId,
        details: Option<serde_json::Value>,
        at_ms: u64,
        fence: Option<&'life2 Fence>,
    ) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(
            self.inner
                .record_heartbeat(workflow_id, op, details, at_ms, fence),
        )
    }

    fn set_stuck<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        id: &'life1 str,
        message: Option<workflow_core::WorkflowFault>,
        fence: Option<&'life2 Fence>,
    ) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.set_stuck(id, message, fence))
    }

    fn workflows_to_step<'life0, 'life1, 'async_trait>(
        &'life0 self,
        owner: &'life1 str,
    ) -> StoreFuture<'async_trait, Vec<String>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.workflows_to_step(owner))
    }

    fn claim_workflows<'life0, 'life1, 'async_trait>(
        &'life0 self,
        lease: &'life1 LeaseRequest,
        limit: usize,
    ) -> StoreFuture<'async_trait, Vec<RunningWorkflow>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.claim_workflows(lease, limit))
    }

    fn renew_leases<'life0, 'life1, 'async_trait>(
        &'life0 self,
        lease: &'life1 LeaseRequest,
    ) -> StoreFuture<'async_trait, Vec<(String, u64)>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.renew_leases(lease))
    }

    fn release_leases<'life0, 'life1, 'async_trait>(
        &'life0 self,
        owner: &'life1 str,
    ) -> StoreFuture<'async_trait, u64>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.release_leases(owner))
    }

    fn terminate<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        id: &'life1 str,
        reason: &'life2 str,
        at_ms: u64,
    ) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.terminate(id, reason, at_ms))
    }

    fn release_lease<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        id: &'life1 str,
        fence: &'life2 workflow_core::Fence,
    ) -> StoreFuture<'async_trait, bool>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.release_lease(id, fence))
    }

    fn purge_closed<'life0, 'life1, 'async_trait>(
        &'life0 self,
        purge: &'life1 workflow_core::Purge,
    ) -> StoreFuture<'async_trait, Vec<String>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.purge_closed(purge))
    }

    fn running_workflows<'life0, 'async_trait>(
        &'life0 self,
    ) -> StoreFuture<'async_trait, Vec<RunningWorkflow>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.running_workflows())
    }

    fn tasks<'life0, 'life1, 'async_trait>(
        &'life0 self,
        id: &'life1 str,
    ) -> StoreFuture<'async_trait, Vec<TaskRecord>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.tasks(id))
    }

    fn history<'life0, 'life1, 'async_trait>(
        &'life0 self,
        id: &'life1 str,
    ) -> StoreFuture<'async_trait, Vec<HistoryEvent>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.history(id))
    }
}

// ----- helpers ----------------------------------------------------------------------------

async fn engine_on(store: Arc<dyn Store>) -> Engine {
    Engine::builder()
        .register(call)
        .register(sleep_then_quick)
        .register(two_quicks)
        .register(quick_with)
        .register(sleeper)
        .register(start_and_return)
        .register(start_sleep_return)
        .register(fan_out)
        .register(quick_then_sleep)
        .activity(quick)
        .activity(sleepy)
        .activity(beats)
        .activity(cleanup_fails)
        .activity(ignores_cancel)
        .activity(slow_beats)
        .store_arc(store)
        .build()
        .await
        .unwrap()
}

async fn engine() -> Engine {
    engine_on(Arc::new(MemoryStore::new())).await
}

async fn test_engine() -> (Engine, Arc<TestStore>) {
    let store = Arc::new(TestStore::default());
    let engine = engine_on(store.clone() as Arc<dyn Store>).await;
    (engine, store)
}

/// Lets the engine run (virtual time) until `cond` holds for the description of `id`.
async fn until(
    client: &Client,
    id: &str,
    what: &str,
    cond: impl Fn(&workflow_core::Description) -> bool,
) {
    for _ in 0..2000 {
        if cond(&client.describe(id).await.unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{id}: never reached: {what}");
}

/// Lets every runnable task run without advancing the clock much.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

// ===== fixed bugs ==========================================================================

/// A step whose commit fails with a backend error (a transient database error) is stepped
/// again after a delay: the events stay in the inbox and the workflow goes on.
#[tokio::test(start_paused = true)]
async fn a_failed_commit_is_retried() {
    let (e, store) = test_engine().await;
    let c = e.client();
    let id = "bug-commit-retry";
    store.fail_task_commits.store(1, Ordering::SeqCst);
    let run = c
        .start(sleep_then_quick, id, "after retry".to_string())
        .await
        .unwrap();
    let out = tokio::time::timeout(HOUR, run.outcome()).await;
    assert_eq!(store.failed_commits.load(Ordering::SeqCst), 1);
    let d = c.describe(id).await.unwrap();
    assert!(
        matches!(&out, Ok(Ok(Outcome::Completed(s))) if s == "after retry"),
        "the step should be retried after the failed commit; after an hour: {out:?}\n{d}"
    );
}

/// An activity's result reaches its workflow's step in memory, with no store write of its
/// own; when that step's commit fails, the result is kept for the retried step: the
/// activity does not run again.
#[tokio::test(start_paused = true)]
async fn a_result_whose_step_fails_to_commit_is_kept_for_the_retry() {
    let (e, store) = test_engine().await;
    let c = e.client();
    let id = "kept-result";
    let run = c.start(two_quicks, id, ()).await.unwrap();
    // Fail the step that consumes the first result (it schedules the second activity).
    while journal::count(id, "sleepy 5 started") == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    store.fail_task_commits.store(1, Ordering::SeqCst);
    let out = tokio::time::timeout(HOUR, run.outcome()).await;
    assert_eq!(store.failed_commits.load(Ordering::SeqCst), 1);
    assert!(
        matches!(&out, Ok(Ok(Outcome::Completed(s))) if s == "5 second"),
        "{out:?}"
    );
    assert_eq!(
        journal::lines(id),
        ["sleepy 5 started", "sleepy 5 finished", "quick ran: second"],
        "the first activity's result should be reused, not re-run"
    );
}

/// Terminate between the commit of a step and the dispatch of its commands: the activity the
/// step scheduled never starts (its task row is gone, so no attempt may run).
#[tokio::test(start_paused = true)]
async fn terminate_between_commit_and_dispatch_runs_no_activity() {
    let (e, store) = test_engine().await;
    let c = e.client();
    let id = "bug-terminate-dispatch";
    *store.pause_task_commit.lock().unwrap() = Some(Pause::AfterWrite);
    let paused = store.paused.notified();
    let run = c
        .start(sleep_then_quick, id, "must not run".to_string())
        .await
        .unwrap();
    // The step that consumes the timer and schedules `quick` is written, not yet answered.
    paused.await;
    c.terminate(id, "operator").await.unwrap();
    store.resume.notify_one();
    assert!(matches!(run.outcome().await.unwrap(), Outcome::Terminated(r) if r == "operator"));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        journal::count(id, "quick ran"),
        0,
        "an activity ran after its workflow was terminated: {:?}",
        journal::lines(id)
    );
}

/// `describe` of a Terminated workflow lists no pending operations: it waits for nothing.
#[tokio::test(start_paused = true)]
async fn describe_of_a_terminated_workflow_lists_no_pending_operations() {
    let e = engine().await;
    let c = e.client();
    let id = "bug-describe-terminated";
    c.start(sleeper, id, 3600).await.unwrap();
    until(&c, id, "a pending timer", |d| !d.pending.is_empty()).await;
    c.terminate(id, "operator").await.unwrap();
    let d = c.describe(id).await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Terminated);
    assert!(
        d.pending.is_empty(),
        "a terminated workflow waits for nothing:\n{d}"
    );
}

/// A timeout too large for an `Instant` (`Duration::MAX`) means no limit; it never panics the
/// runner (the options are also read back at recovery).
#[tokio::test(start_paused = true)]
async fn an_unbounded_start_to_close_timeout_means_no_limit() {
    let e = engine().await;
    let c = e.client();
    let id = "bug-timeout-max";
    let options = ActivityOptions {
        start_to_close_timeout: Some(Duration::MAX),
        ..ActivityOptions::default()
    };
    let run = c.start(quick_with, id, options).await.unwrap();
    let out = tokio::time::timeout(HOUR, run.outcome()).await;
    let d = c.describe(id).await.unwrap();
    assert!(
        matches!(&out, Ok(Ok(Outcome::Completed(s))) if s == "with options"),
        "after an hour: {out:?}\n{d}"
    );
}

/// `RetryPolicy::delay_before` saturates instead of panicking once the back-off exceeds
/// `Duration`'s range (`maximum_interval: Duration::MAX`, from the 66th attempt).
#[test]
fn retry_delay_saturates_with_an_unbounded_maximum_interval() {
    let policy = RetryPolicy {
        maximum_interval: Duration::MAX,
        ..RetryPolicy::default()
    };
    let delay = std::panic::catch_unwind(|| policy.delay_before(70));
    assert!(
        matches!(delay, Ok(Some(d)) if d >= Duration::from_secs(1 << 40)),
        "the delay should saturate, not panic: {delay:?}"
    );
}

// ===== regression tests ===================================================================

/// A failed commit dispatches nothing: the activity of the failed step does not run, no task
/// is recorded, the event that triggered the step is kept in the inbox and the version does
/// not move (the step is not half-applied); the retried step then runs it once.
#[tokio::test(start_paused = true)]
async fn failed_commit_dispatches_nothing_and_keeps_the_event() {
    let (e, store) = test_engine().await;
    let c = e.client();
    let id = "failed-commit";
    store.fail_task_commits.store(1, Ordering::SeqCst);
    c.start(sleep_then_quick, id, "x".to_string())
        .await
        .unwrap();
    for _ in 0..100 {
        if store.failed_commits.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.failed_commits.load(Ordering::SeqCst), 1);
    // Right after the failed commit: nothing dispatched, nothing recorded, the event kept.
    assert_eq!(journal::count(id, "quick ran"), 0);
    let d = c.describe(id).await.unwrap();
    assert_eq!(d.version, 1, "only the first step is committed:\n{d}");
    assert!(d.tasks.is_empty(), "{d}");
    // The fired timer is kept by the engine for the retried step; its row is still stored,
    // so a restart would fire it again.
    let running = store.inner.running_workflows().await.unwrap();
    assert_eq!(running[0].timers.len(), 1, "{d}");
    // The step is retried and then commits once: the activity runs once.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(journal::count(id, "quick ran"), 1);
    let h = c.history(id).await.unwrap();
    assert_eq!(
        count(&h, |k| matches!(k, EventKind::ActivityScheduled { .. })),
        1
    );
}

/// Terminate while a step's commit is in flight but not yet written: the commit fails with
/// AlreadyClosed and its commands are dropped.
#[tokio::test(start_paused = true)]
async fn terminate_before_the_commit_is_written_drops_the_step() {
    let (e, store) = test_engine().await;
    let c = e.client();
    let id = "terminate-before-write";
    *store.pause_task_commit.lock().unwrap() = Some(Pause::BeforeWrite);
    let paused = store.paused.notified();
    let run = c
        .start(sleep_then_quick, id, "must not run".to_string())
        .await
        .unwrap();
    paused.await;
    c.terminate(id, "operator").await.unwrap();
    store.resume.notify_one();
    assert!(matches!(
        run.outcome().await.unwrap(),
        Outcome::Terminated(_)
    ));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(journal::count(id, "quick ran"), 0);
    let h = c.history(id).await.unwrap();
    assert!(
        matches!(
            h.last().map(|e| &e.kind),
            Some(EventKind::WorkflowTerminated { .. })
        ),
        "{h:#?}"
    );
}

/// Steps of one workflow never overlap: three activity results and a cancel request arrive at
/// the same instant, every store call yields to the scheduler, and still no commit conflicts
/// (a conflict would mean two steps of the workflow ran at once). Each result is applied once.
#[tokio::test(start_paused = true)]
async fn steps_of_one_workflow_never_overlap_and_apply_each_event_once() {
    let (e, store) = test_engine().await;
    store.yield_often.store(true, Ordering::SeqCst);
    let c = e.client();
    let id = "no-overlap";
    let run = c.start(fan_out, id, 5).await.unwrap();
    assert!(journal::wait_for(id, "sleepy 5 started", Duration::from_secs(1)).await);
    let out = run.outcome().await.unwrap();
    assert_eq!(out, Outcome::Completed(15));
    assert_eq!(store.conflicts.load(Ordering::SeqCst), 0);
    let h = c.history(id).await.unwrap();
    assert_eq!(
        count(&h, |k| matches!(k, EventKind::ActivityCompleted { .. })),
        3,
        "{h:#?}"
    );
    assert_eq!(journal::count(id, "sleepy 5 started"), 3);
}

/// When a racing cancel is sent: (offset in ms from the deadline, then scheduler yields).
/// The yields at offset 0 land the request between the steps of the engine's tasks (timer or
/// runner reporting, stepper loading, committing, dispatching).
fn race_points() -> Vec<(i64, usize)> {
    let mut points = vec![(-2, 0), (-1, 0), (1, 0), (2, 0)];
    points.extend((0..24).map(|y| (0, y)));
    points
}

/// Sleeps until `deadline_ms + offset_ms` after `t0`, yields `yields` times, then requests
/// a cancel. Returns whether the request was recorded (false: the workflow had closed).
async fn cancel_at(
    c: &Client,
    id: &str,
    t0: tokio::time::Instant,
    deadline_ms: u64,
    (offset_ms, yields): (i64, usize),
) -> bool {
    let at = t0 + Duration::from_millis((deadline_ms as i64 + offset_ms) as u64);
    tokio::time::sleep_until(at).await;
    for _ in 0..yields {
        tokio::task::yield_now().await;
    }
    match c.cancel(id, "race").await {
        Ok(()) => true,
        Err(ClientError::AlreadyClosed { .. }) => false,
        Err(e) => panic!("{id}: {e}"),
    }
}

/// Same with a cancel arriving while the results are being stepped: TryCancel resolves the
/// calls still pending, the others keep their values; no conflict, each op resolved once.
#[tokio::test(start_paused = true)]
async fn cancel_arriving_with_results_is_applied_in_one_consistent_order() {
    let (e, store) = test_engine().await;
    store.yield_often.store(true, Ordering::SeqCst);
    let c = e.client();
    let mut seen = std::collections::HashSet::new();
    for (n, point) in race_points().into_iter().enumerate() {
        let id = format!("no-overlap-cancel{n}");
        let t0 = tokio::time::Instant::now();
        let run = c.start(fan_out, &id, 5).await.unwrap();
        let recorded = cancel_at(&c, &id, t0, 5000, point).await;
        let out = run.outcome().await.unwrap();
        seen.insert((recorded, out.status()));
        assert_eq!(store.conflicts.load(Ordering::SeqCst), 0);
        let h = c.history(&id).await.unwrap();
        let completed = count(&h, |k| matches!(k, EventKind::ActivityCompleted { .. }));
        let cancelled = count(&h, |k| matches!(k, EventKind::OperationCancelled { .. }));
        let requested = count(&h, |k| matches!(k, EventKind::CancelRequested { .. }));
        match &out {
            Outcome::Completed(15) => assert_eq!((completed, cancelled), (3, 0), "{h:#?}"),
            Outcome::Canceled(_) => {
                assert!(recorded && requested == 1 && cancelled >= 1, "{h:#?}");
                assert!(completed + cancelled <= 3, "{h:#?}");
            }
            other => panic!("unexpected outcome {other:?}: {h:#?}"),
        }
    }
    // The sweep landed the request before the result, between the result and its step, and
    // after the close.
    let expected = [
        (true, WorkflowStatus::Canceled),
        (true, WorkflowStatus::Completed),
        (false, WorkflowStatus::Completed),
    ];
    assert!(expected.iter().all(|k| seen.contains(k)), "{seen:?}");
}

/// An activity finishing at the instant a TryCancel arrives: the call resolves exactly once,
/// either with the value (no cancel action, no ignored result) or with the cancellation.
#[tokio::test(start_paused = true)]
async fn activity_finishing_as_the_cancel_arrives_resolves_the_call_once() {
    // Every store call yields, so the request can land between any two engine actions.
    let (e, store) = test_engine().await;
    store.yield_often.store(true, Ordering::SeqCst);
    let c = e.client();
    let mut seen = std::collections::HashSet::new();
    for (n, point) in race_points().into_iter().enumerate() {
        let id = format!("race-activity-cancel{n}");
        let t0 = tokio::time::Instant::now();
        let run = c
            .start(
                call,
                &id,
                call_plan(Which::Sleepy, 10, ActivityCancellationType::TryCancel),
            )
            .await
            .unwrap();
        let recorded = cancel_at(&c, &id, t0, 10_000, point).await;
        let out = run.outcome().await.unwrap();
        seen.insert((recorded, out.status()));
        let h = c.history(&id).await.unwrap();
        let completed = count(&h, |k| matches!(k, EventKind::ActivityCompleted { .. }));
        let cancelled = count(&h, |k| matches!(k, EventKind::OperationCancelled { .. }));
        let resolved = logs(&h)
            .iter()
            .filter(|l| l.starts_with("call resolved"))
            .count();
        assert_eq!(resolved, 1, "{h:#?}");
        match out {
            Outcome::Completed(10) => assert_eq!((completed, cancelled), (1, 0), "{h:#?}"),
            Outcome::Canceled(_) => {
                assert!(recorded, "{h:#?}");
                assert_eq!((completed, cancelled), (0, 1), "{h:#?}")
            }
            other => panic!("unexpected outcome {other:?}: {h:#?}"),
        }
    }
    // The sweep landed the request before the result, between the result and its step, and
    // after the close.
    let expected = [
        (true, WorkflowStatus::Canceled),
        (true, WorkflowStatus::Completed),
        (false, WorkflowStatus::Completed),
    ];
    assert!(expected.iter().all(|k| seen.contains(k)), "{seen:?}");
}

/// A timer firing at the instant the cancel arrives: it is either fired or cancelled, never
/// both, and the outcome agrees with the history.
#[tokio::test(start_paused = true)]
async fn timer_firing_as_the_cancel_arrives_is_fired_or_cancelled_never_both() {
    // Every store call yields, so the request can land between any two engine actions.
    let (e, store) = test_engine().await;
    store.yield_often.store(true, Ordering::SeqCst);
    let c = e.client();
    let mut seen = std::collections::HashSet::new();
    for (n, point) in race_points().into_iter().enumerate() {
        let id = format!("race-timer-cancel{n}");
        let t0 = tokio::time::Instant::now();
        let run = c.start(sleeper, &id, 10).await.unwrap();
        let recorded = cancel_at(&c, &id, t0, 10_000, point).await;
        let out = run.outcome().await.unwrap();
        seen.insert((recorded, out.status()));
        let h = c.history(&id).await.unwrap();
        let fired = count(&h, |k| matches!(k, EventKind::TimerFired { .. }));
        let cancelled = count(&h, |k| matches!(k, EventKind::TimerCancelled { .. }));
        match out {
            Outcome::Completed(_) => assert_eq!((fired, cancelled), (1, 0), "{h:#?}"),
            Outcome::Canceled(_) => {
                assert!(recorded, "{h:#?}");
                assert_eq!((fired, cancelled), (0, 1), "{h:#?}")
            }
            other => panic!("unexpected outcome {other:?}: {h:#?}"),
        }
    }
    // The sweep landed the request before the result, between the result and its step, and
    // after the close.
    let expected = [
        (true, WorkflowStatus::Canceled),
        (true, WorkflowStatus::Completed),
        (false, WorkflowStatus::Completed),
    ];
    assert!(expected.iter().all(|k| seen.contains(k)), "{seen:?}");
}

/// R8: a cancelled timer never delivers a late `TimerFired` that the workflow sees; an hour
/// later the history still ends with the close.
#[tokio::test(start_paused = true)]
async fn a_cancelled_timer_never_fires_later() {
    let e = engine().await;
    let c = e.client();
    let id = "timer-after-cancel";
    let run = c.start(sleeper, id, 60).await.unwrap();
    until(&c, id, "a pending timer", |d| !d.pending.is_empty()).await;
    c.cancel(id, "stop").await.unwrap();
    assert!(run.outcome().await.unwrap().is_canceled());
    let before = c.history(id).await.unwrap();
    tokio::time::sleep(HOUR).await;
    let after = c.history(id).await.unwrap();
    assert_eq!(before, after);
    assert_eq!(
        count(&after, |k| matches!(k, EventKind::TimerFired { .. })),
        0
    );
}

/// R6.4: a TryCancel activity that fails with a *retryable* error after seeing the cancel is
/// not retried.
#[tokio::test(start_paused = true)]
async fn no_retry_after_a_cancel_even_for_a_retryable_failure() {
    let e = engine().await;
    let c = e.client();
    let id = "no-retry-after-cancel";
    let plan = call_plan(Which::CleanupFails, 60, ActivityCancellationType::TryCancel);
    let run = c.start(call, id, plan).await.unwrap();
    assert!(journal::wait_for(id, "cleanup_fails attempt 1", Duration::from_secs(1)).await);
    c.cancel(id, "stop").await.unwrap();
    assert!(run.outcome().await.unwrap().is_canceled());
    tokio::time::sleep(HOUR).await;
    assert_eq!(journal::count(id, "cleanup_fails attempt"), 1);
}

/// R6 WaitCancellationCompleted: the activity's own failure after the cancel is the call's
/// result (not retried), and since it is not a cancellation the workflow is Failed (R2.3).
#[tokio::test(start_paused = true)]
async fn wait_cancellation_completed_returns_the_activity_failure_without_retrying() {
    let e = engine().await;
    let c = e.client();
    let id = "wcc-own-failure";
    let mut plan = call_plan(
        Which::CleanupFails,
        60,
        ActivityCancellationType::WaitCancellationCompleted,
    );
    plan.options.heartbeat_timeout = Some(Duration::from_secs(5));
    let run = c.start(call, id, plan).await.unwrap();
    assert!(journal::wait_for(id, "cleanup_fails attempt 1", Duration::from_secs(1)).await);
    c.cancel(id, "stop").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(
        matches!(
            &out,
            Outcome::Failed(WorkflowError::Activity {
                failure: ActivityFailure::Application { message, .. },
                ..
            }) if message == "cleanup failed"
        ),
        "{out:?}"
    );
    tokio::time::sleep(HOUR).await;
    assert_eq!(journal::count(id, "cleanup_fails attempt"), 1);
}

/// Abandon: the activity is never told (every heartbeat is Ok, before and after the workflow
/// closed), runs once to its end, and its result is dropped.
#[tokio::test(start_paused = true)]
async fn scenario_11_abandoned_activity_is_never_told_even_after_the_workflow_closed() {
    let e = engine().await;
    let c = e.client();
    let id = "abandon-untold";
    let plan = call_plan(Which::IgnoresCancel, 10, ActivityCancellationType::Abandon);
    let run = c.start(call, id, plan).await.unwrap();
    assert!(journal::wait_for(id, "hb ok", Duration::from_secs(5)).await);
    c.cancel(id, "stop").await.unwrap();
    assert!(run.outcome().await.unwrap().is_canceled());
    assert!(journal::wait_for(id, "ignores_cancel finished", Duration::from_secs(20)).await);
    assert_eq!(
        journal::count(id, "hb cancelled"),
        0,
        "{:?}",
        journal::lines(id)
    );
    assert_eq!(journal::count(id, "hb ok"), 10);
    assert_eq!(journal::count(id, "ignores_cancel attempt"), 1);
    let d = c.describe(id).await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Canceled);
    assert!(d.pending.is_empty() && d.tasks.is_empty(), "{d}");
}

/// A workflow that returns in the same step it started an activity and a timer: neither is
/// dispatched (the close wins), nothing is left pending.
#[tokio::test(start_paused = true)]
async fn operations_started_in_the_closing_step_are_never_dispatched() {
    let e = engine().await;
    let c = e.client();
    let id = "start-and-return";
    let run = c.start(start_and_return, id, ()).await.unwrap();
    assert_eq!(
        run.outcome().await.unwrap(),
        Outcome::Completed("returned".to_string())
    );
    tokio::time::sleep(2 * HOUR).await;
    assert_eq!(journal::count(id, "beats attempt"), 0);
    let d = c.describe(id).await.unwrap();
    assert!(d.pending.is_empty() && d.tasks.is_empty(), "{d}");
    let h = c.history(id).await.unwrap();
    assert_eq!(count(&h, |k| matches!(k, EventKind::TimerFired { .. })), 0);
    assert!(matches!(
        h.last().map(|e| &e.kind),
        Some(EventKind::WorkflowCompleted { .. })
    ));
}

/// A workflow that returns while an activity it started is running: the activity is told at
/// its next heartbeat (the close cancels it) and its result is dropped.
#[tokio::test(start_paused = true)]
async fn closing_cancels_a_running_started_activity() {
    let e = engine().await;
    let c = e.client();
    let id = "start-sleep-return";
    let run = c.start(start_sleep_return, id, ()).await.unwrap();
    assert!(run.outcome().await.unwrap().is_completed());
    assert!(journal::wait_for(id, "beats saw cancel", Duration::from_secs(5)).await);
    assert_eq!(journal::count(id, "beats finished"), 0);
    assert_eq!(journal::count(id, "beats attempt"), 1);
}

/// R1.4: a second request changes nothing, and an operation that already finished gets no
/// cancel action.
#[tokio::test(start_paused = true)]
async fn cancel_is_idempotent_and_skips_finished_operations() {
    let e = engine().await;
    let c = e.client();
    let id = "r1-4-finished";
    let run = c.start(quick_then_sleep, id, ()).await.unwrap();
    until(&c, id, "the sleep", |d| {
        d.pending
            .iter()
            .any(|p| matches!(p.kind, workflow_core::OpKind::Timer { .. }))
    })
    .await;
    c.cancel(id, "first").await.unwrap();
    c.cancel(id, "second").await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(
        matches!(&out, Outcome::Canceled(WorkflowError::Cancelled { reason }) if reason == "first"),
        "{out:?}"
    );
    let h = c.history(id).await.unwrap();
    assert_eq!(
        count(&h, |k| matches!(k, EventKind::CancelRequested { .. })),
        1
    );
    assert_eq!(
        count(&h, |k| matches!(k, EventKind::TimerCancelled { .. })),
        1
    );
    assert_eq!(
        count(&h, |k| matches!(
            k,
            EventKind::ActivityCancelRequested { .. } | EventKind::ActivityAbandoned { .. }
        )),
        0
    );
    assert_eq!(journal::count(id, "quick ran"), 1);
    assert!(matches!(
        c.cancel(id, "third").await,
        Err(ClientError::AlreadyClosed {
            status: WorkflowStatus::Canceled,
            ..
        })
    ));
}

/// Every outcome waiter is woken by terminate; a waiter is woken with `Shutdown` by shutdown.
#[tokio::test(start_paused = true)]
async fn outcome_waiters_are_woken_by_terminate_and_by_shutdown() {
    let e = engine().await;
    let c = e.client();
    let id = "waiters";
    let run = c.start(sleeper, id, 3600).await.unwrap();
    let w1 = tokio::spawn({
        let run = run.clone();
        async move { run.outcome().await }
    });
    let w2 = tokio::spawn({
        let c = c.clone();
        async move { c.outcome_json("waiters").await }
    });
    settle().await;
    c.terminate(id, "stop").await.unwrap();
    assert!(matches!(w1.await.unwrap(), Ok(Outcome::Terminated(r)) if r == "stop"));
    assert!(matches!(w2.await.unwrap(), Ok(Outcome::Terminated(r)) if r == "stop"));

    let run = c.start(sleeper, "waiters-shutdown", 3600).await.unwrap();
    let w3 = tokio::spawn(async move { run.outcome().await });
    settle().await;
    e.shutdown().await;
    assert!(matches!(w3.await.unwrap(), Err(ClientError::Shutdown)));
}

/// Shutdown stops running activities and timers: nothing heartbeats or fires afterwards, and
/// the store keeps the workflows Running for the next engine.
#[tokio::test(start_paused = true)]
async fn shutdown_leaves_no_task_running() {
    let e = engine().await;
    let c = e.client();
    let id = "shutdown-stops";
    c.start(
        call,
        id,
        call_plan(Which::Beats, 100, ActivityCancellationType::TryCancel),
    )
    .await
    .unwrap();
    c.start(sleeper, "shutdown-stops-timer", 10).await.unwrap();
    assert!(journal::wait_for(id, "beat 2", Duration::from_secs(10)).await);
    e.shutdown().await;
    let beats_at_shutdown = journal::count(id, "beat ");
    let timer_history = c.history("shutdown-stops-timer").await.unwrap();
    tokio::time::sleep(HOUR).await;
    assert_eq!(journal::count(id, "beat "), beats_at_shutdown);
    assert_eq!(
        c.history("shutdown-stops-timer").await.unwrap(),
        timer_history
    );
    assert_eq!(
        c.describe(id).await.unwrap().status,
        WorkflowStatus::Running
    );
    assert!(matches!(
        c.start(sleeper, "after-shutdown", 1).await,
        Err(ClientError::Shutdown)
    ));
    assert!(matches!(c.cancel(id, "").await, Err(ClientError::Shutdown)));
}

/// R6.4: heartbeats every 4 s keep a 5 s heartbeat timeout quiet for a 20 s activity.
#[tokio::test(start_paused = true)]
async fn heartbeats_inside_the_timeout_keep_the_attempt_alive() {
    let e = engine().await;
    let c = e.client();
    let id = "heartbeat-inside";
    let mut plan = call_plan(Which::SlowBeats, 20, ActivityCancellationType::TryCancel);
    plan.options.heartbeat_timeout = Some(Duration::from_secs(5));
    let run = c.start(call, id, plan).await.unwrap();
    assert_eq!(run.outcome().await.unwrap(), Outcome::Completed(20));
    assert_eq!(journal::count(id, "slow_beats attempt"), 1);
}

/// R6.4: heartbeats every 8 s miss a 5 s heartbeat timeout on every attempt; with three
/// attempts allowed the call fails with a heartbeat timeout after exactly three attempts.
#[tokio::test(start_paused = true)]
async fn heartbeat_timeout_ends_each_attempt_and_retries_follow_the_policy() {
    let e = engine().await;
    let c = e.client();
    let id = "heartbeat-missed";
    let mut plan = call_plan(Which::SlowBeats, 40, ActivityCancellationType::TryCancel);
    plan.options.heartbeat_timeout = Some(Duration::from_secs(5));
    plan.options.retry = RetryPolicy::default()
        .with_initial_interval(Duration::from_secs(1))
        .with_maximum_attempts(3);
    let run = c.start(call, id, plan).await.unwrap();
    let out = run.outcome().await.unwrap();
    assert!(
        matches!(
            &out,
            Outcome::Failed(WorkflowError::Activity {
                failure: ActivityFailure::Timeout {
                    kind: workflow_core::TimeoutKind::Heartbeat
                },
                ..
            })
        ),
        "{out:?}"
    );
    assert_eq!(journal::count(id, "slow_beats attempt"), 3);
}

/// A cancel during a WaitCancellationCompleted call is visible in `describe`: the pending
/// operation says what it waits for and the task says the cancel was sent.
#[tokio::test(start_paused = true)]
async fn describe_shows_a_wait_cancellation_completed_call_waiting_after_the_cancel() {
    let e = engine().await;
    let c = e.client();
    let id = "describe-wcc";
    let plan = call_plan(
        Which::Sleepy,
        600,
        ActivityCancellationType::WaitCancellationCompleted,
    );
    let run = c.start(call, id, plan).await.unwrap();
    assert!(journal::wait_for(id, "sleepy 600 started", Duration::from_secs(1)).await);
    c.cancel(id, "stop").await.unwrap();
    until(&c, id, "the cancel step", |d| d.version >= 2).await;
    let d = c.describe(id).await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Running);
    assert_eq!(d.pending.len(), 1, "{d}");
    assert!(d.pending[0].waiting_for.contains("after a cancel"), "{d}");
    assert!(
        d.tasks.len() == 1 && d.tasks[0].cancel_requested && d.tasks[0].notify_running,
        "{d}"
    );
    assert_eq!(run.outcome().await.unwrap(), Outcome::Completed(600));
}

// ===== results delivered in memory, and a cancel after them ===============================

/// Clients by workflow id, for activities that act on their own workflow.
static CLIENTS: Mutex<BTreeMap<String, Client>> = Mutex::new(BTreeMap::new());

/// Returns "done"; a cancel of its workflow is requested right after it returned (by a task
/// that runs once this attempt is over and its result was handed to the engine), before the
/// workflow's next step.
#[activity]
async fn done_then_cancelled(ctx: ActivityContext) -> Result<String, ActivityError> {
    let id = ctx.info().workflow_id.clone();
    let client = CLIENTS.lock().unwrap().get(&id).cloned();
    if let Some(client) = client {
        tokio::spawn(async move {
            client.cancel(&id, "too late").await.unwrap();
        });
    }
    Ok("done".to_string())
}

#[workflow]
async fn awaits_done(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let r = ctx.activity(done_then_cancelled, ()).await?;
    Ok(r)
}

/// An activity that finished before the cancel was requested is a result, not a
/// cancellation: the step must apply the events in the order they arrived. The result was
/// handed to the engine in memory first, the cancel request reached the store's inbox
/// after it; the step applies every inbox event before every in-memory one, so the cancel
/// resolves the (`TryCancel`) call with a cancellation error, the finished result is
/// "ignored", the history says the cancel came first, and the workflow closes Canceled
/// instead of Completed. (With both events in the inbox, as before, it completed.)
#[tokio::test(start_paused = true)]
async fn r6_3_a_result_delivered_before_a_cancel_is_applied_before_it() {
    let engine = Engine::builder()
        .in_memory()
        .register(awaits_done)
        .activity(done_then_cancelled)
        .build()
        .await
        .unwrap();
    let client = engine.client();
    let id = "result-then-cancel";
    CLIENTS
        .lock()
        .unwrap()
        .insert(id.to_string(), client.clone());
    let run = client.start(awaits_done, id, ()).await.unwrap();
    let outcome = run.outcome().await.unwrap();
    let history = client.history(id).await.unwrap();
    let kinds: Vec<&EventKind> = history.iter().map(|e| &e.kind).collect();
    assert_eq!(
        count(&history, |k| matches!(k, EventKind::ResultIgnored { .. })),
        0,
        "the result that arrived first was ignored: {kinds:#?}"
    );
    let completed_at = kinds
        .iter()
        .position(|k| matches!(k, EventKind::ActivityCompleted { .. }));
    let cancel_at = kinds
        .iter()
        .position(|k| matches!(k, EventKind::CancelRequested { .. }));
    assert!(
        completed_at.is_some() && completed_at < cancel_at,
        "the history must show the result before the cancel: {kinds:#?}"
    );
    assert!(
        matches!(&outcome, Outcome::Completed(r) if r == "done"),
        "{outcome:?}"
    );
    engine.shutdown().await;
}

// ===== the timer driver ===================================================================

#[workflow]
async fn nap(ctx: WorkflowContext, secs: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_secs(secs)).await?;
    Ok(secs)
}

/// `Engine` says "dropping the handles does not stop" the tasks it spawned: activities and
/// steps indeed go on, and so did each timer's own task. The timer driver holds the engine
/// only weakly, so once the handles are gone and no activity or step is running, the
/// engine is freed, its task set aborts the driver, and a sleeping workflow never wakes
/// (until a restart), while one that was running an activity goes on until its next sleep.
#[tokio::test(start_paused = true)]
async fn dropping_the_engine_handles_does_not_stop_a_sleeping_workflow() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::builder()
        .register(nap)
        .store_arc(store.clone())
        .build()
        .await
        .unwrap();
    let run = engine
        .client()
        .start(nap, "dropped-engine", 10)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let timers = store.running_workflows().await.unwrap()[0].timers.len();
    assert_eq!(timers, 1, "asleep");
    drop(run);
    drop(engine);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let record = store.load_workflow("dropped-engine").await.unwrap();
    assert_eq!(record.status, WorkflowStatus::Completed);
}

/// One driver sleeps until the earliest deadline: a timer armed while it sleeps for a later
/// one (another workflow's) wakes it and fires on time, two timers with the same deadline
/// both fire, and none fires before its deadline (paused clock: exact virtual times).
#[tokio::test(start_paused = true)]
async fn an_earlier_timer_armed_while_the_driver_sleeps_fires_on_time_and_none_early() {
    let engine = Engine::builder()
        .in_memory()
        .register(nap)
        .build()
        .await
        .unwrap();
    let client = engine.client();
    let t0 = tokio::time::Instant::now();
    let long = client.start(nap, "nap-100", 100).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let a = client.start(nap, "nap-5a", 5).await.unwrap();
    let b = client.start(nap, "nap-5b", 5).await.unwrap();
    let (a, b) = tokio::join!(a.outcome(), b.outcome());
    let short_done = t0.elapsed();
    assert!(a.unwrap().is_completed() && b.unwrap().is_completed());
    assert!(
        short_done >= Duration::from_secs(6) && short_done < Duration::from_secs(7),
        "the 5 s naps started at 1 s ended at {short_done:?}"
    );
    assert!(long.outcome().await.unwrap().is_completed());
    let long_done = t0.elapsed();
    assert!(
        long_done >= Duration::from_secs(100) && long_done < Duration::from_secs(101),
        "the 100 s nap ended at {long_done:?}"
    );
    engine.shutdown().await;
}

// ===== heartbeat writes in flight =========================================================

#[activity]
async fn beat_then_fail(ctx: ActivityContext) -> Result<String, ActivityError> {
    let from: Option<String> = ctx.heartbeat_details();
    if from.is_none() {
        ctx.heartbeat("page 7")?;
        // Any await that completes at once (a channel, a quick I/O) before the failure.
        tokio::task::yield_now().await;
        return Err(ActivityError::retryable("connection reset"));
    }
    Ok(format!("resumed from {}", from.unwrap_or_default()))
}

#[workflow]
async fn retries_in_an_hour(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let r = ctx
        .activity(beat_then_fail, ())
        .retry(RetryPolicy::default().with_initial_interval(Duration::from_secs(3600)))
        .await?;
    Ok(r)
}

/// The heartbeat an attempt made before it failed is in the store while the next attempt
/// waits in back-off, so that an engine that restarts meanwhile hands it to the retry.
/// Since heartbeat writes run beside the activity, the write of that beat may still be in
/// flight (or not yet polled) when the attempt ends: it must be finished, not dropped.
#[tokio::test(start_paused = true)]
async fn the_last_heartbeat_before_an_attempt_ends_is_stored() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::builder()
        .register(retries_in_an_hour)
        .activity(beat_then_fail)
        .store_arc(store.clone())
        .build()
        .await
        .unwrap();
    engine
        .client()
        .start(retries_in_an_hour, "last-beat", ())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    // In back-off, an hour before the second attempt.
    let d = engine.client().describe("last-beat").await.unwrap();
    assert_eq!(d.tasks.len(), 1, "{d}");
    assert_eq!(
        d.tasks[0].heartbeat_details,
        Some(serde_json::json!("page 7")),
        "{d}"
    );
    assert!(d.tasks[0].last_heartbeat_ms.is_some(), "{d}");
    engine.shutdown().await;
}

#[activity]
async fn beat_and_fail_at_once(ctx: ActivityContext) -> Result<String, ActivityError> {
    let from: Option<String> = ctx.heartbeat_details();
    if from.is_none() {
        ctx.heartbeat("page 9")?;
        // Fails in the same poll as the heartbeat (a parse error, say): no await between.
        return Err(ActivityError::retryable("bad page"));
    }
    Ok(format!("resumed from {}", from.unwrap_or_default()))
}

#[workflow]
async fn beats_at_once(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let r = ctx
        .activity(beat_and_fail_at_once, ())
        .retry(RetryPolicy::default().with_initial_interval(Duration::from_secs(3600)))
        .await?;
    Ok(r)
}

/// The same when the attempt ends in the very poll that heartbeated: the beat's notification
/// is still pending when the activity's future completes (the `biased` select sees the end
/// first), so neither an in-flight write nor a folded beat stands for it.
#[tokio::test(start_paused = true)]
async fn a_heartbeat_in_the_poll_that_ends_the_attempt_is_stored() {
    let engine = Engine::builder()
        .in_memory()
        .register(beats_at_once)
        .activity(beat_and_fail_at_once)
        .build()
        .await
        .unwrap();
    engine
        .client()
        .start(beats_at_once, "last-beat-at-once", ())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let d = engine.client().describe("last-beat-at-once").await.unwrap();
    assert_eq!(d.tasks.len(), 1, "{d}");
    assert_eq!(
        d.tasks[0].heartbeat_details,
        Some(serde_json::json!("page 9")),
        "{d}"
    );
    engine.shutdown().await;
}
