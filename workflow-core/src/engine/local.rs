//! Local activities on the engine side ([R6.7](crate::semantics#r6-activities)).
//!
//! A local activity runs in the worker that holds its workflow, beside the stepper, through
//! the same runner as an activity task (`runner.rs`) but without a task record: nothing is
//! written when it starts, when an attempt fails and is retried, or when it heartbeats. Its
//! end is delivered in memory ([`Event::LocalActivityEnded`](crate::Event::LocalActivityEnded))
//! and committed with the step that applies it, like a fired timer.
//!
//! The stepper is never blocked by a running local activity. A cancel request, a fired
//! `with_timeout` deadline or a `ctx.cancel_scope()` reaches the workflow as any event does
//! (the store's inbox, with this engine's arrival mark or the store's change feed for a
//! request written by another process; a timer in memory) and is applied by the next step,
//! which gives the call its cancel action; the `CancelLocalActivity` command it emits reaches
//! the runner through its in-memory control once the step is committed, and the running
//! attempt hears it at once ([`ActivityContext::cancelled`](crate::ActivityContext::cancelled)).
//!
//! What is not committed is not known: a worker that stops (a crash, or a graceful shutdown
//! whose grace ran out) before the step that applies a local activity's end loses that end,
//! and the worker that claims the workflow next runs the call again from the instance's
//! record ([`LocalActivityRun`]), at the attempt the steps last recorded. Local activities
//! run at least once.

use super::runner::ActivityJob;
use super::EngineInner;
use crate::{
    ActivityFailure, Instance, LocalActivityOptions, LocalActivityRun, OpId, OpKind, OpStatus,
};
use std::sync::Arc;

/// What the runner of a local activity carries besides the job itself.
pub(crate) struct LocalRun {
    /// The failures of earlier attempts, carried to the call's end (at most
    /// [`LocalActivityRun::KEPT_FAILURES`]).
    pub(crate) failures: Vec<ActivityFailure>,
}

/// One local activity to run: a `RunLocalActivity` command, or a call found unresolved when
/// the workflow was claimed.
pub(crate) struct LocalCall {
    pub(crate) op: OpId,
    pub(crate) activity: String,
    pub(crate) input: serde_json::Value,
    pub(crate) options: LocalActivityOptions,
    pub(crate) attempt: u32,
    pub(crate) failures: Vec<ActivityFailure>,
    /// Told to stop before this runner was created (`WaitCancellationCompleted`): no attempt
    /// starts, and the call ends as cancelled.
    pub(crate) stopped: bool,
}

impl EngineInner {
    /// Runs a local activity of workflow `id` in this worker.
    pub(crate) fn run_local_activity(self: &Arc<Self>, id: &str, call: LocalCall) {
        self.start_activity(ActivityJob {
            workflow_id: id.to_string(),
            op: call.op,
            activity: call.activity,
            input: call.input,
            options: call.options.as_activity_options(),
            first_attempt: call.attempt.max(1),
            scheduled_at_ms: self.clock.now_ms(),
            previous_details: None,
            cancel: call.stopped.then_some(true),
            fence: None,
            local: Some(LocalRun {
                failures: call.failures,
            }),
        });
    }

    /// At a claim, runs again the local activities of `instance` whose end was never
    /// committed (at least once): a running one from the attempt last recorded; one told to
    /// stop under `WaitCancellationCompleted` ends as cancelled without running. One waiting
    /// out a back-off is left to its durable timer, re-armed with the others.
    pub(crate) fn resume_local_activities(self: &Arc<Self>, id: &str, instance: &Instance) {
        for (op, run) in instance.local_activities() {
            if run.retry_at_ms.is_some() {
                continue;
            }
            let Some(rec) = instance.operations().get(op) else {
                continue;
            };
            let OpKind::LocalActivity { activity, .. } = &rec.kind else {
                continue;
            };
            let LocalActivityRun {
                input,
                options,
                attempt,
                failures,
                ..
            } = run.clone();
            tracing::info!(workflow = id, %op, %activity, attempt, "running a local activity again: its end was not committed");
            self.run_local_activity(
                id,
                LocalCall {
                    op: *op,
                    activity: activity.clone(),
                    input,
                    options,
                    attempt,
                    failures,
                    stopped: rec.status == OpStatus::CancelRequested,
                },
            );
        }
    }
}
