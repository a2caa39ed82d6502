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
//!
//! The module is cut by concern:
//! - `instance`: the stored runtime state and its read accessors;
//! - `events`: the events a step consumes and the commands it emits;
//! - `scopes`: opening, closing and cancelling scopes, and the scope-tree walk (R3);
//! - `operations`: creating operations, races and joins, and taking results;
//! - `local`: local activities (R6.7): starting one, its cancel action, its end and back-off;
//! - `cancel`: the cancel action of each kind of operation and the close of a workflow;
//! - `apply`: applying an event to the operation that awaits it;
//! - `execution_timeout`: the workflow's execution timeout (R5.3);
//! - `handlers`: compensation and confirmation handlers (R12), and the failures of cleanup
//!   (R4.3, R12);
//! - `started`: scopes started with `.start()`, whose blocks run beside the code (R3.7);
//! - `validate`: checking a decoded runtime state before a step trusts it.
//!
//! This file holds the [`StepContext`] itself: its construction, its clock and its output.

use crate::history::EventKind;
use std::cell::RefCell;

mod apply;
mod cancel;
mod events;
mod execution_timeout;
mod handlers;
mod instance;
mod local;
mod operations;
mod scopes;
mod started;
mod validate;

pub use events::{ChildOutcome, Command, Event};
pub use instance::{
    ExecutionTimeout, Instance, LocalActivityRun, OpId, OpKind, OpRecord, OpStatus,
    PendingOperation, RunningChild, ScopeId, ScopeKind, ScopeRecord, StartedScope,
};
pub use validate::{InvalidInstance, MAX_OP_ID};

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
    /// Counts what can let a suspended machine go on (an operation created, resolved or taken,
    /// a scope cancelled): the driver of started scopes runs the machines again until it
    /// stops changing (see `started`).
    progress: u64,
    /// The workflow type and the state the step resumes from, once the machine says so.
    resumed: Option<(&'static str, &'static str)>,
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
                progress: 0,
                resumed: None,
            }),
        }
    }

    /// Sets what an unhandled workflow error does in this step (R13).
    pub fn with_unhandled_errors(self, action: crate::UnhandledErrorAction) -> Self {
        self.state.borrow_mut().unhandled = action;
        self
    }

    /// The id of the workflow this step belongs to.
    pub fn workflow_id(&self) -> &str {
        &self.workflow_id
    }

    /// Engine time of this step, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.state.borrow().now_ms
    }

    /// The machine of workflow type `workflow` resumes from state `state` (the place a
    /// failure of its cleanup is reported at, R4.3).
    pub(crate) fn resuming(&self, workflow: &'static str, state: &'static str) {
        self.state.borrow_mut().resumed = Some((workflow, state));
    }

    pub(crate) fn record(&self, event: EventKind) {
        self.state.borrow_mut().history.push(event);
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
}
