//! The pure core of a workflow step: the runtime state stored beside the machine (scopes and
//! operations), the events a step consumes, the commands it emits, and the [`StepContext`]
//! through which generated code starts and polls operations.
//!
//! Nothing here does I/O or reads a clock: the engine passes the time in, feeds events, calls
//! the machine's `resume`, and takes the commands and history out. The same inputs always give
//! the same outputs, which is what lets a step be committed atomically and retried after a
//! crash.
//!
//! Cancellation (CANCELLATION.md R1.3, R6, R8, R9) is decided here: when a cancel request is
//! applied, every pending operation of the cancelled scopes gets its cancel action in creation
//! order, in the same step.

use crate::history::EventKind;
use crate::{ActivityCancellationType, ActivityFailure, ActivityOptions, WorkflowError};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Identifies one operation (activity call, timer, cancellation signal) of one workflow.
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
    pub parent: Option<ScopeId>,
    /// What kind of scope.
    pub kind: ScopeKind,
    /// Set once this scope is cancelled: its pending operations got their cancel actions and
    /// new ones fail at once (R9). The value is the reason.
    pub cancel_requested: Option<String>,
    /// Set once the scope's cancellation signal fired (`ctx.cancelled()`,
    /// `ctx.is_cancel_requested()`, R1.6): with the cancel, or for a non-cancellable scope
    /// when its parent is cancelled (R3.3).
    #[serde(default)]
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
    /// `ctx.race([..])`: resolves with the first of these operations to resolve. It belongs to
    /// the scope that awaits it; the raced operations keep their own scopes (R10).
    Race {
        /// The raced operations, in the order given.
        ops: Vec<OpId>,
    },
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpKind::Activity { activity, .. } => write!(f, "activity `{activity}`"),
            OpKind::Timer { duration_ms, .. } => write!(f, "timer ({duration_ms} ms)"),
            OpKind::CancelSignal => f.write_str("cancellation signal"),
            OpKind::Race { ops } => {
                let ops: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
                write!(f, "race of {}", ops.join(", "))
            }
        }
    }
}

/// Where an operation stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OpStatus {
    /// Started, no result yet.
    Pending,
    /// A cancel was sent; the caller waits for the activity to finish
    /// (`WaitCancellationCompleted`).
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
    cancel_reason: Option<String>,
    /// Set when an unhandled error cancelled the workflow (`UnhandledErrorAction::Cancel`).
    #[serde(default)]
    unhandled_cancel: Option<String>,
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
                    (_, OpKind::Race { ops }) => {
                        let ops: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
                        format!("the first of {} to finish", ops.join(", "))
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
    /// (unless abandoned) and pending timers are stopped.
    pub fn close_pending(&self) {
        let mut st = self.state.borrow_mut();
        let pending: Vec<(OpId, OpRecord)> = std::mem::take(&mut st.instance.ops)
            .into_iter()
            .filter(|(_, rec)| !matches!(rec.status, OpStatus::Resolved(_)))
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
                OpKind::CancelSignal | OpKind::Race { .. } => {}
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
        let signal = cancel_requested.clone().or(parent_signal);
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
        let race = st.new_op(scope, OpKind::Race { ops });
        if st.scope_is_cancelled(scope) {
            let reason = st.instance.scopes[scope.0 as usize]
                .cancel_requested
                .clone()
                .unwrap_or_default();
            st.resolve_now(race, Err(WorkflowError::Cancelled { reason }));
        }
        race
    }

    pub(crate) fn take(&self, op: OpId) -> Option<Result<serde_json::Value, WorkflowError>> {
        let mut st = self.state.borrow_mut();
        st.settle_race(op);
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
        let value = serde_json::json!({ "index": index, "result": result });
        self.history.push(EventKind::RaceWon {
            op: race,
            winner: op,
        });
        self.resolve_now(race, Ok(value));
    }

    fn new_op(&mut self, scope: ScopeId, kind: OpKind) -> OpId {
        let op = OpId(self.instance.next_op);
        self.instance.next_op += 1;
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
        let mut stack = vec![scope];
        while let Some(s) = stack.pop() {
            let Some(slot) = cancelled.get_mut(s.0 as usize) else {
                continue;
            };
            *slot = true;
            for (i, child) in self.instance.scopes.iter().enumerate() {
                if child.parent != Some(s) {
                    continue;
                }
                match child.kind {
                    ScopeKind::NonCancellable => signalled[i] = true,
                    ScopeKind::Cancellable => stack.push(ScopeId(i as u32)),
                    ScopeKind::Root | ScopeKind::Disconnected => {}
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

    fn cancel_op(&mut self, op: OpId, reason: &str) {
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
            OpKind::Race { .. } => {
                // Only the awaiting is cancelled: the raced operations belong to their own
                // scopes (R10).
                rec.status = OpStatus::Resolved(cancelled);
                self.history.push(EventKind::OperationCancelled {
                    op,
                    what: "race".to_string(),
                });
            }
        }
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

    #[test]
    fn an_unknown_operation_is_an_error_not_a_panic() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        assert!(matches!(
            cx.take(OpId(99)),
            Some(Err(WorkflowError::Decode { .. }))
        ));
    }
}
