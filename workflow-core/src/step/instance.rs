//! The stored instance: the runtime half of a workflow's state, kept in its snapshot beside
//! the machine. It holds the scope tree, the operation table, the running children and the
//! compensable blocks and handler queues, with the read accessors `describe` and the engine
//! use. Changing this state is the job of the step (`StepContext`); checking a decoded one is
//! the job of `validate`.

use crate::{
    ActivityCancellationType, ActivityFailure, ChildWorkflowCancellationType, LocalActivityOptions,
    ParentClosePolicy, WorkflowError,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

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
    /// For the disconnected scope of a cancellation handler (`on_cancel!`), the handler's
    /// name (`on_cancel#N`): an operation awaited in it (or in a scope beneath it) that
    /// resolves with an error is recorded as a failure of the workflow's cleanup (R4.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
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
    /// A local activity call (`ctx.local_activity(..)`, R6.7): run by the worker that steps
    /// the workflow, without a task record. While it is pending, its input and progress are
    /// kept in the instance ([`Instance::local_activities`]).
    LocalActivity {
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
    /// A scope started with `.start()` (R3.7): resolves with the value of its block once the
    /// block's machine ends. Like a race it is not cancelled with the scope that owns it: the
    /// started scope itself is the one a cancel reaches (R3.2).
    Scope {
        /// The started scope.
        scope: ScopeId,
    },
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpKind::Activity { activity, .. } => write!(f, "activity `{activity}`"),
            OpKind::LocalActivity { activity, .. } => write!(f, "local activity `{activity}`"),
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
            OpKind::Scope { scope } => write!(f, "started scope #{}", scope.0),
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
    pub(super) next_op: u64,
    pub(super) scopes: Vec<ScopeRecord>,
    pub(super) ops: BTreeMap<OpId, OpRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) cancel_reason: Option<String>,
    /// Set when an unhandled error cancelled the workflow (`UnhandledErrorAction::Cancel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) unhandled_cancel: Option<String>,
    /// Children started and not known to be closed, by the operation that started them. Kept
    /// after the operation resolved (an abandoned or `TryCancel` child runs on), so that the
    /// parent close policy reaches every child still running (R7).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) children: BTreeMap<OpId, RunningChild>,
    /// Compensable blocks that completed, in completion order, with their handlers' machines
    /// in their start states (R12).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) compensables: Vec<CompensableRecord>,
    /// Set while the workflow runs its compensation or confirmation handlers before closing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) closing: Option<Closing>,
    /// Handlers run now by `ctx.compensate()` / `ctx.confirm()`, the first one running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) explicit: Vec<HandlerRun>,
    /// Failures of the workflow's cleanup, in order, each as a sentence: compensation and
    /// confirmation handlers that failed (R12), operations awaited in a cancellation handler
    /// that resolved with an error (R4.3). Kept with the workflow, also after it closed, for
    /// `describe`, `list` and the outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) handler_failures: Vec<String>,
    /// Scopes started with `.start()` whose block is still running, in start order, each
    /// with its block's machine (R3.7).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) started_scopes: Vec<StartedScope>,
    /// The local activity calls not resolved yet, by operation (R6.7): what a worker needs to
    /// run one again after a restart, since no task record holds it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) local_activities: BTreeMap<OpId, LocalActivityRun>,
    /// The execution timeout given at start (R5.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) execution_timeout: Option<ExecutionTimeout>,
}

/// A workflow's execution timeout ([`StartOptions::execution_timeout`](crate::StartOptions),
/// R5.3): written into the instance at the start; the first step starts a timer for its
/// deadline, and when that fires the workflow gets a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionTimeout {
    /// The timeout given, in milliseconds.
    pub after_ms: u64,
    /// Its deadline: the workflow's start plus `after_ms`, in ms since the Unix epoch.
    pub deadline_ms: u64,
    /// The timer the first step started for the deadline; absent before the first step.
    /// It is not in the operation table: no scope owns it, so no cancel of a scope stops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<OpId>,
}

/// A scope started with `.start()` whose block has not ended: the block's machine
/// (type-erased; the generated code knows each site's machine type) and the operation its
/// handle awaits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartedScope {
    /// Which `.start()` of the workflow's source.
    pub site: u32,
    /// The operation the handle awaits (`OpKind::Scope`).
    pub op: OpId,
    /// The started scope.
    pub scope: ScopeId,
    /// The block's machine.
    pub state: serde_json::Value,
}

/// A local activity call that has not resolved: its input and options, and how far its
/// attempts got as far as the workflow's steps know (R6.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalActivityRun {
    /// Its input, as JSON.
    pub input: serde_json::Value,
    /// Its options.
    pub options: LocalActivityOptions,
    /// The attempt a worker starts with: 1, or the attempt after a back-off committed with a
    /// step. Attempts that failed in the worker and were retried there are not counted here
    /// until the call ends (a restart runs from this attempt again).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// The latest failures of earlier attempts, oldest first, at most
    /// [`LocalActivityRun::KEPT_FAILURES`] of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<ActivityFailure>,
    /// Set while the call waits out a back-off longer than
    /// [`LOCAL_RETRY_THRESHOLD`](crate::LOCAL_RETRY_THRESHOLD) on a durable timer: when
    /// `attempt` starts, in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<u64>,
}

fn first_attempt() -> u32 {
    1
}

impl LocalActivityRun {
    /// How many failures of earlier attempts a call keeps (the latest ones), so that a call
    /// retried without end does not grow its workflow's snapshot without end.
    pub const KEPT_FAILURES: usize = 10;

    /// Appends failures of attempts that were retried, keeping the latest
    /// [`KEPT_FAILURES`](Self::KEPT_FAILURES).
    pub fn keep_failures(failures: &mut Vec<ActivityFailure>, more: Vec<ActivityFailure>) {
        failures.extend(more);
        let excess = failures.len().saturating_sub(Self::KEPT_FAILURES);
        failures.drain(..excess);
    }
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
                handler: None,
            }],
            ops: BTreeMap::new(),
            cancel_reason: None,
            unhandled_cancel: None,
            children: BTreeMap::new(),
            compensables: Vec::new(),
            closing: None,
            explicit: Vec::new(),
            handler_failures: Vec::new(),
            started_scopes: Vec::new(),
            local_activities: BTreeMap::new(),
            execution_timeout: None,
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
                    (OpStatus::CancelRequested, OpKind::LocalActivity { activity, .. }) => {
                        format!(
                            "local activity `{activity}` to end after it was told to stop \
                             (WaitCancellationCompleted)"
                        )
                    }
                    (_, OpKind::LocalActivity { activity, .. }) => {
                        match self.local_activities.get(op) {
                            Some(LocalActivityRun {
                                retry_at_ms: Some(at),
                                attempt,
                                ..
                            }) => format!(
                                "local activity `{activity}` to run attempt {attempt} at {} \
                                 (a back-off on a durable timer)",
                                crate::time::format_ms(*at)
                            ),
                            _ => format!(
                                "local activity `{activity}` to complete (it runs in the worker \
                                 stepping the workflow)"
                            ),
                        }
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
                    (_, OpKind::Scope { scope }) => {
                        format!("the block of started scope #{} to end", scope.0)
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

    /// The scopes started with `.start()` whose block is still running (R3.7).
    pub fn started_scopes(&self) -> &[StartedScope] {
        &self.started_scopes
    }

    /// The local activity calls not resolved yet, by operation (R6.7).
    pub fn local_activities(&self) -> &BTreeMap<OpId, LocalActivityRun> {
        &self.local_activities
    }

    /// The failures of the workflow's cleanup, in order, each as a sentence: compensation
    /// and confirmation handlers that failed (R12), and operations awaited in a cancellation
    /// handler that resolved with an error (R4.3).
    pub fn handler_failures(&self) -> &[String] {
        &self.handler_failures
    }

    /// The workflow's execution timeout, if it was started with one (R5.3).
    pub fn execution_timeout(&self) -> Option<&ExecutionTimeout> {
        self.execution_timeout.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::Instance;

    /// Snapshots written before the compact format (every field, `null`s and empties spelled
    /// out) and after it (empty and absent fields left out) decode to the same `Instance`; an
    /// empty cancel reason (R1.5: a missing reason is "") is a value, not "absent", and is kept.
    #[test]
    fn old_and_compact_instances_decode_alike_and_an_empty_reason_is_kept() {
        let old = serde_json::json!({
            "next_op": 3,
            "scopes": [
                {"parent": null, "kind": "Root", "cancel_requested": "", "signal": ""},
                {"parent": 0, "kind": "Cancellable", "cancel_requested": null, "signal": null}
            ],
            "ops": {},
            "cancel_reason": "",
            "unhandled_cancel": null,
            "children": {},
            "compensables": [],
            "closing": null,
            "explicit": []
        });
        let from_old: Instance = serde_json::from_value(old).unwrap();
        let compact = serde_json::to_value(&from_old).unwrap();
        assert_eq!(
            compact,
            serde_json::json!({
                "next_op": 3,
                "scopes": [
                    {"kind": "Root", "cancel_requested": "", "signal": ""},
                    {"parent": 0, "kind": "Cancellable"}
                ],
                "ops": {},
                "cancel_reason": ""
            })
        );
        let from_compact: Instance = serde_json::from_value(compact).unwrap();
        assert_eq!(from_compact, from_old);
    }
}
