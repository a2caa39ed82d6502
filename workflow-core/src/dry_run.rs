//! One step of a stored snapshot, outside any engine or store: what workflow code does with
//! a stored state and a list of events, exactly as a worker would run it, but with nothing
//! committed and nothing dispatched.
//!
//! Useful to check what a deploy does to parked state (take a snapshot from `wf describe
//! --json` or the store, step it with the new code) and to test that stored data is handled
//! safely: the engine's own checks run here (a snapshot that does not decode, or whose
//! runtime state is inconsistent, is a [`WorkflowFault::CorruptSnapshot`]; a panic of
//! workflow code is a [`WorkflowFault::Panicked`]). The project's snapshot fuzzing runs on
//! this function.
//!
//! ```
//! use workflow_core::prelude::*;
//! use workflow_core::dry_run::{dry_run_step, start_snapshot};
//! use workflow_core::{Command, Event};
//!
//! #[workflow]
//! async fn nap(ctx: WorkflowContext, secs: u64) -> Result<u64, WorkflowError> {
//!     ctx.sleep(Duration::from_secs(secs)).await?;
//!     Ok(secs)
//! }
//!
//! let start = start_snapshot(nap, 60).unwrap();
//! let parked = dry_run_step(nap, &start, vec![], 0).unwrap();
//! assert_eq!(parked.state, "Sleep");
//! let Command::StartTimer { op, .. } = parked.commands[0] else { panic!() };
//! let woke = dry_run_step(nap, &parked.snapshot, vec![Event::TimerFired { op }], 60_000).unwrap();
//! assert!(woke.close.is_some());
//! ```

use crate::engine::{decode_machine, encode_snapshot, panic_message, run_machine};
use crate::history::EventKind;
use crate::step::{Command, Event, ExecutionTimeout, Instance};
use crate::store::WorkflowClose;
use crate::workflow::{Registered, Workflow};
use crate::{Snapshot, StartOptions, UnhandledErrorAction, WorkflowFault};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What one step did.
#[derive(Debug)]
#[non_exhaustive]
pub struct DryRun {
    /// The machine's state after the step.
    pub state: &'static str,
    /// The snapshot a worker would commit.
    pub snapshot: Snapshot,
    /// What a worker would carry out after the commit, in order.
    pub commands: Vec<Command>,
    /// The history entries the step would append.
    pub history: Vec<EventKind>,
    /// Set when the workflow closes with this step.
    pub close: Option<WorkflowClose>,
}

/// The snapshot of a workflow `W` started with `input`, before its first step.
pub fn start_snapshot<W: Workflow>(
    workflow: W,
    input: W::Input,
) -> Result<Snapshot, WorkflowFault> {
    start_snapshot_with(workflow, input, &StartOptions::default(), 0)
}

/// The snapshot of a workflow `W` started with `input` and `options` at `at_ms` (ms since
/// the Unix epoch), before its first step: with an execution timeout, its deadline counts
/// from `at_ms` ([R5.3](crate::semantics#r5-timeouts)). An option out of range is a
/// [`WorkflowFault::Engine`] that says so.
pub fn start_snapshot_with<W: Workflow>(
    workflow: W,
    input: W::Input,
    options: &StartOptions,
    at_ms: u64,
) -> Result<Snapshot, WorkflowFault> {
    let _ = workflow;
    let state = Snapshot::of(&W::start(input)).map_err(|e| WorkflowFault::Engine {
        message: format!("the start state of `{}` does not serialize: {e}", W::NAME),
    })?;
    let timeout = options
        .execution_timeout
        .map(|after| ExecutionTimeout::starting(after, at_ms))
        .transpose()
        .map_err(|message| WorkflowFault::Engine {
            message: format!("invalid execution timeout of `{}`: {message}", W::NAME),
        })?;
    encode_snapshot(&state, &Instance::starting(timeout))
        .map_err(|message| WorkflowFault::Engine { message })
}

/// Steps the stored `snapshot` of workflow `W` with `events`, at `now_ms` (ms since the Unix
/// epoch), as a worker would, with the default [`UnhandledErrorAction`].
pub fn dry_run_step<W: Workflow>(
    workflow: W,
    snapshot: &Snapshot,
    events: Vec<Event>,
    now_ms: u64,
) -> Result<DryRun, WorkflowFault> {
    let registered = Registered(workflow);
    let (machine, instance) = decode_machine(&registered, "(dry run)", snapshot)?;
    let state = machine.state_name();
    let ran = catch_unwind(AssertUnwindSafe(|| {
        run_machine(
            "dry-run",
            machine,
            instance,
            events,
            now_ms,
            UnhandledErrorAction::default(),
        )
    }));
    match ran {
        Ok(Ok(ran)) => Ok(DryRun {
            state: ran.state_name,
            snapshot: ran.snapshot,
            commands: ran.commands,
            history: ran.history,
            close: ran.close,
        }),
        Ok(Err(message)) => Err(WorkflowFault::Engine { message }),
        Err(payload) => Err(WorkflowFault::Panicked {
            state: state.to_string(),
            message: panic_message(&*payload),
        }),
    }
}
