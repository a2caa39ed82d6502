//! What activity code sees: [`ActivityContext`] (heartbeats, cancellation, attempt number) and
//! [`ActivityInfo`].
//!
//! A running activity learns of a cancel **only through its heartbeat**
//! ([R6.2](crate::semantics#r6-activities)): the engine sets a flag when the workflow cancels the
//! activity, and the next call to [`ActivityContext::heartbeat`] observes that flag, fires the
//! activity-local signal ([`ActivityContext::cancelled`], [`ActivityContext::is_cancelled`]) and
//! returns [`ActivityError::Cancelled`]. An activity that never heartbeats is never interrupted.
//!
//! A local activity (`ctx.local_activity(..)`, [R6.7](crate::semantics#r6-activities)) runs
//! beside the step that waits for it, in the same worker: a stop reaches it **at once**, so
//! [`ActivityContext::cancelled`] resolves and [`ActivityContext::stop_reason`] is set without
//! a heartbeat, and its heartbeats write nothing.

use crate::{Activity, ActivityError, BoxFuture, OpId};
use serde::de::DeserializeOwned;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Who is running: the workflow, the operation and the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityInfo {
    /// The id of the workflow that scheduled the activity.
    pub workflow_id: String,
    /// The operation id of the call inside that workflow.
    pub op: OpId,
    /// The activity's registered name.
    pub activity: String,
    /// The attempt number, starting at 1.
    pub attempt: u32,
}

/// The context given to every activity attempt.
///
/// Cheap to clone; clones share the same heartbeat and cancellation state.
#[derive(Clone)]
pub struct ActivityContext {
    info: Arc<ActivityInfo>,
    previous_details: Option<Arc<serde_json::Value>>,
    task: Arc<TaskControl>,
    attempt: Arc<AttemptState>,
}

impl std::fmt::Debug for ActivityContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityContext")
            .field("info", &self.info)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl ActivityContext {
    pub(crate) fn new(
        info: ActivityInfo,
        previous_details: Option<serde_json::Value>,
        task: Arc<TaskControl>,
        attempt: Arc<AttemptState>,
    ) -> Self {
        ActivityContext {
            info: Arc::new(info),
            previous_details: previous_details.map(Arc::new),
            task,
            attempt,
        }
    }

    /// Reports progress: records the heartbeat time (which keeps the `heartbeat_timeout`
    /// watchdog quiet) and `details` (stored with the task, so a later attempt can read them
    /// with [`heartbeat_details`](Self::heartbeat_details)).
    ///
    /// Returns `Err(ActivityError::Cancelled)` once the activity must stop, and from then
    /// on; propagate it with `?` to accept. [`stop_reason`](Self::stop_reason) says why: the
    /// workflow cancelled it, the workflow closed (in this process or another), or the worker
    /// is shutting down.
    pub fn heartbeat(&self, details: impl serde::Serialize) -> Result<(), ActivityError> {
        let details = crate::json_limits::to_stored_value(&details).map_err(|e| {
            ActivityError::non_retryable(format!(
                "the heartbeat details of activity `{}` cannot be stored: {e}",
                self.info.activity
            ))
        })?;
        self.attempt.record(details);
        if self.task.cancel.is_cancelled() {
            self.attempt.local_cancel.cancel();
        }
        if self.attempt.local_cancel.is_cancelled() {
            return Err(ActivityError::Cancelled);
        }
        Ok(())
    }

    /// Completes once a heartbeat has observed a cancel sent to this activity.
    ///
    /// It never completes on its own: the activity must keep calling
    /// [`heartbeat`](Self::heartbeat) for a cancel to reach it (R6.2). A local activity is the
    /// exception: there it completes as soon as the stop is sent (R6.7).
    pub async fn cancelled(&self) {
        self.attempt.local_cancel.cancelled().await
    }

    /// Whether a heartbeat has observed a cancel sent to this activity (for a local activity:
    /// whether a stop was sent, R6.7). Never waits.
    pub fn is_cancelled(&self) -> bool {
        self.attempt.local_cancel.is_cancelled()
    }

    /// Why this activity must stop, once a heartbeat has observed it (`None` before; for a
    /// local activity, as soon as the stop is sent): the workflow cancelled it, the workflow
    /// closed, its timeout passed, or the worker is shutting down.
    pub fn stop_reason(&self) -> Option<StopReason> {
        if !self.is_cancelled() {
            return None;
        }
        lock(&self.task.reason).clone()
    }

    /// The attempt number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.info.attempt
    }

    /// Which workflow, operation, activity and attempt this is.
    pub fn info(&self) -> &ActivityInfo {
        &self.info
    }

    /// The details of the last heartbeat of a previous attempt, decoded as `T`; `None` on the
    /// first attempt, when no previous attempt heartbeated, or when the details do not decode
    /// as `T`.
    pub fn heartbeat_details<T: DeserializeOwned>(&self) -> Option<T> {
        let details = self.previous_details.as_ref()?;
        serde_json::from_value(details.as_ref().clone()).ok()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a running activity must stop ([`ActivityContext::stop_reason`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The workflow cancelled the activity (its scope was cancelled: by a cancel request, a
    /// timeout of an enclosing scope, or workflow code). The reason given, when known.
    CancelRequested {
        /// The cancel's reason.
        reason: Option<String>,
    },
    /// Another worker took the workflow over (this worker was partitioned or frozen past its
    /// lease): whatever the attempt returns would be refused, and the new holder runs the
    /// task again.
    TakenOver,
    /// The workflow closed, in this process or in another one, and waits for nothing any more.
    WorkflowClosed {
        /// How it closed, when known (a workflow deleted since is `None`).
        status: Option<crate::WorkflowStatus>,
    },
    /// The worker running the activity is shutting down gracefully: the attempt has a grace
    /// period ([`EngineBuilder::activity_grace`](crate::EngineBuilder::activity_grace)) to
    /// end, and its task runs again on the worker that takes the workflow over (whatever the
    /// attempt returns meanwhile is not recorded).
    WorkerShuttingDown,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::CancelRequested { reason: Some(r) } => write!(f, "cancel requested: {r}"),
            StopReason::CancelRequested { reason: None } => f.write_str("cancel requested"),
            StopReason::WorkflowClosed { status: Some(s) } => {
                write!(f, "the workflow closed ({s})")
            }
            StopReason::WorkflowClosed { status: None } => f.write_str("the workflow closed"),
            StopReason::WorkerShuttingDown => f.write_str("the worker is shutting down"),
            StopReason::TakenOver => f.write_str("another worker took the workflow over"),
        }
    }
}

/// Engine-side control of one scheduled activity (all its attempts).
#[derive(Debug, Default)]
pub(crate) struct TaskControl {
    /// The engine-side cancel flag that heartbeats read (set for `TryCancel` and
    /// `WaitCancellationCompleted`, and for every other reason to stop).
    pub(crate) cancel: CancellationToken,
    /// No further attempt may start; a back-off wait ends at once. Set by every cancel,
    /// `Abandon` included, and when the workflow closes.
    pub(crate) stop: CancellationToken,
    /// Why, the first reason given.
    reason: Mutex<Option<StopReason>>,
    /// An `Abandon` call: nothing the workflow does reaches it, neither its cancel nor the
    /// close that follows (scenario 11: "never told, runs once to its end").
    abandoned: bool,
    /// The lease epoch its runner works under: a runner of an earlier epoch is stale.
    pub(crate) epoch: u64,
}

impl TaskControl {
    /// The control of a new task run under the lease of `epoch`; `abandoned` for an
    /// `Abandon` call.
    pub(crate) fn new(abandoned: bool, epoch: u64) -> Self {
        TaskControl {
            abandoned,
            epoch,
            ..TaskControl::default()
        }
    }

    /// Delivers a cancel: the task never starts another attempt; a running attempt is told
    /// at its next heartbeat when `notify_running` is set.
    pub(crate) fn cancel(&self, notify_running: bool) {
        self.stop_for(StopReason::CancelRequested { reason: None }, notify_running);
    }

    /// Stops the task because its workflow closed: a running attempt is told at its next
    /// heartbeat, unless the call was `Abandon`.
    pub(crate) fn workflow_closed(&self, status: Option<crate::WorkflowStatus>) {
        self.stop_for(StopReason::WorkflowClosed { status }, !self.abandoned);
    }

    /// Stops the task for `reason`: no further attempt starts; a running attempt is told at
    /// its next heartbeat when `notify_running` is set. The first reason given is kept.
    pub(crate) fn stop_for(&self, reason: StopReason, notify_running: bool) {
        if notify_running {
            lock(&self.reason).get_or_insert(reason);
            self.cancel.cancel();
        }
        self.stop.cancel();
    }
}

/// The state of one attempt, shared between its context(s) and the engine's watchdog.
#[derive(Debug, Default)]
pub(crate) struct AttemptState {
    /// The activity-local signal, fired by a heartbeat that observed the cancel.
    pub(crate) local_cancel: CancellationToken,
    /// Notified on every heartbeat.
    pub(crate) beat: Notify,
    details: Mutex<Option<serde_json::Value>>,
}

impl AttemptState {
    /// The state of an attempt that hears a stop of `task` at once, without a heartbeat (a
    /// local activity, R6.7): its signal is a child of the task's cancel flag.
    pub(crate) fn told_at_once(task: &TaskControl) -> AttemptState {
        AttemptState {
            local_cancel: task.cancel.child_token(),
            ..AttemptState::default()
        }
    }

    fn record(&self, details: serde_json::Value) {
        *lock(&self.details) = Some(details);
        self.beat.notify_one();
    }

    /// The details of the last heartbeat of this attempt.
    pub(crate) fn last_details(&self) -> Option<serde_json::Value> {
        lock(&self.details).clone()
    }
}

/// An activity with its types erased, as the engine's registry holds it.
pub(crate) trait DynActivity: Send + Sync {
    /// Starts one attempt from a JSON input; `Err` when the input does not decode.
    fn start(
        &self,
        ctx: ActivityContext,
        input: serde_json::Value,
    ) -> Result<BoxFuture<Result<serde_json::Value, ActivityError>>, String>;
}

pub(crate) struct RegisteredActivity<A>(pub(crate) A);

impl<A: Activity> DynActivity for RegisteredActivity<A> {
    fn start(
        &self,
        ctx: ActivityContext,
        input: serde_json::Value,
    ) -> Result<BoxFuture<Result<serde_json::Value, ActivityError>>, String> {
        let input: A::Input = serde_json::from_value(input).map_err(|e| {
            format!(
                "the input does not match activity `{}`'s input type: {e}",
                A::NAME
            )
        })?;
        let fut = self.0.run(ctx, input);
        Ok(Box::pin(async move {
            let output = fut.await?;
            crate::json_limits::to_stored_value(&output).map_err(|e| {
                ActivityError::non_retryable(format!(
                    "the output of activity `{}` cannot be stored: {e}",
                    A::NAME
                ))
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(task: Arc<TaskControl>, previous: Option<serde_json::Value>) -> ActivityContext {
        ActivityContext::new(
            ActivityInfo {
                workflow_id: "wf".into(),
                op: OpId(1),
                activity: "act".into(),
                attempt: 2,
            },
            previous,
            task,
            Arc::new(AttemptState::default()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn r6_2_cancel_is_seen_only_at_a_heartbeat() {
        let task = Arc::new(TaskControl::default());
        let ctx = context(task.clone(), None);
        assert_eq!(ctx.heartbeat(1), Ok(()));
        task.cancel(true);
        // The engine-side flag is set, but the activity has not heartbeated yet.
        assert!(!ctx.is_cancelled());
        assert_eq!(ctx.heartbeat(2), Err(ActivityError::Cancelled));
        assert!(ctx.is_cancelled());
        ctx.cancelled().await;
        assert_eq!(ctx.heartbeat(3), Err(ActivityError::Cancelled));
        assert_eq!(ctx.attempt.last_details(), Some(serde_json::json!(3)));
    }

    #[tokio::test(start_paused = true)]
    async fn r6_7_a_local_attempt_hears_a_stop_at_once_without_a_heartbeat() {
        let task = Arc::new(TaskControl::default());
        let ctx = ActivityContext::new(
            ActivityInfo {
                workflow_id: "wf".into(),
                op: OpId(1),
                activity: "act".into(),
                attempt: 1,
            },
            None,
            task.clone(),
            Arc::new(AttemptState::told_at_once(&task)),
        );
        assert!(!ctx.is_cancelled());
        assert_eq!(ctx.stop_reason(), None);
        task.stop_for(
            StopReason::CancelRequested {
                reason: Some("stop".into()),
            },
            true,
        );
        // No heartbeat in between.
        ctx.cancelled().await;
        assert_eq!(
            ctx.stop_reason(),
            Some(StopReason::CancelRequested {
                reason: Some("stop".into())
            })
        );
        assert_eq!(ctx.heartbeat(()), Err(ActivityError::Cancelled));
    }

    #[tokio::test(start_paused = true)]
    async fn abandon_never_reaches_the_heartbeat() {
        let task = Arc::new(TaskControl::default());
        let ctx = context(task.clone(), None);
        task.cancel(false);
        assert_eq!(ctx.heartbeat(()), Ok(()));
        assert!(!ctx.is_cancelled());
        assert!(task.stop.is_cancelled());
    }

    #[test]
    fn context_is_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<ActivityContext>();
        check::<ActivityInfo>();
    }

    #[test]
    fn previous_heartbeat_details_decode() {
        let ctx = context(
            Arc::new(TaskControl::default()),
            Some(serde_json::json!({"done": 3})),
        );
        #[derive(serde::Deserialize, PartialEq, Debug)]
        struct Progress {
            done: u32,
        }
        assert_eq!(ctx.heartbeat_details(), Some(Progress { done: 3 }));
        assert_eq!(ctx.heartbeat_details::<String>(), None);
        assert_eq!(ctx.attempt(), 2);
        assert_eq!(ctx.info().activity, "act");
    }
}
