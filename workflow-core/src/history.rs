//! The history of a workflow: an append-only list of what happened, written in the same
//! transaction as the step that caused it. It is for people and tools (`describe`, `wf
//! history`); the engine never replays it, because the snapshot is the state.

use crate::{
    ActivityCancellationType, ActivityFailure, ChildFailure, ChildWorkflowCancellationType, OpId,
    ParentClosePolicy,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One entry of a workflow's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// Position in the history, starting at 1.
    pub seq: u64,
    /// Engine time when it was recorded, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum EventKind {
    /// The workflow was started with this input.
    WorkflowStarted {
        /// Registered workflow name.
        workflow: String,
        /// The input, as JSON.
        input: serde_json::Value,
    },
    /// A cancel request reached the workflow (R1.5: the reason is recorded).
    CancelRequested {
        /// The reason given by the caller ("" if none).
        reason: String,
    },
    /// An activity was scheduled.
    ActivityScheduled {
        /// Operation id.
        op: OpId,
        /// Activity name.
        activity: String,
        /// Its cancellation type.
        cancellation: ActivityCancellationType,
    },
    /// An activity returned a value.
    ActivityCompleted {
        /// Operation id.
        op: OpId,
        /// Activity name.
        activity: String,
    },
    /// An activity failed, timed out or accepted a cancellation.
    ActivityFailed {
        /// Operation id.
        op: OpId,
        /// Activity name.
        activity: String,
        /// Why.
        failure: ActivityFailure,
    },
    /// A cancel was sent to a scheduled or running activity.
    ActivityCancelRequested {
        /// Operation id.
        op: OpId,
        /// Activity name.
        activity: String,
        /// True when the workflow waits for the activity to finish (`WaitCancellationCompleted`).
        wait: bool,
    },
    /// An `Abandon` activity was left running; its result will be ignored.
    ActivityAbandoned {
        /// Operation id.
        op: OpId,
        /// Activity name.
        activity: String,
    },
    /// A local activity was started in the worker stepping the workflow (R6.7): it runs once
    /// this step is committed, without a task record.
    LocalActivityStarted {
        /// Operation id.
        op: OpId,
        /// Activity name.
        activity: String,
        /// Its cancellation type.
        cancellation: ActivityCancellationType,
    },
    /// A local activity returned a value; its result was committed with this step.
    LocalActivityCompleted {
        /// Operation id.
        op: OpId,
        /// Activity name.
        activity: String,
        /// The number of the attempt that returned it.
        attempts: u32,
        /// The latest failures of the attempts before it, oldest first.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failures: Vec<ActivityFailure>,
    },
    /// A local activity failed for good, timed out, or accepted a stop.
    LocalActivityFailed {
        /// Operation id.
        op: OpId,
        /// Activity name.
        activity: String,
        /// The number of its last attempt.
        attempts: u32,
        /// Why its last attempt failed.
        failure: ActivityFailure,
        /// The latest failures of the attempts before it, oldest first.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failures: Vec<ActivityFailure>,
    },
    /// A local activity attempt failed and the next one waits out a back-off longer than
    /// [`LOCAL_RETRY_THRESHOLD`](crate::LOCAL_RETRY_THRESHOLD) on a durable timer.
    LocalActivityRetryScheduled {
        /// Operation id.
        op: OpId,
        /// Activity name.
        activity: String,
        /// The attempt that runs after the back-off.
        attempt: u32,
        /// When, in milliseconds since the Unix epoch.
        retry_at_ms: u64,
        /// Why the attempt before it failed.
        failure: ActivityFailure,
    },
    /// The scope of a local activity was cancelled: what its cancellation type did (R6.7).
    LocalActivityCancelled {
        /// Operation id.
        op: OpId,
        /// Activity name.
        activity: String,
        /// Its cancellation type.
        cancellation: ActivityCancellationType,
    },
    /// A child workflow was started (its start is dispatched once this step is committed).
    ChildStarted {
        /// Operation id.
        op: OpId,
        /// The child's registered workflow name.
        workflow: String,
        /// The child's workflow id.
        id: String,
        /// What a cancel does to it.
        cancellation: ChildWorkflowCancellationType,
        /// What happens to it when this workflow closes.
        parent_close: ParentClosePolicy,
    },
    /// A child workflow completed.
    ChildCompleted {
        /// Operation id.
        op: OpId,
        /// The child's registered workflow name.
        workflow: String,
        /// The child's workflow id.
        id: String,
    },
    /// A child workflow failed, was canceled or terminated, or could not be started.
    ChildFailed {
        /// Operation id.
        op: OpId,
        /// The child's registered workflow name.
        workflow: String,
        /// The child's workflow id.
        id: String,
        /// How.
        failure: ChildFailure,
    },
    /// A cancel request was sent to a child workflow.
    ChildCancelRequested {
        /// Operation id.
        op: OpId,
        /// The child's registered workflow name.
        workflow: String,
        /// The child's workflow id.
        id: String,
        /// Its cancellation type: what the call waits for.
        cancellation: ChildWorkflowCancellationType,
    },
    /// An `Abandon` child was left running; its result will be ignored.
    ChildAbandoned {
        /// Operation id.
        op: OpId,
        /// The child's registered workflow name.
        workflow: String,
        /// The child's workflow id.
        id: String,
    },
    /// A child workflow recorded the cancel request sent to it.
    ChildCancelRecorded {
        /// Operation id.
        op: OpId,
    },
    /// This workflow closed with a child still running; the child's parent close policy was
    /// applied.
    ParentClosePolicyApplied {
        /// The child's registered workflow name.
        workflow: String,
        /// The child's workflow id.
        id: String,
        /// The policy.
        policy: ParentClosePolicy,
    },
    /// A cancel request was sent to another workflow (`ctx.cancel_external`).
    ExternalCancelRequested {
        /// Operation id.
        op: OpId,
        /// The workflow to cancel.
        id: String,
        /// The reason given.
        reason: String,
    },
    /// The cancel request sent to another workflow was recorded, or could not be.
    ExternalCancelCompleted {
        /// Operation id.
        op: OpId,
        /// The workflow to cancel.
        id: String,
        /// Why it could not be recorded, if it could not.
        error: Option<String>,
    },
    /// A pending operation resolved with a cancellation error because its scope was cancelled.
    OperationCancelled {
        /// Operation id.
        op: OpId,
        /// What the operation was.
        what: String,
    },
    /// An operation was created in a scope that was already cancelled: it failed at once and
    /// was never dispatched (R9).
    OperationSkipped {
        /// Operation id.
        op: OpId,
        /// What the operation was.
        what: String,
    },
    /// A result arrived for an operation that had already resolved; it changed nothing (R6.3).
    ResultIgnored {
        /// Operation id.
        op: OpId,
        /// What the operation was and what arrived.
        what: String,
    },
    /// A timer was started.
    TimerStarted {
        /// Operation id.
        op: OpId,
        /// Its duration in milliseconds.
        duration_ms: u64,
        /// When it fires, in milliseconds since the Unix epoch.
        fire_at_ms: u64,
    },
    /// A timer fired.
    TimerFired {
        /// Operation id.
        op: OpId,
    },
    /// A timer was cancelled before it fired.
    TimerCancelled {
        /// Operation id.
        op: OpId,
    },
    /// A race resolved with the first of its operations to finish.
    RaceWon {
        /// The race.
        op: OpId,
        /// The operation that finished first.
        winner: OpId,
    },
    /// A scope was cancelled from workflow code or by its timeout.
    ScopeCancelled {
        /// The scope.
        scope: crate::ScopeId,
        /// Why.
        reason: String,
    },
    /// A scope was started with `.start()`: its block runs beside the code (R3.7).
    ScopeStarted {
        /// The operation its handle awaits.
        op: OpId,
        /// The started scope.
        scope: crate::ScopeId,
    },
    /// The block of a scope started with `.start()` ended (or was dropped as the workflow
    /// closed).
    ScopeEnded {
        /// The operation its handle awaits.
        op: OpId,
        /// The started scope.
        scope: crate::ScopeId,
        /// The block's error, if it ended with one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A scope's cancellation signal (`ctx.cancelled()`) completed.
    CancelSignalled {
        /// Operation id.
        op: OpId,
    },
    /// A cancellation handler (`on_cancel!`) started running with a disconnected context.
    HandlerStarted {
        /// The handler's name in the state graph.
        handler: String,
    },
    /// A line logged by workflow code with `ctx.log(..)`.
    Log {
        /// The message.
        message: String,
    },
    /// Part of the workflow's cleanup failed: a compensation or confirmation handler (R12),
    /// or an operation awaited in a cancellation handler (R4.3). The same sentence is kept
    /// on the workflow (`Description::handler_failures`).
    CleanupFailed {
        /// What failed, where, and its error.
        message: String,
    },
    /// The workflow returned `Ok`.
    WorkflowCompleted {
        /// The result, as JSON.
        result: serde_json::Value,
    },
    /// The workflow returned a cancellation error after a cancel request (R2.2).
    WorkflowCanceled {
        /// The error's message.
        error: String,
    },
    /// The workflow returned any other error (R2.3).
    WorkflowFailed {
        /// The error's message.
        error: String,
    },
    /// The workflow was terminated: closed without running any more of its code.
    WorkflowTerminated {
        /// The reason given.
        reason: String,
    },
    /// A stored entry that does not read (damaged in the store: not JSON, not UTF-8, or an
    /// event this build does not know). Never written: a store's `history` shows a damaged
    /// entry as this, in its place, rather than failing the whole history.
    Damaged {
        /// What is wrong with it, quoting the start of what is stored.
        message: String,
    },
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::WorkflowStarted { workflow, input } => {
                write!(f, "workflow `{workflow}` started with input {input}")
            }
            EventKind::CancelRequested { reason } => {
                write!(f, "cancel requested (reason: {reason:?})")
            }
            EventKind::ActivityScheduled {
                op,
                activity,
                cancellation,
            } => write!(f, "{op} activity `{activity}` scheduled ({cancellation:?})"),
            EventKind::ActivityCompleted { op, activity } => {
                write!(f, "{op} activity `{activity}` completed")
            }
            EventKind::ActivityFailed {
                op,
                activity,
                failure,
            } => write!(f, "{op} activity `{activity}` failed: {failure}"),
            EventKind::ActivityCancelRequested { op, activity, wait } => write!(
                f,
                "{op} cancel sent to activity `{activity}`{}",
                if *wait {
                    ", waiting for it to finish"
                } else {
                    ""
                }
            ),
            EventKind::ActivityAbandoned { op, activity } => {
                write!(f, "{op} activity `{activity}` abandoned, left running")
            }
            EventKind::LocalActivityStarted {
                op,
                activity,
                cancellation,
            } => write!(
                f,
                "{op} local activity `{activity}` started ({cancellation:?})"
            ),
            EventKind::LocalActivityCompleted {
                op,
                activity,
                attempts,
                failures,
            } => {
                write!(f, "{op} local activity `{activity}` completed")?;
                write_attempts(f, *attempts, failures)
            }
            EventKind::LocalActivityFailed {
                op,
                activity,
                attempts,
                failure,
                failures,
            } => {
                write!(f, "{op} local activity `{activity}` failed: {failure}")?;
                write_attempts(f, *attempts, failures)
            }
            EventKind::LocalActivityRetryScheduled {
                op,
                activity,
                attempt,
                retry_at_ms,
                failure,
            } => write!(
                f,
                "{op} local activity `{activity}` attempt {} failed ({failure}); attempt \
                 {attempt} at {}, after a back-off on a durable timer",
                attempt.saturating_sub(1),
                crate::time::format_ms(*retry_at_ms)
            ),
            EventKind::LocalActivityCancelled {
                op,
                activity,
                cancellation,
            } => write!(
                f,
                "{op} local activity `{activity}` {}",
                match cancellation {
                    ActivityCancellationType::TryCancel =>
                        "cancelled: told to stop, its call resolved (TryCancel)",
                    ActivityCancellationType::WaitCancellationCompleted =>
                        "told to stop, waiting for it to end (WaitCancellationCompleted)",
                    ActivityCancellationType::Abandon =>
                        "abandoned: left running untold, its call resolved (Abandon)",
                }
            ),
            EventKind::ChildStarted {
                op,
                workflow,
                id,
                cancellation,
                parent_close,
            } => write!(
                f,
                "{op} child workflow `{workflow}` started as `{id}` ({cancellation:?}, parent \
                 close policy {parent_close:?})"
            ),
            EventKind::ChildCompleted { op, workflow, id } => {
                write!(f, "{op} child workflow `{workflow}` (id `{id}`) completed")
            }
            EventKind::ChildFailed {
                op,
                workflow,
                id,
                failure,
            } => write!(f, "{op} child workflow `{workflow}` (id `{id}`) {failure}"),
            EventKind::ChildCancelRequested {
                op,
                workflow,
                id,
                cancellation,
            } => write!(
                f,
                "{op} cancel sent to child workflow `{workflow}` (id `{id}`){}",
                match cancellation {
                    ChildWorkflowCancellationType::WaitCancellationRequested =>
                        ", waiting for it to record the request",
                    ChildWorkflowCancellationType::WaitCancellationCompleted =>
                        ", waiting for it to close",
                    _ => "",
                }
            ),
            EventKind::ChildAbandoned { op, workflow, id } => write!(
                f,
                "{op} child workflow `{workflow}` (id `{id}`) abandoned, left running"
            ),
            EventKind::ChildCancelRecorded { op } => {
                write!(f, "{op} child recorded the cancel request")
            }
            EventKind::ParentClosePolicyApplied {
                workflow,
                id,
                policy,
            } => write!(
                f,
                "child workflow `{workflow}` (id `{id}`) {} as the workflow closed",
                match policy {
                    ParentClosePolicy::Terminate => "terminated",
                    ParentClosePolicy::RequestCancel => "asked to cancel",
                    ParentClosePolicy::Abandon => "left running",
                }
            ),
            EventKind::ExternalCancelRequested { op, id, reason } => {
                write!(
                    f,
                    "{op} cancel requested for workflow `{id}` (reason: {reason:?})"
                )
            }
            EventKind::ExternalCancelCompleted { op, id, error } => match error {
                None => write!(f, "{op} workflow `{id}` recorded the cancel request"),
                Some(error) => write!(f, "{op} workflow `{id}` could not be cancelled: {error}"),
            },
            EventKind::OperationCancelled { op, what } => write!(f, "{op} {what} cancelled"),
            EventKind::OperationSkipped { op, what } => {
                write!(f, "{op} {what} skipped: its scope was already cancelled")
            }
            EventKind::ResultIgnored { op, what } => write!(f, "{op} late result ignored: {what}"),
            EventKind::TimerStarted {
                op, duration_ms, ..
            } => write!(f, "{op} timer started ({duration_ms} ms)"),
            EventKind::TimerFired { op } => write!(f, "{op} timer fired"),
            EventKind::TimerCancelled { op } => write!(f, "{op} timer cancelled"),
            EventKind::CancelSignalled { op } => write!(f, "{op} cancellation signal received"),
            EventKind::RaceWon { op, winner } => write!(f, "{op} race won by {winner}"),
            EventKind::ScopeCancelled { scope, reason } => {
                write!(f, "scope #{} cancelled ({reason})", scope.0)
            }
            EventKind::ScopeStarted { op, scope } => {
                write!(f, "{op} scope #{} started beside the code", scope.0)
            }
            EventKind::ScopeEnded { op, scope, error } => match error {
                None => write!(f, "{op} block of scope #{} ended", scope.0),
                Some(error) => write!(f, "{op} block of scope #{} ended: {error}", scope.0),
            },
            EventKind::HandlerStarted { handler } => {
                write!(f, "cancellation handler `{handler}` started")
            }
            EventKind::Log { message } => write!(f, "log: {message}"),
            EventKind::CleanupFailed { message } => write!(f, "CLEANUP FAILED: {message}"),
            EventKind::WorkflowCompleted { result } => write!(f, "workflow completed: {result}"),
            EventKind::WorkflowCanceled { error } => write!(f, "workflow canceled: {error}"),
            EventKind::WorkflowFailed { error } => write!(f, "workflow failed: {error}"),
            EventKind::WorkflowTerminated { reason } => {
                write!(f, "workflow terminated (reason: {reason:?})")
            }
            EventKind::Damaged { message } => write!(f, "DAMAGED entry, does not read: {message}"),
        }
    }
}

/// ` at attempt N (K failed before it: ..)` for a local activity that needed more than one
/// attempt; nothing for one that ended at its first.
fn write_attempts(
    f: &mut fmt::Formatter<'_>,
    attempts: u32,
    failures: &[ActivityFailure],
) -> fmt::Result {
    if attempts <= 1 {
        return Ok(());
    }
    write!(f, " at attempt {attempts}")?;
    if failures.is_empty() {
        return Ok(());
    }
    let failed: Vec<String> = failures.iter().map(|f| f.to_string()).collect();
    let earlier = attempts as usize - 1;
    if failed.len() < earlier {
        write!(
            f,
            " (the last {} of {earlier} failures: {})",
            failed.len(),
            failed.join("; ")
        )
    } else {
        write!(f, " (earlier attempts failed: {})", failed.join("; "))
    }
}
