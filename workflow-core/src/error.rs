//! Errors seen by workflow code, activity code and callers of the client.
//!
//! Three audiences, three types:
//! - [`WorkflowError`]: what a workflow operation (`ctx.activity(..)`, `ctx.sleep(..)`) resolves
//!   with when it does not succeed. Serializable, because it can be stored in a workflow's state
//!   and in its result.
//! - [`ActivityError`]: what activity code returns; the engine turns it into an
//!   [`ActivityFailure`] for the workflow after retries are exhausted.
//! - [`ClientError`] / [`StoreError`]: what callers of the engine get back.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a Running workflow cannot make progress (R2.4), recorded on the workflow by the
/// engine and shown by `describe` and `wf list`. The workflow and everything stored with it
/// are kept: remove the cause (register the type, run the code version that started it) and
/// it steps again at its next event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "fault", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkflowFault {
    /// The stored workflow type is not registered with the engine.
    #[error(
        "its type `{workflow_type}` is not registered with this engine; register it with \
         `Engine::builder().register(..)` (stored state `{state}`)"
    )]
    UnknownWorkflowType {
        /// The stored type name.
        workflow_type: String,
        /// The stored state.
        state: String,
    },
    /// The stored schema fingerprint differs from the registered code's.
    #[error(
        "it was stored with schema fingerprint {stored:#018x}, but the registered code of \
         `{workflow_type}` has fingerprint {compiled:#018x}; its stored state `{state}` \
         cannot be resumed by this code. Run it with the version of the workflow that \
         started it."
    )]
    SchemaMismatch {
        /// The workflow type.
        workflow_type: String,
        /// The fingerprint stored with the snapshot.
        stored: u64,
        /// The fingerprint of the registered code.
        compiled: u64,
        /// The stored state.
        state: String,
    },
    /// The stored snapshot does not decode into the workflow's state machine.
    #[error("its snapshot (type `{workflow_type}`, state `{state}`) does not decode: {message}")]
    CorruptSnapshot {
        /// The workflow type.
        workflow_type: String,
        /// The stored state.
        state: String,
        /// What the decoder said.
        message: String,
    },
    /// Workflow code panicked; the step was not committed.
    #[error(
        "workflow code panicked in state `{state}`: {message}; the step was not committed \
         and is retried at the next event"
    )]
    Panicked {
        /// The state the step started from.
        state: String,
        /// The panic message.
        message: String,
    },
    /// The engine itself failed while stepping (a state that does not serialize, say).
    #[error("the engine failed while stepping: {message}")]
    Engine {
        /// What went wrong.
        message: String,
    },
    /// A row stored for the workflow (its status or close, an activity task, a timer, an
    /// inbox event) does not read: it is not JSON, not UTF-8, not a number where one is due,
    /// or not a value this build knows. Nothing more of the workflow runs, so that nothing
    /// runs on a guess; every other workflow goes on. A worker reads the rows of a workflow
    /// once, when it claims it (its steps read the row and the inbox again at each new
    /// event): after repairing a task or timer row, restart the worker holding the workflow.
    #[error(
        "its stored {what} is damaged: {message}; nothing more of it runs until its rows \
         read. Restore the row (from a backup), then restart the worker holding it, if one \
         does, so that a worker claims it and reads it anew; or terminate it (`wf terminate`)"
    )]
    DamagedRecord {
        /// Which row and column: "status", "close", "activity task op#3 input", "inbox event
        /// 17", "timer op#2 deadline", ...
        what: String,
        /// What is wrong with it (the decoder's message).
        message: String,
    },
}

/// Decides whether an error counts as a cancellation ([R2.2](crate::semantics#r2-final-status)).
///
/// A workflow whose cancellation was requested and whose function returns an error for which
/// `is_cancellation()` is true closes **Canceled**; any other error closes it **Failed**.
/// Implement it for your own workflow error type; [`WorkflowError`] implements it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a workflow's error type: it does not say whether it is a cancellation",
    label = "a workflow's error type must implement `IsCancellation`",
    note = "use `workflow_core::WorkflowError`, or implement `IsCancellation` (and `From<WorkflowError>`) for your error type: a cancelled workflow returning an error that is a cancellation closes Canceled, any other error closes it Failed"
)]
pub trait IsCancellation {
    /// True when this error means "the work was cancelled".
    fn is_cancellation(&self) -> bool;
}

/// Why an activity did not produce a value, as seen by the workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ActivityFailure {
    /// The activity accepted a cancellation (it returned [`ActivityError::Cancelled`] after a
    /// cancel reached it), or it was cancelled before it started.
    #[error("activity was cancelled")]
    Cancelled,
    /// The activity returned an error and no retry is left.
    #[error("{message}")]
    Application {
        /// The error text the activity returned.
        message: String,
        /// Whether the activity marked the error as not worth retrying.
        non_retryable: bool,
    },
    /// The last attempt ran out of time.
    #[error("activity timed out ({kind})")]
    Timeout {
        /// Which timeout fired.
        kind: TimeoutKind,
    },
}

/// Why a child workflow did not produce a value, as seen by its parent (R7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ChildFailure {
    /// The child closed Failed.
    #[error("failed: {message}")]
    Failed {
        /// The child's error message.
        message: String,
    },
    /// The child closed Canceled (a cancel was requested and it returned a cancellation
    /// error). This is a cancellation (R2.2).
    #[error("was canceled: {message}")]
    Canceled {
        /// The child's error message.
        message: String,
    },
    /// The child was terminated.
    #[error("was terminated (reason: {reason:?})")]
    Terminated {
        /// The reason given.
        reason: String,
    },
    /// The child could not be started: its workflow type is not registered, its input does
    /// not decode, or its id is already in use.
    #[error("could not be started: {message}")]
    StartFailed {
        /// Why.
        message: String,
    },
}

/// Which activity timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeoutKind {
    /// The attempt ran longer than `start_to_close_timeout`.
    StartToClose,
    /// The attempt did not heartbeat within `heartbeat_timeout`.
    Heartbeat,
    /// The call did not end within `schedule_to_close_timeout` of being scheduled.
    ScheduleToClose,
    /// No attempt started within `schedule_to_start_timeout` of the call being scheduled.
    ScheduleToStart,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::StartToClose => "start-to-close",
            TimeoutKind::Heartbeat => "heartbeat",
            TimeoutKind::ScheduleToClose => "schedule-to-close",
            TimeoutKind::ScheduleToStart => "schedule-to-start",
        })
    }
}

/// The error a workflow operation resolves with, and the default error type of workflows.
///
/// `?` on an operation inside a `#[workflow]` converts it into the workflow's own error type
/// through `From<WorkflowError>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WorkflowError {
    /// The operation was cancelled: its scope was cancelled while it was pending, or it was
    /// created in a scope that was already cancelled (R9).
    #[error("cancelled{}", reason_suffix(reason))]
    Cancelled {
        /// The reason given with the cancel request ("" if none).
        reason: String,
    },
    /// An activity failed.
    #[error("activity `{activity}` failed: {failure}")]
    Activity {
        /// The activity's registered name.
        activity: String,
        /// What went wrong.
        failure: ActivityFailure,
    },
    /// A child workflow (`ctx.child(..)`) did not complete.
    #[error("child workflow `{workflow}` (id `{id}`) {failure}")]
    Child {
        /// The child's registered workflow name.
        workflow: String,
        /// The child's workflow id.
        id: String,
        /// What went wrong.
        failure: ChildFailure,
    },
    /// `ctx.cancel_external(id, ..)` could not record the cancel: no workflow has this id,
    /// or it is already closed (R1.2).
    #[error("could not cancel workflow `{id}`: {message}")]
    ExternalCancel {
        /// The workflow that was to be cancelled.
        id: String,
        /// Why it could not be.
        message: String,
    },
    /// An error raised by workflow code itself.
    #[error("{message}")]
    Application {
        /// Human-readable description.
        message: String,
    },
    /// A value could not be converted to or from its stored form.
    #[error("could not decode {what}: {message}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The decoder's message.
        message: String,
    },
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

impl WorkflowError {
    /// A cancellation error with the given reason.
    pub fn cancelled(reason: impl Into<String>) -> Self {
        WorkflowError::Cancelled {
            reason: reason.into(),
        }
    }

    /// An application error raised by workflow code.
    pub fn application(message: impl Into<String>) -> Self {
        WorkflowError::Application {
            message: message.into(),
        }
    }
}

impl IsCancellation for WorkflowError {
    fn is_cancellation(&self) -> bool {
        matches!(
            self,
            WorkflowError::Cancelled { .. }
                | WorkflowError::Activity {
                    failure: ActivityFailure::Cancelled,
                    ..
                }
                | WorkflowError::Child {
                    failure: ChildFailure::Canceled { .. },
                    ..
                }
        )
    }
}

/// What activity code returns when it does not succeed.
///
/// Any `std::error::Error` converts into it with `?` (as a retryable application error), so
/// activity bodies can use `?` on I/O and parsing. Use [`ActivityError::non_retryable`] for
/// errors that retrying cannot fix, and return [`ActivityError::Cancelled`] (or propagate the
/// error from [`ActivityContext::heartbeat`](crate::ActivityContext::heartbeat)) to accept a
/// cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivityError {
    /// The activity accepted a cancel request.
    Cancelled,
    /// The activity failed.
    Application {
        /// The error text.
        message: String,
        /// `true` stops the retry policy from trying again.
        non_retryable: bool,
    },
}

impl ActivityError {
    /// A failure the retry policy may retry.
    pub fn retryable(message: impl Into<String>) -> Self {
        ActivityError::Application {
            message: message.into(),
            non_retryable: false,
        }
    }

    /// A failure that is reported to the workflow at once, without retries.
    pub fn non_retryable(message: impl Into<String>) -> Self {
        ActivityError::Application {
            message: message.into(),
            non_retryable: true,
        }
    }

    /// True for [`ActivityError::Cancelled`].
    pub fn is_cancellation(&self) -> bool {
        matches!(self, ActivityError::Cancelled)
    }
}

impl fmt::Display for ActivityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivityError::Cancelled => f.write_str("activity cancelled"),
            ActivityError::Application { message, .. } => f.write_str(message),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for ActivityError {
    fn from(e: E) -> Self {
        ActivityError::retryable(e.to_string())
    }
}

/// Errors from a [`Store`](crate::Store).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No workflow with this id.
    #[error("no workflow with id `{0}`")]
    NotFound(String),
    /// A workflow with this id already exists.
    #[error("a workflow with id `{0}` already exists")]
    AlreadyExists(String),
    /// The workflow is closed and cannot take this request.
    #[error("workflow `{id}` is already closed ({status})")]
    AlreadyClosed {
        /// The workflow id.
        id: String,
        /// Its final status.
        status: crate::WorkflowStatus,
    },
    /// Someone else committed a step for this workflow first.
    #[error("workflow `{id}` changed concurrently (expected version {expected}, found {found})")]
    Conflict {
        /// The workflow id.
        id: String,
        /// The version this step was based on.
        expected: u64,
        /// The version found in the store.
        found: u64,
    },
    /// A worker's write for a workflow it no longer holds was refused: another worker took
    /// the workflow over (this one was frozen, partitioned or too slow to renew its lease),
    /// or this one released it. Nothing was written; the worker drops the workflow.
    #[error(
        "workflow `{id}` is no longer held by worker `{owner}` (lease #{epoch}){}; the write was \
         refused and this worker drops the workflow",
        match holder { Some((o, e)) => format!(": worker `{o}` holds lease #{e}"), None => String::new() }
    )]
    LeaseLost {
        /// The workflow id.
        id: String,
        /// The worker whose write was refused.
        owner: String,
        /// The epoch of the lease it had.
        epoch: u64,
        /// The current holder and its epoch, if any.
        holder: Option<(String, u64)>,
    },
    /// A row stored for this workflow does not read (see [`WorkflowFault::DamagedRecord`]):
    /// the request fails for this workflow alone, and an engine records the fault on it.
    #[error("workflow `{id}`: {fault}")]
    Damaged {
        /// The workflow id.
        id: String,
        /// What is damaged ([`WorkflowFault::DamagedRecord`]).
        fault: WorkflowFault,
    },
    /// The storage backend failed.
    #[error("storage error: {0}")]
    Backend(String),
}

/// Errors returned by the [`Client`](crate::Client) and [`Engine`](crate::Engine).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No workflow with this id (R1.2).
    #[error("no workflow with id `{0}`")]
    NotFound(String),
    /// `start` was called with an id that is already in use.
    #[error("a workflow with id `{0}` already exists; pick another id")]
    AlreadyExists(String),
    /// The workflow is already closed (R1.2).
    #[error("workflow `{id}` is already closed ({status})")]
    AlreadyClosed {
        /// The workflow id.
        id: String,
        /// Its final status.
        status: crate::WorkflowStatus,
    },
    /// The workflow type is not registered with this engine.
    #[error("workflow type `{0}` is not registered with this engine; call `Engine::builder().register(..)`")]
    UnknownWorkflow(String),
    /// A client of the store alone ([`Client::connect`](crate::Client::connect)) was asked
    /// to start a workflow by name: it has no workflow code to build the start state with.
    #[error(
        "this client (from `Client::connect`) cannot start `{0}` by name: it has no workflow \
         code; call `client.start(<workflow>, id, input)` with the workflow type, or start it \
         from a worker's client (`Engine::client`)"
    )]
    StartByName(String),
    /// The workflow with this id has another type than the one asked for.
    #[error("workflow `{id}` is a `{actual}`, not a `{expected}`")]
    WrongType {
        /// The workflow id.
        id: String,
        /// The type asked for.
        expected: String,
        /// The stored type.
        actual: String,
    },
    /// A value could not be serialized or deserialized.
    #[error("could not encode or decode {what}: {message}")]
    Codec {
        /// What was being encoded or decoded.
        what: String,
        /// The codec's message.
        message: String,
    },
    /// A value nests deeper than a stored value may
    /// ([`MAX_VALUE_DEPTH`](crate::json_limits::MAX_VALUE_DEPTH)); nothing was stored.
    #[error("{}", crate::json_limits::too_deep(what, *depth))]
    TooDeep {
        /// What the value is.
        what: String,
        /// How deep it nests.
        depth: usize,
    },
    /// A start option has a value it cannot take (an execution timeout of zero or of
    /// centuries, say); nothing was stored.
    #[error("invalid {option}: {message}")]
    InvalidOption {
        /// Which option.
        option: String,
        /// What is wrong with its value, and what it may be.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The engine was shut down.
    #[error("the engine has shut down")]
    Shutdown,
}

impl From<StoreError> for ClientError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ClientError::NotFound(id),
            StoreError::AlreadyExists(id) => ClientError::AlreadyExists(id),
            StoreError::AlreadyClosed { id, status } => ClientError::AlreadyClosed { id, status },
            other => ClientError::Store(other),
        }
    }
}
