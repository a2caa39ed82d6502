//! The pure core of a workflow step: the runtime state stored beside the machine (scopes and
//! operations), the events a step consumes, the commands it emits, and the [`StepContext`]
//! through which generated code starts and polls operations.
//!
//! Nothing here does I/O or reads a clock: the engine passes the time in, feeds events, calls
//! the machine's `resume`, and takes the commands and history out. The same inputs always give
//! the same outputs, which is what lets a step be committed atomically and retried after a
//! crash.
//!
//! Cancellation (rules R1.3, R6, R7, R8, R9 of [`semantics`](crate::semantics)) is decided
//! here: when a cancel request is applied, every pending operation of the cancelled scopes gets
//! its cancel action in creation order, in the same step.

use crate::history::EventKind;
use crate::{
    ActivityCancellationType, ActivityFailure, ActivityOptions, ChildFailure,
    ChildWorkflowCancellationType, ParentClosePolicy, WorkflowError,
};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

mod validate;
pub use validate::{InvalidInstance, MAX_OP_ID};

/// Identifies one operation (activity call, child workflow, timer, cancellation signal) of one
/// workflow.
/// Ids are given out in creation order, so ordering by id is ordering by creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpId(pub u64);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op#{}", self.0)
    }
}

/// Identifies a cancellation scope of one workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScopeId(pub u32);

impl ScopeId {
    /// The workflow's root scope; cancelling the workflow cancels it.
    pub const ROOT: ScopeId = ScopeId(0);
}

/// What kind of scope this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScopeKind {
    /// The workflow's root scope.
    Root,
    /// A disconnected context (`ctx.disconnected()`, or a cancellation handler's context): it
    /// has no parent, so cancelling the workflow does not reach it (R4.1).
    Disconnected,
    /// `ctx.cancellable(..)` or `ctx.with_timeout(..)`: cancelled with its parent (R3.2).
    Cancellable,
    /// `ctx.non_cancellable(..)`: its signal fires with its parent, but it is never cancelled
    /// by it and shields what it contains (R3.3); it can still cancel itself.
    NonCancellable,
}

/// One scope of the scope tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeRecord {
    /// The enclosing scope; `None` for the root and for disconnected scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ScopeId>,
    /// What kind of scope.
    pub kind: ScopeKind,
    /// Set once this scope is cancelled: its pending operations got their cancel actions and
    /// new ones fail at once (R9). The value is the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<String>,
    /// Set once the scope's cancellation signal fired (`ctx.cancelled()`,
    /// `ctx.is_cancel_requested()`, R1.6): with the cancel, or for a non-cancellable scope
    /// when its parent is cancelled (R3.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// What an operation is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    /// An activity call.
    Activity {
        /// Registered activity name.
        activity: String,
        /// What a cancel does to it.
        cancellation: ActivityCancellationType,
    },
    /// A durable timer (`ctx.sleep`, or the deadline of `ctx.with_timeout`).
    Timer {
        /// Requested duration.
        duration_ms: u64,
        /// Deadline in milliseconds since the Unix epoch.
        fire_at_ms: u64,
        /// For a `with_timeout` deadline: the scope it cancels when it fires (R5.1).
        #[serde(default)]
        timeout_of: Option<ScopeId>,
    },
    /// A scope's cancellation signal (`ctx.cancelled()`).
    CancelSignal,
    /// A child workflow (`ctx.child(..)`, R7).
    Child {
        /// The child's registered workflow name.
        workflow: String,
        /// The child's workflow id.
        id: String,
        /// What a cancel of the scope does to it.
        cancellation: ChildWorkflowCancellationType,
        /// What happens to it if it still runs when this workflow closes.
        parent_close: ParentClosePolicy,
    },
    /// A cancel request sent to another workflow (`ctx.cancel_external(..)`).
    CancelExternal {
        /// The workflow to cancel.
        id: String,
        /// The reason given (kept to send the request again after a restart).
        #[serde(default)]
        reason: String,
    },
    /// `ctx.race([..])`: resolves with the first of these operations to resolve. It belongs to
    /// the scope that awaits it; the raced operations keep their own scopes (R10).
    Race {
        /// The raced operations, in the order given.
        ops: Vec<OpId>,
    },
    /// `ctx.join(..)`: resolves when all of these operations have resolved. Like a race, it
    /// belongs to the scope that awaits it and is not cancelled with it.
    Join {
        /// The joined operations, in the order given.
        ops: Vec<OpId>,
    },
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpKind::Activity { activity, .. } => write!(f, "activity `{activity}`"),
            OpKind::Timer { duration_ms, .. } => write!(f, "timer ({duration_ms} ms)"),
            OpKind::CancelSignal => f.write_str("cancellation signal"),
            OpKind::Child { workflow, id, .. } => {
                write!(f, "child workflow `{workflow}` (id `{id}`)")
            }
            OpKind::CancelExternal { id, .. } => write!(f, "cancel of workflow `{id}`"),
            OpKind::Race { ops } => {
                let ops: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
                write!(f, "race of {}", ops.join(", "))
            }
            OpKind::Join { ops } => {
                let ops: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
                write!(f, "join of {}", ops.join(", "))
            }
        }
    }
}

/// Where an operation stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OpStatus {
    /// Started, no result yet.
    Pending,
    /// A cancel was sent; the caller waits for the activity or child to finish
    /// (`WaitCancellationCompleted`), or for the child to record the request
    /// (`WaitCancellationRequested`).
    CancelRequested,
    /// Resolved; the machine has not read the result yet.
    Resolved(Result<serde_json::Value, WorkflowError>),
}

/// One operation of the operation table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpRecord {
    /// What it is.
    pub kind: OpKind,
    /// The scope it belongs to: the one current when it was created (R3.1).
    pub scope: ScopeId,
    /// Where it stands.
    pub status: OpStatus,
}

/// The runtime half of a workflow's state, stored in the snapshot beside the machine: the
/// scope tree and the operations that have not been consumed yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    next_op: u64,
    scopes: Vec<ScopeRecord>,
    ops: BTreeMap<OpId, OpRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cancel_reason: Option<String>,
    /// Set when an unhandled error cancelled the workflow (`UnhandledErrorAction::Cancel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unhandled_cancel: Option<String>,
    /// Children started and not known to be closed, by the operation that started them. Kept
    /// after the operation resolved (an abandoned or `TryCancel` child runs on), so that the
    /// parent close policy reaches every child still running (R7).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    children: BTreeMap<OpId, RunningChild>,
    /// Compensable blocks that completed, in completion order, with their handlers' machines
    /// in their start states (R12).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    compensables: Vec<CompensableRecord>,
    /// Set while the workflow runs its compensation or confirmation handlers before closing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    closing: Option<Closing>,
    /// Handlers run now by `ctx.compensate()` / `ctx.confirm()`, the first one running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    explicit: Vec<HandlerRun>,
}

/// A compensable block that completed: the start states of its handlers (type-erased; the
/// generated code knows each site's machine types).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompensableRecord {
    /// Which compensable block of the workflow's source.
    pub site: u32,
    /// The compensation handler's machine, if the block has one.
    pub compensate: Option<serde_json::Value>,
    /// The confirmation handler's machine, if the block has one.
    pub confirm: Option<serde_json::Value>,
    /// Confirmed explicitly (`ctx.confirm()`): it is not confirmed again at the close and can
    /// no longer be compensated.
    #[serde(default)]
    pub confirmed: bool,
}

/// The workflow has returned and runs its compensation (it failed or was cancelled) or
/// confirmation (it completed) handlers before it closes (R12).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Closing {
    /// The workflow's result, as JSON, returned once the handlers are done.
    pub result: serde_json::Value,
    /// Compensating (reverse completion order) rather than confirming.
    pub compensating: bool,
    /// Handlers still to run, the first one running.
    pub queue: Vec<HandlerRun>,
}

/// One compensation or confirmation handler to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandlerRun {
    /// The compensable block's site.
    pub site: u32,
    /// Confirmation (rather than compensation).
    pub confirm: bool,
    /// The handler's machine.
    pub state: serde_json::Value,
    /// Its disconnected scope.
    pub scope: ScopeId,
}

/// A child workflow started by this workflow and not known to be closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningChild {
    /// The child's registered workflow name.
    pub workflow: String,
    /// The child's workflow id.
    pub id: String,
    /// What happens to it when this workflow closes.
    pub parent_close: ParentClosePolicy,
}

impl Default for Instance {
    fn default() -> Self {
        Instance {
            next_op: 1,
            scopes: vec![ScopeRecord {
                parent: None,
                kind: ScopeKind::Root,
                cancel_requested: None,
                signal: None,
            }],
            ops: BTreeMap::new(),
            cancel_reason: None,
            unhandled_cancel: None,
            children: BTreeMap::new(),
            compensables: Vec::new(),
            closing: None,
            explicit: Vec::new(),
        }
    }
}

/// A pending operation, as `describe` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOperation {
    /// Operation id.
    pub op: OpId,
    /// What it is.
    pub kind: OpKind,
    /// What the workflow is waiting for, in words.
    pub waiting_for: String,
}

impl Instance {
    /// The reason of the workflow's cancel request, if one was received.
    pub fn cancel_reason(&self) -> Option<&str> {
        self.cancel_reason.as_deref()
    }

    /// Operations that have not resolved yet, in creation order.
    pub fn pending(&self) -> Vec<PendingOperation> {
        self.ops
            .iter()
            .filter_map(|(op, rec)| {
                let waiting_for = match (&rec.status, &rec.kind) {
                    (OpStatus::Resolved(_), _) => return None,
                    (OpStatus::CancelRequested, OpKind::Activity { activity, .. }) => format!(
                        "activity `{activity}` to finish after a cancel (WaitCancellationCompleted; \
                         it learns of the cancel at its next heartbeat)"
                    ),
                    (_, OpKind::Activity { activity, .. }) => {
                        format!("activity `{activity}` to complete")
                    }
                    (_, OpKind::Timer { fire_at_ms, .. }) => {
                        format!("timer firing at {}", crate::time::format_ms(*fire_at_ms))
                    }
                    (_, OpKind::CancelSignal) => "a cancel request".to_string(),
                    (
                        OpStatus::CancelRequested,
                        OpKind::Child {
                            workflow,
                            id,
                            cancellation: ChildWorkflowCancellationType::WaitCancellationRequested,
                            ..
                        },
                    ) => format!(
                        "child workflow `{workflow}` (id `{id}`) to record the cancel request \
                         (WaitCancellationRequested)"
                    ),
                    (OpStatus::CancelRequested, OpKind::Child { workflow, id, .. }) => format!(
                        "child workflow `{workflow}` (id `{id}`) to close after a cancel \
                         (WaitCancellationCompleted)"
                    ),
                    (_, OpKind::Child { workflow, id, .. }) => {
                        format!("child workflow `{workflow}` (id `{id}`) to close")
                    }
                    (_, OpKind::CancelExternal { id, .. }) => {
                        format!("workflow `{id}` to record the cancel request")
                    }
                    (_, OpKind::Race { ops }) => {
                        let ops: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
                        format!("the first of {} to finish", ops.join(", "))
                    }
                    (_, OpKind::Join { ops }) => {
                        let ops: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
                        format!("all of {} to finish", ops.join(", "))
                    }
                };
                Some(PendingOperation {
                    op: *op,
                    kind: rec.kind.clone(),
                    waiting_for,
                })
            })
            .collect()
    }

    /// The scopes of this workflow, indexed by [`ScopeId`].
    pub fn scopes(&self) -> &[ScopeRecord] {
        &self.scopes
    }

    /// The child workflows started by this workflow and not known to be closed, by the
    /// operation that started them.
    pub fn children(&self) -> &BTreeMap<OpId, RunningChild> {
        &self.children
    }

    /// The operation table, in creation order.
    pub fn operations(&self) -> &BTreeMap<OpId, OpRecord> {
        &self.ops
    }
}

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

/// What a step produced, for the engine to commit.
#[derive(Debug)]
pub struct StepOutput {
    /// The runtime state after the step.
    pub instance: Instance,
    /// Work to dispatch after the commit.
    pub commands: Vec<Command>,
    /// History entries to append.
    pub history: Vec<EventKind>,
}

struct StepState {
    instance: Instance,
    unhandled: crate::UnhandledErrorAction,
    now_ms: u64,
    commands: Vec<Command>,
    history: Vec<EventKind>,
}

/// The context one step runs in. Generated machines start operations and read their results
/// through it; the engine feeds events into it and takes commands and history out.
pub struct StepContext {
    workflow_id: String,
    state: RefCell<StepState>,
}

impl StepContext {
    /// A step of workflow `workflow_id` at engine time `now_ms`.
    pub fn new(workflow_id: impl Into<String>, instance: Instance, now_ms: u64) -> Self {
        StepContext {
            workflow_id: workflow_id.into(),
            state: RefCell::new(StepState {
                instance,
                unhandled: crate::UnhandledErrorAction::Fail,
                now_ms,
                commands: Vec::new(),
                history: Vec::new(),
            }),
        }
    }

    /// Sets what an unhandled workflow error does in this step (R13).
    pub fn with_unhandled_errors(self, action: crate::UnhandledErrorAction) -> Self {
        self.state.borrow_mut().unhandled = action;
        self
    }

    /// Whether an unhandled error cancelled the workflow (it then closes Canceled, R13).
    pub fn unhandled_error_cancelled(&self) -> bool {
        self.state.borrow().instance.unhandled_cancel.is_some()
    }

    /// An error is leaving the workflow body. Under `UnhandledErrorAction::Cancel` this
    /// cancels the workflow, once: the root scope's pending operations get their cancel
    /// actions, and the handlers of the code being left run.
    pub(crate) fn unhandled_error(&self, message: &str) {
        let mut st = self.state.borrow_mut();
        if st.unhandled != crate::UnhandledErrorAction::Cancel
            || st.instance.unhandled_cancel.is_some()
        {
            return;
        }
        let reason = format!("unhandled error: {message}");
        st.instance.unhandled_cancel = Some(reason.clone());
        st.history.push(EventKind::ScopeCancelled {
            scope: ScopeId::ROOT,
            reason: reason.clone(),
        });
        st.cancel_scope(ScopeId::ROOT, &reason);
    }

    /// Records a compensable block that completed (R12).
    pub(crate) fn register_compensable(
        &self,
        site: u32,
        compensate: Option<serde_json::Value>,
        confirm: Option<serde_json::Value>,
    ) {
        self.state
            .borrow_mut()
            .instance
            .compensables
            .push(CompensableRecord {
                site,
                compensate,
                confirm,
                confirmed: false,
            });
    }

    /// Whether the workflow has completed compensable blocks to compensate or confirm.
    pub(crate) fn has_compensables(&self) -> bool {
        !self.state.borrow().instance.compensables.is_empty()
    }

    /// The workflow returned: queue the compensation handlers (in reverse completion order)
    /// when `compensating`, the confirmation handlers (in completion order) otherwise, each
    /// with a fresh disconnected scope, and keep `result` for the close.
    pub(crate) fn begin_closing(&self, result: serde_json::Value, compensating: bool) {
        let records: Vec<CompensableRecord> =
            std::mem::take(&mut self.state.borrow_mut().instance.compensables)
                .into_iter()
                .filter(|r| !r.confirmed)
                .collect();
        let mut queue = Vec::new();
        let ordered: Vec<CompensableRecord> = if compensating {
            records.into_iter().rev().collect()
        } else {
            records
        };
        for record in ordered {
            let state = if compensating {
                record.compensate
            } else {
                record.confirm
            };
            if let Some(state) = state {
                let scope = self.new_disconnected_scope();
                queue.push(HandlerRun {
                    site: record.site,
                    confirm: !compensating,
                    state,
                    scope,
                });
            }
        }
        let mut st = self.state.borrow_mut();
        st.history.push(if compensating {
            EventKind::Log {
                message: format!("compensating {} completed block(s)", queue.len()),
            }
        } else {
            EventKind::Log {
                message: format!("confirming {} completed block(s)", queue.len()),
            }
        });
        st.instance.closing = Some(Closing {
            result,
            compensating,
            queue,
        });
    }

    /// `ctx.compensate()` (`compensate`) or `ctx.confirm()`: queues the handlers of the
    /// completed blocks to run now. Compensating is an error once a block was confirmed (R12).
    pub(crate) fn begin_explicit(&self, compensate: bool) -> Result<(), WorkflowError> {
        let mut records = std::mem::take(&mut self.state.borrow_mut().instance.compensables);
        if compensate && records.iter().any(|r| r.confirmed) {
            self.state.borrow_mut().instance.compensables = records;
            return Err(WorkflowError::application(
                "a confirmed compensable block cannot be compensated",
            ));
        }
        let mut queue = Vec::new();
        if compensate {
            for record in records.drain(..).rev() {
                if let Some(state) = record.compensate {
                    let scope = self.new_disconnected_scope();
                    queue.push(HandlerRun {
                        site: record.site,
                        confirm: false,
                        state,
                        scope,
                    });
                }
            }
        } else {
            for record in records.iter_mut().filter(|r| !r.confirmed) {
                record.confirmed = true;
                if let Some(state) = record.confirm.take() {
                    let scope = self.new_disconnected_scope();
                    queue.push(HandlerRun {
                        site: record.site,
                        confirm: true,
                        state,
                        scope,
                    });
                }
            }
        }
        let mut st = self.state.borrow_mut();
        st.history.push(EventKind::Log {
            message: format!(
                "{} {} block(s) now",
                if compensate {
                    "compensating"
                } else {
                    "confirming"
                },
                queue.len()
            ),
        });
        st.instance.compensables = records;
        st.instance.explicit = queue;
        Ok(())
    }

    /// The explicitly started handler to run next, if any.
    pub(crate) fn explicit_front(&self) -> Option<HandlerRun> {
        self.state.borrow().instance.explicit.first().cloned()
    }

    /// Stores the machine of the explicitly started handler running now.
    pub(crate) fn explicit_update_front(&self, state: serde_json::Value) {
        if let Some(front) = self.state.borrow_mut().instance.explicit.first_mut() {
            front.state = state;
        }
    }

    /// The explicitly started handler running now has ended.
    pub(crate) fn explicit_pop_front(&self) {
        let mut st = self.state.borrow_mut();
        if !st.instance.explicit.is_empty() {
            st.instance.explicit.remove(0);
        }
    }

    /// The closing workflow's result, once `begin_closing` ran.
    pub(crate) fn closing_result(&self) -> Option<serde_json::Value> {
        self.state
            .borrow()
            .instance
            .closing
            .as_ref()
            .map(|c| c.result.clone())
    }

    /// The handler to run next, if any.
    pub(crate) fn closing_front(&self) -> Option<HandlerRun> {
        self.state
            .borrow()
            .instance
            .closing
            .as_ref()
            .and_then(|c| c.queue.first().cloned())
    }

    /// Stores the machine of the handler running now.
    pub(crate) fn closing_update_front(&self, state: serde_json::Value) {
        if let Some(front) = self
            .state
            .borrow_mut()
            .instance
            .closing
            .as_mut()
            .and_then(|c| c.queue.first_mut())
        {
            front.state = state;
        }
    }

    /// The handler running now has ended.
    pub(crate) fn closing_pop_front(&self) {
        if let Some(c) = self.state.borrow_mut().instance.closing.as_mut() {
            if !c.queue.is_empty() {
                c.queue.remove(0);
            }
        }
    }

    /// The kind of a scope.
    pub(crate) fn scope_kind(&self, scope: ScopeId) -> Option<ScopeKind> {
        self.state
            .borrow()
            .instance
            .scopes
            .get(scope.0 as usize)
            .map(|s| s.kind)
    }

    /// The id of the workflow this step belongs to.
    pub fn workflow_id(&self) -> &str {
        &self.workflow_id
    }

    /// Engine time of this step, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.state.borrow().now_ms
    }

    /// Applies one external event before the machine runs.
    pub fn apply(&self, event: Event) {
        let mut st = self.state.borrow_mut();
        match event {
            Event::CancelRequested { reason } => {
                if st.instance.cancel_reason.is_some() {
                    return; // R1.4: a second request changes nothing.
                }
                st.instance.cancel_reason = Some(reason.clone());
                st.history.push(EventKind::CancelRequested {
                    reason: reason.clone(),
                });
                st.cancel_scope(ScopeId::ROOT, &reason);
            }
            Event::ActivityCompleted { op, result } => {
                st.resolve_activity(op, Ok(result));
            }
            Event::ActivityFailed { op, failure } => {
                st.resolve_activity(op, Err(failure));
            }
            Event::ChildClosed { op, outcome } => st.child_closed(op, outcome),
            Event::ChildCancelRecorded { op } => st.child_cancel_recorded(op),
            Event::ExternalCancelDone { op, result } => st.external_cancel_done(op, result),
            Event::TimerFired { op } => {
                let Some(rec) = st.instance.ops.get_mut(&op) else {
                    return;
                };
                if rec.status != OpStatus::Pending {
                    return;
                }
                if let OpKind::Timer {
                    timeout_of: Some(scope),
                    duration_ms,
                    ..
                } = rec.kind
                {
                    // A `with_timeout` deadline: nobody awaits the timer, it cancels its scope.
                    st.instance.ops.remove(&op);
                    st.history.push(EventKind::TimerFired { op });
                    let reason = format!("timed out after {duration_ms} ms");
                    st.history.push(EventKind::ScopeCancelled {
                        scope,
                        reason: reason.clone(),
                    });
                    st.cancel_scope(scope, &reason);
                } else {
                    rec.status = OpStatus::Resolved(Ok(serde_json::Value::Null));
                    st.history.push(EventKind::TimerFired { op });
                }
            }
        }
    }

    /// Closes the workflow's operations when it finishes: pending activities are cancelled
    /// (unless abandoned), pending timers are stopped, and each child still running gets its
    /// parent close policy (R7). A child whose start is still among this step's commands is
    /// simply never started.
    pub fn close_pending(&self) {
        let mut st = self.state.borrow_mut();
        let children = std::mem::take(&mut st.instance.children);
        for (op, child) in children {
            if st.unsend_start(op) {
                continue;
            }
            let reason = "the parent workflow closed".to_string();
            match child.parent_close {
                ParentClosePolicy::Terminate => st.commands.push(Command::TerminateChild {
                    id: child.id.clone(),
                    reason,
                }),
                ParentClosePolicy::RequestCancel => st.commands.push(Command::CancelChild {
                    op,
                    id: child.id.clone(),
                    reason,
                }),
                ParentClosePolicy::Abandon => {}
            }
            st.history.push(EventKind::ParentClosePolicyApplied {
                workflow: child.workflow,
                id: child.id,
                policy: child.parent_close,
            });
        }
        let pending: Vec<(OpId, OpRecord)> = std::mem::take(&mut st.instance.ops)
            .into_iter()
            // A `CancelRequested` operation was already sent its cancel.
            .filter(|(_, rec)| matches!(rec.status, OpStatus::Pending))
            .collect();
        for (op, rec) in pending {
            match rec.kind {
                OpKind::Activity { cancellation, .. } => {
                    st.commands.push(Command::CancelActivity {
                        op,
                        notify_running: cancellation != ActivityCancellationType::Abandon,
                    })
                }
                OpKind::Timer { .. } => st.commands.push(Command::CancelTimer { op }),
                // Children were handled above; a cancel already sent elsewhere stays sent.
                OpKind::CancelSignal
                | OpKind::Race { .. }
                | OpKind::Join { .. }
                | OpKind::Child { .. }
                | OpKind::CancelExternal { .. } => {}
            }
        }
    }

    /// Ends the step and hands its results to the engine.
    pub fn finish(self) -> StepOutput {
        let st = self.state.into_inner();
        StepOutput {
            instance: st.instance,
            commands: st.commands,
            history: st.history,
        }
    }

    /// Whether the workflow received a cancel request (decides Canceled vs Failed, R2).
    pub fn workflow_cancel_requested(&self) -> bool {
        self.state.borrow().instance.cancel_reason.is_some()
    }

    /// The reason of the scope's fired cancellation signal, if it fired.
    pub(crate) fn scope_signal(&self, scope: ScopeId) -> Option<String> {
        let st = self.state.borrow();
        st.instance
            .scopes
            .get(scope.0 as usize)
            .and_then(|s| s.signal.clone())
    }

    pub(crate) fn workflow_cancel_reason(&self) -> Option<String> {
        self.state.borrow().instance.cancel_reason.clone()
    }

    pub(crate) fn new_disconnected_scope(&self) -> ScopeId {
        let mut st = self.state.borrow_mut();
        let id = ScopeId(st.instance.scopes.len() as u32);
        st.instance.scopes.push(ScopeRecord {
            parent: None,
            kind: ScopeKind::Disconnected,
            cancel_requested: None,
            signal: None,
        });
        id
    }

    /// Opens a scope under `parent`. A cancellable scope under a cancelled parent is born
    /// cancelled (R3.6); a non-cancellable one is born with its signal fired. With a timeout,
    /// a timer owned by the new scope cancels it when it fires (R5.1).
    pub(crate) fn open_scope(
        &self,
        parent: ScopeId,
        kind: ScopeKind,
        timeout: Option<Duration>,
    ) -> ScopeId {
        let mut st = self.state.borrow_mut();
        let id = ScopeId(st.instance.scopes.len() as u32);
        let parent_rec = st.instance.scopes.get(parent.0 as usize);
        let parent_cancel = parent_rec.and_then(|p| p.cancel_requested.clone());
        let parent_signal = parent_rec.and_then(|p| p.signal.clone());
        let cancel_requested = match kind {
            ScopeKind::Cancellable => parent_cancel,
            _ => None,
        };
        // A non-cancellable scope sees the signal its parent has seen; a cancellable one only
        // if it is born cancelled (a shield's cancellable children never see it, R3.3).
        let signal = match kind {
            ScopeKind::NonCancellable => parent_signal,
            _ => cancel_requested.clone(),
        };
        st.instance.scopes.push(ScopeRecord {
            parent: Some(parent),
            kind,
            cancel_requested,
            signal,
        });
        if let Some(timeout) = timeout {
            let duration_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            let fire_at_ms = st.now_ms.saturating_add(duration_ms);
            let op = st.new_op(
                id,
                OpKind::Timer {
                    duration_ms,
                    fire_at_ms,
                    timeout_of: Some(id),
                },
            );
            if !st.reject_if_cancelled(op, id) {
                st.history.push(EventKind::TimerStarted {
                    op,
                    duration_ms,
                    fire_at_ms,
                });
                st.commands.push(Command::StartTimer { op, fire_at_ms });
            }
        }
        id
    }

    /// Closes a scope whose body has ended: a timeout that has not fired is cancelled and
    /// recorded as such (R5.1). Operations started in the scope and still pending keep
    /// running; they stay owned by it (R3.1, R10).
    pub(crate) fn close_scope(&self, scope: ScopeId) {
        let mut st = self.state.borrow_mut();
        let timers: Vec<OpId> = st
            .instance
            .ops
            .iter()
            .filter(
                |(_, r)| matches!(r.kind, OpKind::Timer { timeout_of: Some(s), .. } if s == scope),
            )
            .map(|(op, _)| *op)
            .collect();
        for op in timers {
            if let Some(rec) = st.instance.ops.remove(&op) {
                if rec.status == OpStatus::Pending {
                    st.commands.push(Command::CancelTimer { op });
                    st.history.push(EventKind::TimerCancelled { op });
                }
            }
        }
    }

    /// Cancels `scope` from workflow code (`ctx.cancel_scope()`), with the same actions as a
    /// cancel request (R1.3, R3.2).
    pub(crate) fn cancel_scope(&self, scope: ScopeId, reason: &str) {
        let mut st = self.state.borrow_mut();
        let already = st
            .instance
            .scopes
            .get(scope.0 as usize)
            .is_none_or(|s| s.cancel_requested.is_some());
        if !already {
            st.history.push(EventKind::ScopeCancelled {
                scope,
                reason: reason.to_string(),
            });
        }
        st.cancel_scope(scope, reason);
    }

    /// Whether `scope` itself is cancelled (not just signalled): its handler runs when its
    /// code is left.
    pub(crate) fn scope_is_cancelled(&self, scope: ScopeId) -> bool {
        self.state.borrow().scope_is_cancelled(scope)
    }

    pub(crate) fn record(&self, event: EventKind) {
        self.state.borrow_mut().history.push(event);
    }

    pub(crate) fn schedule_activity(
        &self,
        scope: ScopeId,
        activity: &str,
        input: Result<serde_json::Value, String>,
        options: ActivityOptions,
    ) -> OpId {
        let mut st = self.state.borrow_mut();
        let kind = OpKind::Activity {
            activity: activity.to_string(),
            cancellation: options.cancellation,
        };
        let op = st.new_op(scope, kind);
        let input = match input {
            Ok(input) => input,
            Err(message) => {
                st.resolve_now(
                    op,
                    Err(WorkflowError::Decode {
                        what: format!("the input of activity `{activity}`"),
                        message,
                    }),
                );
                return op;
            }
        };
        if st.reject_if_cancelled(op, scope) {
            return op;
        }
        st.history.push(EventKind::ActivityScheduled {
            op,
            activity: activity.to_string(),
            cancellation: options.cancellation,
        });
        st.commands.push(Command::ScheduleActivity {
            op,
            activity: activity.to_string(),
            input,
            options,
        });
        op
    }

    pub(crate) fn start_timer(&self, scope: ScopeId, duration: Duration) -> OpId {
        let mut st = self.state.borrow_mut();
        let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let fire_at_ms = st.now_ms.saturating_add(duration_ms);
        let op = st.new_op(
            scope,
            OpKind::Timer {
                duration_ms,
                fire_at_ms,
                timeout_of: None,
            },
        );
        if st.reject_if_cancelled(op, scope) {
            return op;
        }
        if duration_ms == 0 {
            // R8: a zero duration resolves at once, without a timer.
            st.resolve_now(op, Ok(serde_json::Value::Null));
            return op;
        }
        st.history.push(EventKind::TimerStarted {
            op,
            duration_ms,
            fire_at_ms,
        });
        st.commands.push(Command::StartTimer { op, fire_at_ms });
        op
    }

    /// Starts a child workflow (R7). An input that did not serialize resolves at once with a
    /// decode error; in a cancelled scope the child is never started (R9).
    pub(crate) fn start_child(
        &self,
        scope: ScopeId,
        workflow: &str,
        id: String,
        input: Result<serde_json::Value, String>,
        cancellation: ChildWorkflowCancellationType,
        parent_close: ParentClosePolicy,
    ) -> OpId {
        let mut st = self.state.borrow_mut();
        let kind = OpKind::Child {
            workflow: workflow.to_string(),
            id: id.clone(),
            cancellation,
            parent_close,
        };
        let op = st.new_op(scope, kind);
        let input = match input {
            Ok(input) => input,
            Err(message) => {
                st.resolve_now(
                    op,
                    Err(WorkflowError::Decode {
                        what: format!("the input of child workflow `{workflow}`"),
                        message,
                    }),
                );
                return op;
            }
        };
        if st.reject_if_cancelled(op, scope) {
            return op;
        }
        st.history.push(EventKind::ChildStarted {
            op,
            workflow: workflow.to_string(),
            id: id.clone(),
            cancellation,
            parent_close,
        });
        st.commands.push(Command::StartChild {
            op,
            workflow: workflow.to_string(),
            id: id.clone(),
            input,
        });
        st.instance.children.insert(
            op,
            RunningChild {
                workflow: workflow.to_string(),
                id,
                parent_close,
            },
        );
        op
    }

    /// Sends a cancel request to another workflow; in a cancelled scope it is never sent (R9).
    pub(crate) fn cancel_external(&self, scope: ScopeId, id: String, reason: String) -> OpId {
        let mut st = self.state.borrow_mut();
        let op = st.new_op(
            scope,
            OpKind::CancelExternal {
                id: id.clone(),
                reason: reason.clone(),
            },
        );
        if st.reject_if_cancelled(op, scope) {
            return op;
        }
        st.history.push(EventKind::ExternalCancelRequested {
            op,
            id: id.clone(),
            reason: reason.clone(),
        });
        st.commands.push(Command::CancelExternal { op, id, reason });
        op
    }

    pub(crate) fn cancel_signal(&self, scope: ScopeId) -> OpId {
        let mut st = self.state.borrow_mut();
        let op = st.new_op(scope, OpKind::CancelSignal);
        let fired = st
            .instance
            .scopes
            .get(scope.0 as usize)
            .is_some_and(|s| s.signal.is_some());
        if fired {
            st.resolve_now(op, Ok(serde_json::Value::Null));
        }
        op
    }

    /// Takes the result of `op` if it has resolved. The operation leaves the table.
    /// Starts a race of `ops` in `scope`.
    pub(crate) fn start_race(&self, scope: ScopeId, ops: Vec<OpId>) -> OpId {
        let mut st = self.state.borrow_mut();
        // Not cancelled with its scope, not refused in a cancelled one (see `cancel_op`).
        st.new_op(scope, OpKind::Race { ops })
    }

    /// Starts a join of `ops` in `scope`.
    pub(crate) fn start_join(&self, scope: ScopeId, ops: Vec<OpId>) -> OpId {
        self.state.borrow_mut().new_op(scope, OpKind::Join { ops })
    }

    pub(crate) fn take(&self, op: OpId) -> Option<Result<serde_json::Value, WorkflowError>> {
        let mut st = self.state.borrow_mut();
        st.settle_race(op);
        st.settle_join(op);
        match st.instance.ops.get(&op) {
            Some(OpRecord {
                status: OpStatus::Resolved(_),
                ..
            }) => match st.instance.ops.remove(&op) {
                Some(OpRecord {
                    status: OpStatus::Resolved(result),
                    ..
                }) => Some(result),
                _ => None,
            },
            Some(_) => None,
            None => Some(Err(WorkflowError::Decode {
                what: format!("the result of {op}"),
                message: "the workflow state refers to an operation the runtime does not know; \
                          the snapshot does not match its operation table"
                    .to_string(),
            })),
        }
    }
}

impl StepState {
    /// A pending race resolves with the first of its operations that has resolved (the
    /// earliest given, if several did in the same step); that operation is consumed.
    fn settle_race(&mut self, race: OpId) {
        let Some(OpRecord {
            kind: OpKind::Race { ops },
            status: OpStatus::Pending,
            ..
        }) = self.instance.ops.get(&race)
        else {
            return;
        };
        if ops.is_empty() || ops.iter().any(|op| !self.instance.ops.contains_key(op)) {
            // A handle already awaited (or a race of nothing) can never finish: fail the race
            // at once, as awaiting such a handle directly does.
            self.resolve_now(
                race,
                Err(WorkflowError::Decode {
                    what: format!("the race {race}"),
                    message: "it races nothing, or an operation that was already awaited"
                        .to_string(),
                }),
            );
            return;
        }
        let winner = ops.iter().enumerate().find_map(|(i, op)| {
            matches!(
                self.instance.ops.get(op),
                Some(OpRecord {
                    status: OpStatus::Resolved(_),
                    ..
                })
            )
            .then_some((i, *op))
        });
        let Some((index, op)) = winner else {
            return;
        };
        let Some(OpRecord {
            status: OpStatus::Resolved(result),
            ..
        }) = self.instance.ops.remove(&op)
        else {
            return;
        };
        let value = serde_json::json!({ "index": index, "winner": op, "result": result });
        self.history.push(EventKind::RaceWon {
            op: race,
            winner: op,
        });
        self.resolve_now(race, Ok(value));
    }

    /// A pending join resolves once all its operations have resolved; they are consumed.
    fn settle_join(&mut self, join: OpId) {
        let Some(OpRecord {
            kind: OpKind::Join { ops },
            status: OpStatus::Pending,
            ..
        }) = self.instance.ops.get(&join)
        else {
            return;
        };
        let ops = ops.clone();
        if ops.iter().any(|op| !self.instance.ops.contains_key(op)) {
            self.resolve_now(
                join,
                Err(WorkflowError::Decode {
                    what: format!("the join {join}"),
                    message: "it joins an operation that was already awaited".to_string(),
                }),
            );
            return;
        }
        let all_done = ops.iter().all(|op| {
            matches!(
                self.instance.ops.get(op),
                Some(OpRecord {
                    status: OpStatus::Resolved(_),
                    ..
                })
            )
        });
        if !all_done {
            return;
        }
        let results: Vec<serde_json::Value> = ops
            .iter()
            .filter_map(|op| match self.instance.ops.remove(op) {
                Some(OpRecord {
                    status: OpStatus::Resolved(result),
                    ..
                }) => Some(serde_json::json!({ "op": op, "result": result })),
                _ => None,
            })
            .collect();
        self.resolve_now(join, Ok(serde_json::json!({ "results": results })));
    }

    fn new_op(&mut self, scope: ScopeId, kind: OpKind) -> OpId {
        let op = OpId(self.instance.next_op);
        // A validated snapshot keeps the counter at most `MAX_OP_ID`, far from overflowing.
        self.instance.next_op = self.instance.next_op.saturating_add(1);
        self.instance.ops.insert(
            op,
            OpRecord {
                kind,
                scope,
                status: OpStatus::Pending,
            },
        );
        op
    }

    fn resolve_now(&mut self, op: OpId, result: Result<serde_json::Value, WorkflowError>) {
        if let Some(rec) = self.instance.ops.get_mut(&op) {
            rec.status = OpStatus::Resolved(result);
        }
    }

    fn scope_is_cancelled(&self, scope: ScopeId) -> bool {
        self.instance
            .scopes
            .get(scope.0 as usize)
            .is_some_and(|s| s.cancel_requested.is_some())
    }

    /// R9: an operation created in an already-cancelled scope fails at once and is never
    /// dispatched.
    fn reject_if_cancelled(&mut self, op: OpId, scope: ScopeId) -> bool {
        let Some(reason) = self
            .instance
            .scopes
            .get(scope.0 as usize)
            .and_then(|s| s.cancel_requested.clone())
        else {
            return false;
        };
        let what = self.instance.ops[&op].kind.to_string();
        self.resolve_now(op, Err(WorkflowError::Cancelled { reason }));
        self.history.push(EventKind::OperationSkipped { op, what });
        true
    }

    /// R1.3 / R3.2 / R3.3: cancels `scope` and the cancellable scopes beneath it, fires the
    /// signal of the non-cancellable scopes directly beneath those (without cancelling them
    /// or what they contain), then gives every pending operation of the cancelled scopes its
    /// cancel action, in creation order.
    fn cancel_scope(&mut self, scope: ScopeId, reason: &str) {
        let mut cancelled = vec![false; self.instance.scopes.len()];
        let mut signalled = vec![false; self.instance.scopes.len()];
        // Scopes to cancel, and non-cancellable scopes whose signal fires (R3.3): the signal
        // goes on down through non-cancellable scopes, but not into the cancellable scopes
        // they shield.
        let mut to_cancel = vec![scope];
        let mut to_signal = Vec::new();
        // Each scope is visited once (a validated tree has no cycle, but a walk over stored
        // data must end whatever the data says).
        while let Some(s) = to_cancel.pop() {
            match cancelled.get_mut(s.0 as usize) {
                Some(slot) if !*slot => *slot = true,
                _ => continue,
            }
            for (i, child) in self.instance.scopes.iter().enumerate() {
                if child.parent == Some(s) {
                    match child.kind {
                        ScopeKind::NonCancellable => to_signal.push(ScopeId(i as u32)),
                        ScopeKind::Cancellable => to_cancel.push(ScopeId(i as u32)),
                        ScopeKind::Root | ScopeKind::Disconnected => {}
                    }
                }
            }
        }
        while let Some(s) = to_signal.pop() {
            match signalled.get_mut(s.0 as usize) {
                Some(slot) if !*slot => *slot = true,
                _ => continue,
            }
            for (i, child) in self.instance.scopes.iter().enumerate() {
                if child.parent == Some(s) && child.kind == ScopeKind::NonCancellable {
                    to_signal.push(ScopeId(i as u32));
                }
            }
        }
        for (i, rec) in self.instance.scopes.iter_mut().enumerate() {
            if cancelled[i] {
                rec.cancel_requested
                    .get_or_insert_with(|| reason.to_string());
            }
            if cancelled[i] || signalled[i] {
                rec.signal.get_or_insert_with(|| reason.to_string());
            }
        }
        let targets: Vec<OpId> = self
            .instance
            .ops
            .iter()
            .filter(|(_, rec)| {
                let i = rec.scope.0 as usize;
                rec.status == OpStatus::Pending
                    && (cancelled.get(i).copied().unwrap_or(false)
                        || (signalled.get(i).copied().unwrap_or(false)
                            && rec.kind == OpKind::CancelSignal))
            })
            .map(|(op, _)| *op)
            .collect();
        for op in targets {
            self.cancel_op(op, reason);
        }
    }

    /// Withdraws the start of child `op` if it is still among this step's commands, so the
    /// child never starts (R7: a child cancelled before it started never starts). Returns
    /// whether it did.
    fn unsend_start(&mut self, op: OpId) -> bool {
        let before = self.commands.len();
        self.commands
            .retain(|c| !matches!(c, Command::StartChild { op: o, .. } if *o == op));
        let withdrawn = self.commands.len() != before;
        if withdrawn {
            self.instance.children.remove(&op);
        }
        withdrawn
    }

    /// The cancel action of a child workflow (R7 table).
    fn cancel_child(
        &mut self,
        op: OpId,
        workflow: String,
        id: String,
        cancellation: ChildWorkflowCancellationType,
        reason: &str,
    ) {
        let cancelled = || {
            Err(WorkflowError::Cancelled {
                reason: reason.to_string(),
            })
        };
        let what = format!("child workflow `{workflow}` (id `{id}`)");
        if self.unsend_start(op) {
            self.resolve_now(op, cancelled());
            self.history.push(EventKind::OperationCancelled {
                op,
                what: format!("{what}, before it started: it never starts"),
            });
            return;
        }
        if cancellation == ChildWorkflowCancellationType::Abandon {
            self.resolve_now(op, cancelled());
            self.history
                .push(EventKind::ChildAbandoned { op, workflow, id });
            return;
        }
        self.commands.push(Command::CancelChild {
            op,
            id: id.clone(),
            reason: reason.to_string(),
        });
        self.history.push(EventKind::ChildCancelRequested {
            op,
            workflow,
            id,
            cancellation,
        });
        if cancellation == ChildWorkflowCancellationType::TryCancel {
            self.resolve_now(op, cancelled());
            self.history
                .push(EventKind::OperationCancelled { op, what });
        } else if let Some(rec) = self.instance.ops.get_mut(&op) {
            rec.status = OpStatus::CancelRequested;
        }
    }

    fn cancel_op(&mut self, op: OpId, reason: &str) {
        match self.instance.ops.get(&op).map(|rec| rec.kind.clone()) {
            Some(OpKind::Child {
                workflow,
                id,
                cancellation,
                ..
            }) => return self.cancel_child(op, workflow, id, cancellation, reason),
            Some(OpKind::CancelExternal { id, .. }) => {
                // Not sent yet: it never is. Sent: the call resolves now; the request stays
                // sent and its answer is absorbed.
                self.commands
                    .retain(|c| !matches!(c, Command::CancelExternal { op: o, .. } if *o == op));
                self.resolve_now(
                    op,
                    Err(WorkflowError::Cancelled {
                        reason: reason.to_string(),
                    }),
                );
                self.history.push(EventKind::OperationCancelled {
                    op,
                    what: format!("cancel of workflow `{id}`"),
                });
                return;
            }
            _ => {}
        }
        let Some(rec) = self.instance.ops.get_mut(&op) else {
            return;
        };
        let cancelled = Err(WorkflowError::Cancelled {
            reason: reason.to_string(),
        });
        match rec.kind.clone() {
            OpKind::Activity {
                activity,
                cancellation,
            } => match cancellation {
                ActivityCancellationType::TryCancel => {
                    rec.status = OpStatus::Resolved(cancelled);
                    self.commands.push(Command::CancelActivity {
                        op,
                        notify_running: true,
                    });
                    self.history.push(EventKind::ActivityCancelRequested {
                        op,
                        activity: activity.clone(),
                        wait: false,
                    });
                    self.history.push(EventKind::OperationCancelled {
                        op,
                        what: format!("activity `{activity}`"),
                    });
                }
                ActivityCancellationType::WaitCancellationCompleted => {
                    rec.status = OpStatus::CancelRequested;
                    self.commands.push(Command::CancelActivity {
                        op,
                        notify_running: true,
                    });
                    self.history.push(EventKind::ActivityCancelRequested {
                        op,
                        activity,
                        wait: true,
                    });
                }
                ActivityCancellationType::Abandon => {
                    rec.status = OpStatus::Resolved(cancelled);
                    // Not started yet: it never starts (R6.1). Running: left alone.
                    self.commands.push(Command::CancelActivity {
                        op,
                        notify_running: false,
                    });
                    self.history
                        .push(EventKind::ActivityAbandoned { op, activity });
                }
            },
            OpKind::Timer { .. } => {
                rec.status = OpStatus::Resolved(cancelled);
                self.commands.push(Command::CancelTimer { op });
                self.history.push(EventKind::TimerCancelled { op });
            }
            OpKind::CancelSignal => {
                rec.status = OpStatus::Resolved(Ok(serde_json::Value::Null));
                self.history.push(EventKind::CancelSignalled { op });
            }
            // Handled above.
            OpKind::Child { .. } | OpKind::CancelExternal { .. } => {}
            OpKind::Race { .. } | OpKind::Join { .. } => {
                // A race (or join) is not work of its own: it ends when one of the raced operations
                // does, and those belong to the scopes that started them (R10). So racing an
                // operation against the scope's `cancelled()` signal notices the cancel.
            }
        }
    }

    /// A child closed (or could not start). The call resolves with its outcome unless it
    /// already resolved (Abandon, TryCancel, WaitCancellationRequested): then the outcome is
    /// absorbed, as R6.3 does for activities.
    fn child_closed(&mut self, op: OpId, outcome: ChildOutcome) {
        let running = self.instance.children.remove(&op);
        let (workflow, id) = match self.instance.ops.get(&op) {
            Some(OpRecord {
                kind: OpKind::Child { workflow, id, .. },
                status: OpStatus::Pending | OpStatus::CancelRequested,
                ..
            }) => (workflow.clone(), id.clone()),
            _ => {
                let what = match running {
                    Some(child) => format!(
                        "child workflow `{}` (id `{}`) {} after its call was resolved",
                        child.workflow, child.id, outcome
                    ),
                    None => format!("a child {outcome} after its call was resolved"),
                };
                self.history.push(EventKind::ResultIgnored { op, what });
                return;
            }
        };
        let failure = match outcome {
            ChildOutcome::Completed(value) => {
                self.resolve_now(op, Ok(value));
                self.history
                    .push(EventKind::ChildCompleted { op, workflow, id });
                return;
            }
            ChildOutcome::Failed(message) => ChildFailure::Failed { message },
            ChildOutcome::Canceled(message) => ChildFailure::Canceled { message },
            ChildOutcome::Terminated(reason) => ChildFailure::Terminated { reason },
            ChildOutcome::StartFailed(message) => ChildFailure::StartFailed { message },
        };
        self.resolve_now(
            op,
            Err(WorkflowError::Child {
                workflow: workflow.clone(),
                id: id.clone(),
                failure: failure.clone(),
            }),
        );
        self.history.push(EventKind::ChildFailed {
            op,
            workflow,
            id,
            failure,
        });
    }

    /// The child recorded our cancel request: a `WaitCancellationRequested` call resolves now
    /// with a cancellation error.
    fn child_cancel_recorded(&mut self, op: OpId) {
        self.history.push(EventKind::ChildCancelRecorded { op });
        let Some(OpRecord {
            kind:
                OpKind::Child {
                    cancellation: ChildWorkflowCancellationType::WaitCancellationRequested,
                    ..
                },
            status: OpStatus::CancelRequested,
            scope,
        }) = self.instance.ops.get(&op)
        else {
            return;
        };
        let reason = self
            .instance
            .scopes
            .get(scope.0 as usize)
            .and_then(|s| s.cancel_requested.clone())
            .unwrap_or_default();
        self.resolve_now(op, Err(WorkflowError::Cancelled { reason }));
    }

    fn external_cancel_done(&mut self, op: OpId, result: Result<(), String>) {
        let id = match self.instance.ops.get(&op) {
            Some(OpRecord {
                kind: OpKind::CancelExternal { id, .. },
                status: OpStatus::Pending,
                ..
            }) => id.clone(),
            _ => {
                self.history.push(EventKind::ResultIgnored {
                    op,
                    what: "answer to a cancel request whose call was already resolved".to_string(),
                });
                return;
            }
        };
        self.history.push(EventKind::ExternalCancelCompleted {
            op,
            id: id.clone(),
            error: result.clone().err(),
        });
        self.resolve_now(
            op,
            result
                .map(|()| serde_json::Value::Null)
                .map_err(|message| WorkflowError::ExternalCancel { id, message }),
        );
    }

    fn resolve_activity(&mut self, op: OpId, outcome: Result<serde_json::Value, ActivityFailure>) {
        let Some(rec) = self.instance.ops.get_mut(&op) else {
            self.history.push(EventKind::ResultIgnored {
                op,
                what: "result of an operation that was already resolved".to_string(),
            });
            return;
        };
        let OpKind::Activity { activity, .. } = rec.kind.clone() else {
            return;
        };
        if matches!(rec.status, OpStatus::Resolved(_)) {
            // R6.3: TryCancel / Abandon already resolved the call; the late result is absorbed.
            self.history.push(EventKind::ResultIgnored {
                op,
                what: format!("activity `{activity}` finished after its call was cancelled"),
            });
            return;
        }
        match outcome {
            Ok(value) => {
                rec.status = OpStatus::Resolved(Ok(value));
                self.history
                    .push(EventKind::ActivityCompleted { op, activity });
            }
            Err(failure) => {
                rec.status = OpStatus::Resolved(Err(WorkflowError::Activity {
                    activity: activity.clone(),
                    failure: failure.clone(),
                }));
                self.history.push(EventKind::ActivityFailed {
                    op,
                    activity,
                    failure,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The pure core needs no runtime: a step is a function of the instance and the events.
    use super::*;

    fn options(cancellation: ActivityCancellationType) -> ActivityOptions {
        ActivityOptions {
            cancellation,
            ..ActivityOptions::default()
        }
    }

    #[test]
    fn r1_3_every_pending_operation_gets_its_cancel_action_in_creation_order() {
        let cx = StepContext::new("wf", Instance::default(), 1_000);
        let ok = || Ok(serde_json::Value::Null);
        let try_cancel = cx.schedule_activity(
            ScopeId::ROOT,
            "a",
            ok(),
            options(ActivityCancellationType::TryCancel),
        );
        let timer = cx.start_timer(ScopeId::ROOT, Duration::from_secs(5));
        let wait = cx.schedule_activity(
            ScopeId::ROOT,
            "b",
            ok(),
            options(ActivityCancellationType::WaitCancellationCompleted),
        );
        let signal = cx.cancel_signal(ScopeId::ROOT);
        let abandon = cx.schedule_activity(
            ScopeId::ROOT,
            "c",
            ok(),
            options(ActivityCancellationType::Abandon),
        );
        let detached_scope = cx.new_disconnected_scope();
        let detached = cx.start_timer(detached_scope, Duration::from_secs(5));
        let before = cx.finish();
        assert_eq!(before.commands.len(), 5);

        let cx = StepContext::new("wf", before.instance, 2_000);
        cx.apply(Event::CancelRequested {
            reason: "stop".into(),
        });
        let cancelled = || Some(Err(WorkflowError::cancelled("stop")));
        assert_eq!(cx.take(try_cancel), cancelled());
        assert_eq!(cx.take(timer), cancelled());
        assert_eq!(
            cx.take(wait),
            None,
            "WaitCancellationCompleted waits for the activity"
        );
        assert_eq!(cx.take(signal), Some(Ok(serde_json::Value::Null)));
        assert_eq!(cx.take(abandon), cancelled());
        assert_eq!(
            cx.take(detached),
            None,
            "R4.1: a disconnected scope is not cancelled"
        );
        let out = cx.finish();
        assert_eq!(
            out.commands,
            [
                Command::CancelActivity {
                    op: try_cancel,
                    notify_running: true
                },
                Command::CancelTimer { op: timer },
                Command::CancelActivity {
                    op: wait,
                    notify_running: true
                },
                Command::CancelActivity {
                    op: abandon,
                    notify_running: false
                },
            ]
        );
        assert!(matches!(out.history[0], EventKind::CancelRequested { .. }));
    }

    #[test]
    fn r9_operations_created_in_a_cancelled_scope_fail_at_once_and_emit_no_command() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        cx.apply(Event::CancelRequested {
            reason: String::new(),
        });
        let a = cx.schedule_activity(
            ScopeId::ROOT,
            "a",
            Ok(serde_json::Value::Null),
            ActivityOptions::default(),
        );
        let t = cx.start_timer(ScopeId::ROOT, Duration::from_secs(1));
        let s = cx.cancel_signal(ScopeId::ROOT);
        assert_eq!(cx.take(a), Some(Err(WorkflowError::cancelled(""))));
        assert_eq!(cx.take(t), Some(Err(WorkflowError::cancelled(""))));
        assert_eq!(
            cx.take(s),
            Some(Ok(serde_json::Value::Null)),
            "the signal has fired"
        );
        assert!(cx.finish().commands.is_empty());
    }

    #[test]
    fn r1_4_r6_3_repeated_cancels_and_late_results_change_nothing() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let a = cx.schedule_activity(
            ScopeId::ROOT,
            "a",
            Ok(serde_json::Value::Null),
            ActivityOptions::default(),
        );
        cx.apply(Event::CancelRequested {
            reason: "one".into(),
        });
        cx.apply(Event::CancelRequested {
            reason: "two".into(),
        });
        cx.apply(Event::ActivityCompleted {
            op: a,
            result: serde_json::json!(5),
        });
        assert_eq!(cx.take(a), Some(Err(WorkflowError::cancelled("one"))));
        let out = cx.finish();
        let requests = out
            .history
            .iter()
            .filter(|e| matches!(e, EventKind::CancelRequested { .. }))
            .count();
        assert_eq!(requests, 1);
        assert!(matches!(
            out.history.last(),
            Some(EventKind::ResultIgnored { .. })
        ));
    }

    #[test]
    fn r8_a_zero_sleep_resolves_at_once_without_a_timer() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let t = cx.start_timer(ScopeId::ROOT, Duration::ZERO);
        assert_eq!(cx.take(t), Some(Ok(serde_json::Value::Null)));
        assert!(cx.finish().commands.is_empty());
    }

    fn child(cx: &StepContext, id: &str, cancellation: ChildWorkflowCancellationType) -> OpId {
        cx.start_child(
            ScopeId::ROOT,
            "kid",
            id.to_string(),
            Ok(serde_json::Value::Null),
            cancellation,
            ParentClosePolicy::Terminate,
        )
    }

    #[test]
    fn r7_cancel_actions_of_the_four_child_cancellation_types() {
        use ChildWorkflowCancellationType::*;
        let cx = StepContext::new("wf", Instance::default(), 0);
        let abandon = child(&cx, "a", Abandon);
        let try_cancel = child(&cx, "b", TryCancel);
        let requested = child(&cx, "c", WaitCancellationRequested);
        let completed = child(&cx, "d", WaitCancellationCompleted);
        let started = cx.finish();
        assert_eq!(started.commands.len(), 4);

        let cx = StepContext::new("wf", started.instance, 1);
        cx.apply(Event::CancelRequested {
            reason: "stop".into(),
        });
        let cancelled = || Some(Err(WorkflowError::cancelled("stop")));
        assert_eq!(cx.take(abandon), cancelled());
        assert_eq!(cx.take(try_cancel), cancelled());
        assert_eq!(cx.take(requested), None);
        assert_eq!(cx.take(completed), None);
        // The recorded request resolves only the WaitCancellationRequested call.
        cx.apply(Event::ChildCancelRecorded { op: requested });
        cx.apply(Event::ChildCancelRecorded { op: completed });
        assert_eq!(cx.take(requested), cancelled());
        assert_eq!(cx.take(completed), None);
        // WaitCancellationCompleted gets the child's own outcome; late closes are absorbed.
        cx.apply(Event::ChildClosed {
            op: completed,
            outcome: ChildOutcome::Completed(serde_json::json!(7)),
        });
        cx.apply(Event::ChildClosed {
            op: try_cancel,
            outcome: ChildOutcome::Canceled("cancelled".into()),
        });
        assert_eq!(cx.take(completed), Some(Ok(serde_json::json!(7))));
        let out = cx.finish();
        let cancels: Vec<&str> = out
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::CancelChild { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(cancels, ["b", "c", "d"], "Abandon sends nothing");
        assert!(matches!(
            out.history.last(),
            Some(EventKind::ResultIgnored { .. })
        ));
        // The children not heard of as closed still get the parent close policy.
        assert_eq!(
            out.instance.children().keys().copied().collect::<Vec<_>>(),
            [abandon, requested]
        );
    }

    #[test]
    fn r7_a_child_cancelled_in_the_step_that_started_it_never_starts() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let op = child(
            &cx,
            "a",
            ChildWorkflowCancellationType::WaitCancellationCompleted,
        );
        cx.cancel_scope(ScopeId::ROOT, "stop");
        assert_eq!(cx.take(op), Some(Err(WorkflowError::cancelled("stop"))));
        let out = cx.finish();
        assert!(out.commands.is_empty(), "{:?}", out.commands);
        assert!(out.instance.children().is_empty());
    }

    #[test]
    fn r7_closing_applies_each_running_childs_parent_close_policy() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        for (id, policy) in [
            ("t", ParentClosePolicy::Terminate),
            ("c", ParentClosePolicy::RequestCancel),
            ("a", ParentClosePolicy::Abandon),
        ] {
            cx.start_child(
                ScopeId::ROOT,
                "kid",
                id.to_string(),
                Ok(serde_json::Value::Null),
                ChildWorkflowCancellationType::default(),
                policy,
            );
        }
        let cx = StepContext::new("wf", cx.finish().instance, 1);
        cx.close_pending();
        let out = cx.finish();
        assert!(matches!(
            &out.commands[..],
            [Command::TerminateChild { id: t, .. }, Command::CancelChild { id: c, .. }]
                if t == "t" && c == "c"
        ));
    }

    #[test]
    fn an_unknown_operation_is_an_error_not_a_panic() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        assert!(matches!(
            cx.take(OpId(99)),
            Some(Err(WorkflowError::Decode { .. }))
        ));
    }
}
