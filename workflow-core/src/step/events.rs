//! What crosses the boundary of a step: the [`Event`]s the engine delivers into it (with the
//! [`ChildOutcome`] a child closed with) and the [`Command`]s it hands back to be dispatched
//! once the step is committed.

use super::instance::OpId;
use crate::{ActivityFailure, ActivityOptions, LocalActivityOptions};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Something that happened outside the workflow and is delivered at its next step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum Event {
    /// `client.cancel(id, reason)`.
    CancelRequested {
        /// The reason given.
        reason: String,
    },
    /// An activity returned a value.
    ActivityCompleted {
        /// Operation id.
        op: OpId,
        /// The value, as JSON.
        result: serde_json::Value,
    },
    /// An activity failed for good, accepted a cancel, or was cancelled before it started.
    ActivityFailed {
        /// Operation id.
        op: OpId,
        /// Why.
        failure: ActivityFailure,
    },
    /// A local activity ended (R6.7): its last attempt returned, failed for good, accepted a
    /// stop, or no attempt was left. Delivered in memory by the worker that ran it, and
    /// committed with the step that applies it.
    LocalActivityEnded {
        /// Operation id.
        op: OpId,
        /// Its value, as JSON, or why it has none.
        result: Result<serde_json::Value, ActivityFailure>,
        /// The number of its last attempt.
        attempts: u32,
        /// The latest failures of the attempts before it (at most
        /// [`LocalActivityRun::KEPT_FAILURES`](crate::LocalActivityRun::KEPT_FAILURES)).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failures: Vec<ActivityFailure>,
    },
    /// A local activity attempt failed and the next one is due after a back-off longer than
    /// [`LOCAL_RETRY_THRESHOLD`](crate::LOCAL_RETRY_THRESHOLD): the step commits it and
    /// waits on a durable timer.
    LocalActivityBackoff {
        /// Operation id.
        op: OpId,
        /// The attempt to run after the back-off.
        attempt: u32,
        /// When, in milliseconds since the Unix epoch.
        retry_at_ms: u64,
        /// The failures of the attempts since the call last started, the last one included.
        failures: Vec<ActivityFailure>,
    },
    /// A timer reached its deadline.
    TimerFired {
        /// Operation id.
        op: OpId,
    },
    /// A child workflow closed, or could not be started.
    ChildClosed {
        /// The operation that started it.
        op: OpId,
        /// How it closed.
        outcome: ChildOutcome,
    },
    /// A child workflow recorded the cancel request this workflow sent it (or had already
    /// closed, in which case its `ChildClosed` follows or came first).
    ChildCancelRecorded {
        /// The operation that started the child.
        op: OpId,
    },
    /// A cancel request sent with `ctx.cancel_external(..)` was recorded, or could not be.
    ExternalCancelDone {
        /// Operation id.
        op: OpId,
        /// `Err` says why the cancel could not be recorded (unknown id, already closed).
        result: Result<(), String>,
    },
}

/// How a child workflow closed, as reported to its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChildOutcome {
    /// It returned `Ok` with this value (JSON).
    Completed(serde_json::Value),
    /// It closed Failed with this error message.
    Failed(String),
    /// It closed Canceled with this error message.
    Canceled(String),
    /// It was terminated with this reason.
    Terminated(String),
    /// It could not be started, for this reason.
    StartFailed(String),
}

/// Work a step asks the engine to do once the step is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command")]
pub enum Command {
    /// Run an activity.
    ScheduleActivity {
        /// Operation id.
        op: OpId,
        /// Registered activity name.
        activity: String,
        /// Its input, as JSON.
        input: serde_json::Value,
        /// Timeouts, retries, cancellation type.
        options: ActivityOptions,
    },
    /// Cancel an activity. If it has not started, it never will (R6.1) and the engine reports
    /// it cancelled. If it runs and `notify_running` is set, it sees the cancel at its next
    /// heartbeat (R6.2); without `notify_running` (`Abandon`) it is left alone.
    CancelActivity {
        /// Operation id.
        op: OpId,
        /// Whether a running attempt is told.
        notify_running: bool,
        /// The reason of the scope's cancel, which the attempt reads from
        /// [`ActivityContext::stop_reason`](crate::ActivityContext::stop_reason); `None` when
        /// the workflow's close cancels it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Run a local activity in this worker (R6.7): no task record is written; its end is
    /// delivered in memory ([`Event::LocalActivityEnded`]).
    RunLocalActivity {
        /// Operation id.
        op: OpId,
        /// Registered activity name.
        activity: String,
        /// Its input, as JSON.
        input: serde_json::Value,
        /// Timeout, retries, cancellation type.
        options: LocalActivityOptions,
        /// The attempt to start with.
        attempt: u32,
        /// The failures of earlier attempts, carried to the call's end.
        failures: Vec<ActivityFailure>,
    },
    /// Stop a running local activity: no further attempt starts, and the running one is told
    /// at once (`ActivityContext::cancelled`, `stop_reason`) when `notify_running` is set.
    CancelLocalActivity {
        /// Operation id.
        op: OpId,
        /// Whether the running attempt is told (not for `Abandon`).
        notify_running: bool,
        /// The reason of the scope's cancel.
        reason: String,
    },
    /// Start a durable timer.
    StartTimer {
        /// Operation id.
        op: OpId,
        /// Deadline in milliseconds since the Unix epoch.
        fire_at_ms: u64,
    },
    /// Cancel a timer.
    CancelTimer {
        /// Operation id.
        op: OpId,
    },
    /// Create and start a child workflow linked to this one. If it cannot be started, the
    /// engine reports [`Event::ChildClosed`] with [`ChildOutcome::StartFailed`].
    StartChild {
        /// The operation that awaits it.
        op: OpId,
        /// Registered workflow name.
        workflow: String,
        /// The child's workflow id.
        id: String,
        /// Its input, as JSON.
        input: serde_json::Value,
    },
    /// Request cancellation of a child; the engine reports [`Event::ChildCancelRecorded`]
    /// once the request is recorded (or the child turned out to be closed already).
    CancelChild {
        /// The operation that started it.
        op: OpId,
        /// The child's workflow id.
        id: String,
        /// The reason passed on to the child.
        reason: String,
    },
    /// Terminate a child (parent close policy `Terminate`); nothing is reported back.
    TerminateChild {
        /// The child's workflow id.
        id: String,
        /// The reason recorded in the child's history.
        reason: String,
    },
    /// Request cancellation of another workflow; the engine reports
    /// [`Event::ExternalCancelDone`].
    CancelExternal {
        /// Operation id.
        op: OpId,
        /// The workflow to cancel.
        id: String,
        /// The reason given.
        reason: String,
    },
}

impl fmt::Display for ChildOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildOutcome::Completed(value) => write!(f, "completed with {value}"),
            ChildOutcome::Failed(message) => write!(f, "failed: {message}"),
            ChildOutcome::Canceled(message) => write!(f, "was canceled: {message}"),
            ChildOutcome::Terminated(reason) => write!(f, "was terminated (reason: {reason:?})"),
            ChildOutcome::StartFailed(message) => write!(f, "could not be started: {message}"),
        }
    }
}
