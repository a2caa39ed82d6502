//! Local activities (R6.7): starting one (no task record: its input and progress stay in the
//! instance, [`LocalActivityRun`]), the cancel action of each cancellation type (no remote
//! request: the worker that runs it is told in memory), applying its end or a back-off long
//! enough to be waited out on a durable timer, and starting the next attempt when that timer
//! fires.

use super::events::Command;
use super::instance::{LocalActivityRun, OpId, OpKind, OpRecord, OpStatus, ScopeId};
use super::{StepContext, StepState};
use crate::history::EventKind;
use crate::{ActivityCancellationType, ActivityFailure, LocalActivityOptions, WorkflowError};

impl StepContext {
    /// Starts a local activity: it runs in this worker once the step is committed. An input
    /// that could not be made resolves the call at once with a decode error; in a cancelled
    /// scope the call fails at once and nothing runs (R9).
    pub(crate) fn schedule_local_activity(
        &self,
        scope: ScopeId,
        activity: &str,
        input: Result<serde_json::Value, String>,
        options: LocalActivityOptions,
    ) -> OpId {
        let mut st = self.state.borrow_mut();
        let kind = OpKind::LocalActivity {
            activity: activity.to_string(),
            cancellation: options.cancellation,
        };
        let op = st.new_op(scope, kind);
        let Some(input) = st.input_or_fail(op, input, || format!("local activity `{activity}`"))
        else {
            return op;
        };
        if st.reject_if_cancelled(op, scope) {
            return op;
        }
        st.instance.local_activities.insert(
            op,
            LocalActivityRun {
                input: input.clone(),
                options: options.clone(),
                attempt: 1,
                failures: Vec::new(),
                retry_at_ms: None,
            },
        );
        st.history.push(EventKind::LocalActivityStarted {
            op,
            activity: activity.to_string(),
            cancellation: options.cancellation,
        });
        st.commands.push(Command::RunLocalActivity {
            op,
            activity: activity.to_string(),
            input,
            options,
            attempt: 1,
            failures: Vec::new(),
        });
        op
    }
}

impl StepState {
    /// The cancel action of a local activity (R6.7). Nothing is sent anywhere: the worker
    /// running it is told in memory. One that has not started (its start is still among this
    /// step's commands) or waits out a back-off on a durable timer never runs again, and its
    /// call resolves at once whatever its type; a running one acts as its type says.
    pub(super) fn cancel_local(
        &mut self,
        op: OpId,
        activity: String,
        cancellation: ActivityCancellationType,
        reason: &str,
    ) {
        let cancelled = || {
            Err(WorkflowError::Cancelled {
                reason: reason.to_string(),
            })
        };
        let attempt = self
            .instance
            .local_activities
            .get(&op)
            .map_or(1, |run| run.attempt);
        let unstarted =
            self.withdraw(|c| matches!(c, Command::RunLocalActivity { op: o, .. } if *o == op));
        if unstarted {
            self.instance.local_activities.remove(&op);
            // The history says only what happened: it never started.
            self.history.retain(
                |e| !matches!(e, EventKind::LocalActivityStarted { op: o, .. } if *o == op),
            );
            self.resolve_now(op, cancelled());
            let when = if attempt > 1 {
                format!("before attempt {attempt}: no further attempt runs")
            } else {
                "before it started: it never runs".to_string()
            };
            self.history.push(EventKind::OperationCancelled {
                op,
                what: format!("local activity `{activity}`, {when}"),
            });
            return;
        }
        let backing_off = self
            .instance
            .local_activities
            .get(&op)
            .is_some_and(|run| run.retry_at_ms.is_some());
        if backing_off {
            self.instance.local_activities.remove(&op);
            if !self.withdraw(|c| matches!(c, Command::StartTimer { op: o, .. } if *o == op)) {
                self.commands.push(Command::CancelTimer { op });
            }
            self.resolve_now(op, cancelled());
            self.history.push(EventKind::OperationCancelled {
                op,
                what: format!(
                    "local activity `{activity}`, waiting out a back-off before attempt \
                     {attempt}: no further attempt runs"
                ),
            });
            return;
        }
        let notify_running = cancellation != ActivityCancellationType::Abandon;
        self.commands.push(Command::CancelLocalActivity {
            op,
            notify_running,
            reason: reason.to_string(),
        });
        if cancellation == ActivityCancellationType::WaitCancellationCompleted {
            if let Some(rec) = self.instance.ops.get_mut(&op) {
                rec.status = OpStatus::CancelRequested;
            }
        } else {
            // Resolved now: a restart does not run it again, and its end is absorbed (R6.3).
            self.instance.local_activities.remove(&op);
            self.resolve_now(op, cancelled());
        }
        self.history.push(EventKind::LocalActivityCancelled {
            op,
            activity,
            cancellation,
        });
    }

    /// The workflow closes (R6.6, R6.7): a local activity that was to start with this step
    /// never starts (and the history does not say it did), one waiting out a back-off has its
    /// timer stopped, and one running is told by the engine as the workflow closes.
    pub(super) fn close_local_activities(&mut self) {
        let local = std::mem::take(&mut self.instance.local_activities);
        for (op, run) in local {
            if self.withdraw(|c| matches!(c, Command::RunLocalActivity { op: o, .. } if *o == op)) {
                self.history.retain(
                    |e| !matches!(e, EventKind::LocalActivityStarted { op: o, .. } if *o == op),
                );
            } else if run.retry_at_ms.is_some()
                && !self.withdraw(|c| matches!(c, Command::StartTimer { op: o, .. } if *o == op))
            {
                self.commands.push(Command::CancelTimer { op });
            }
        }
    }

    /// Removes this step's commands that `which` selects; whether there were any.
    fn withdraw(&mut self, which: impl Fn(&Command) -> bool) -> bool {
        let before = self.commands.len();
        self.commands.retain(|c| !which(c));
        self.commands.len() != before
    }

    /// The activity name of local activity `op` if its call still waits for it (pending, or
    /// told to stop under `WaitCancellationCompleted`); otherwise the end is absorbed (R6.3)
    /// and recorded as ignored.
    fn awaited_local(&mut self, op: OpId, arrived: &str) -> Option<String> {
        match self.instance.ops.get(&op) {
            Some(OpRecord {
                kind: OpKind::LocalActivity { activity, .. },
                status: OpStatus::Pending | OpStatus::CancelRequested,
                ..
            }) => Some(activity.clone()),
            Some(OpRecord {
                kind: OpKind::LocalActivity { activity, .. },
                ..
            }) => {
                let what = format!("local activity `{activity}` {arrived} after its call resolved");
                self.history.push(EventKind::ResultIgnored { op, what });
                None
            }
            _ => {
                let what = format!("a local activity {arrived} after its call resolved");
                self.history.push(EventKind::ResultIgnored { op, what });
                None
            }
        }
    }

    /// A local activity ended: its call resolves with its value or its failure, unless it
    /// resolved already (`TryCancel`, `Abandon`: the end is absorbed, R6.3).
    pub(super) fn local_ended(
        &mut self,
        op: OpId,
        result: Result<serde_json::Value, ActivityFailure>,
        attempts: u32,
        failures: Vec<ActivityFailure>,
    ) {
        let Some(activity) = self.awaited_local(op, "ended") else {
            return;
        };
        self.instance.local_activities.remove(&op);
        match result {
            Ok(value) => {
                self.resolve_now(op, Ok(value));
                self.history.push(EventKind::LocalActivityCompleted {
                    op,
                    activity,
                    attempts,
                    failures,
                });
            }
            Err(failure) => {
                self.resolve_now(
                    op,
                    Err(WorkflowError::Activity {
                        activity: activity.clone(),
                        failure: failure.clone(),
                    }),
                );
                self.history.push(EventKind::LocalActivityFailed {
                    op,
                    activity,
                    attempts,
                    failure,
                    failures,
                });
            }
        }
    }

    /// A local activity attempt failed and the next one is due after a back-off too long to
    /// wait out in the worker: it is committed with this step and waited out on a durable
    /// timer. A call told to stop meanwhile (`WaitCancellationCompleted`) runs no further
    /// attempt: it resolves with that failure (R6.4).
    pub(super) fn local_backoff(
        &mut self,
        op: OpId,
        attempt: u32,
        retry_at_ms: u64,
        mut failures: Vec<ActivityFailure>,
    ) {
        let Some(activity) = self.awaited_local(op, "failed an attempt") else {
            return;
        };
        let Some(failure) = failures.last().cloned() else {
            return; // a back-off follows a failure; without one there is nothing to record
        };
        if self.instance.ops.get(&op).map(|r| &r.status) == Some(&OpStatus::CancelRequested) {
            failures.pop();
            return self.local_ended(op, Err(failure), attempt.saturating_sub(1), failures);
        }
        let Some(run) = self.instance.local_activities.get_mut(&op) else {
            return;
        };
        run.attempt = attempt;
        run.failures = failures;
        run.retry_at_ms = Some(retry_at_ms);
        self.commands.push(Command::StartTimer {
            op,
            fire_at_ms: retry_at_ms,
        });
        self.history.push(EventKind::LocalActivityRetryScheduled {
            op,
            activity,
            attempt,
            retry_at_ms,
            failure,
        });
    }

    /// The durable back-off of local activity `op` is over: its next attempt runs in this
    /// worker once the step is committed. Returns whether `op` is a local activity (a fired
    /// timer of one that resolved meanwhile changes nothing).
    pub(super) fn local_retry_due(&mut self, op: OpId) -> bool {
        let Some(OpRecord {
            kind: OpKind::LocalActivity { activity, .. },
            status,
            ..
        }) = self.instance.ops.get(&op)
        else {
            return false;
        };
        let activity = activity.clone();
        if *status != OpStatus::Pending {
            return true;
        }
        let Some(run) = self.instance.local_activities.get_mut(&op) else {
            return true;
        };
        if run.retry_at_ms.take().is_none() {
            return true;
        }
        let command = Command::RunLocalActivity {
            op,
            activity,
            input: run.input.clone(),
            options: run.options.clone(),
            attempt: run.attempt,
            failures: run.failures.clone(),
        };
        self.commands.push(command);
        true
    }
}

#[cfg(test)]
mod tests {
    //! The pure core of local activities: a step is a function of the instance and events.
    use crate::error::IsCancellation;
    use crate::history::EventKind;
    use crate::step::events::{Command, Event};
    use crate::step::instance::{Instance, OpId, ScopeId};
    use crate::step::StepContext;
    use crate::{
        ActivityCancellationType, ActivityFailure, LocalActivityOptions, RetryPolicy, WorkflowError,
    };

    fn local(cx: &StepContext, name: &str, cancellation: ActivityCancellationType) -> OpId {
        cx.schedule_local_activity(
            ScopeId::ROOT,
            name,
            Ok(serde_json::json!(name)),
            LocalActivityOptions {
                cancellation,
                ..LocalActivityOptions::default()
            },
        )
    }

    fn boom(n: u32) -> ActivityFailure {
        ActivityFailure::Application {
            message: format!("boom {n}"),
            non_retryable: false,
        }
    }

    #[test]
    fn r6_7_a_local_activity_runs_without_a_task_and_its_end_resolves_the_call() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let op = local(&cx, "a", ActivityCancellationType::TryCancel);
        let out = cx.finish();
        assert!(matches!(
            &out.commands[..],
            [Command::RunLocalActivity { op: o, activity, attempt: 1, .. }] if *o == op && activity == "a"
        ));
        assert!(matches!(
            &out.history[..],
            [EventKind::LocalActivityStarted { op: o, .. }] if *o == op
        ));
        let pending = out.instance.pending();
        assert_eq!(pending.len(), 1);
        assert!(
            pending[0]
                .waiting_for
                .contains("local activity `a` to complete"),
            "{pending:?}"
        );
        // A restart finds what it needs to run it again in the instance.
        assert_eq!(
            out.instance.local_activities()[&op].input,
            serde_json::json!("a")
        );

        let cx = StepContext::new("wf", out.instance, 1);
        cx.apply(Event::LocalActivityEnded {
            op,
            result: Ok(serde_json::json!(5)),
            attempts: 3,
            failures: vec![boom(1), boom(2)],
        });
        assert_eq!(cx.take(op), Some(Ok(serde_json::json!(5))));
        let out = cx.finish();
        assert!(out.commands.is_empty());
        assert!(out.instance.local_activities().is_empty());
        let line = out.history[0].to_string();
        assert_eq!(
            line,
            "op#1 local activity `a` completed at attempt 3 (earlier attempts failed: boom 1; \
             boom 2)"
        );
    }

    #[test]
    fn r6_7_cancel_actions_of_the_three_cancellation_types() {
        use ActivityCancellationType::*;
        let cx = StepContext::new("wf", Instance::default(), 0);
        let try_cancel = local(&cx, "t", TryCancel);
        let wait = local(&cx, "w", WaitCancellationCompleted);
        let abandon = local(&cx, "a", Abandon);
        let started = cx.finish();

        let cx = StepContext::new("wf", started.instance, 1);
        cx.apply(Event::CancelRequested {
            reason: "stop".into(),
        });
        let cancelled = || Some(Err(WorkflowError::cancelled("stop")));
        assert_eq!(
            cx.take(try_cancel),
            cancelled(),
            "TryCancel resolves at once"
        );
        assert_eq!(
            cx.take(wait),
            None,
            "WaitCancellationCompleted waits for the end"
        );
        assert_eq!(cx.take(abandon), cancelled(), "Abandon resolves at once");
        let out = cx.finish();
        assert_eq!(
            out.commands,
            [
                Command::CancelLocalActivity {
                    op: try_cancel,
                    notify_running: true,
                    reason: "stop".into()
                },
                Command::CancelLocalActivity {
                    op: wait,
                    notify_running: true,
                    reason: "stop".into()
                },
                Command::CancelLocalActivity {
                    op: abandon,
                    notify_running: false,
                    reason: "stop".into()
                },
            ],
            "no remote request: the worker running them is told in memory, Abandon's untold"
        );
        // Only the call still waiting keeps what a restart needs to run it.
        assert_eq!(
            out.instance.local_activities().keys().collect::<Vec<_>>(),
            [&wait]
        );
        let pending = out.instance.pending();
        assert!(
            pending[0].waiting_for.contains("told to stop"),
            "{pending:?}"
        );

        // The waiting call gets the function's own outcome; the others' ends are absorbed.
        let cx = StepContext::new("wf", out.instance, 2);
        cx.apply(Event::LocalActivityEnded {
            op: wait,
            result: Err(ActivityFailure::Cancelled),
            attempts: 1,
            failures: Vec::new(),
        });
        cx.apply(Event::LocalActivityEnded {
            op: try_cancel,
            result: Ok(serde_json::json!(1)),
            attempts: 1,
            failures: Vec::new(),
        });
        let got = cx.take(wait).unwrap().unwrap_err();
        assert!(got.is_cancellation(), "{got:?}");
        let out = cx.finish();
        assert!(matches!(
            &out.history[..],
            [
                EventKind::LocalActivityFailed { .. },
                EventKind::ResultIgnored { .. }
            ]
        ));
    }

    #[test]
    fn r6_7_a_local_activity_cancelled_in_the_step_that_started_it_never_runs() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let op = local(
            &cx,
            "a",
            ActivityCancellationType::WaitCancellationCompleted,
        );
        cx.cancel_scope(ScopeId::ROOT, "stop");
        assert_eq!(cx.take(op), Some(Err(WorkflowError::cancelled("stop"))));
        let out = cx.finish();
        assert!(out.commands.is_empty(), "{:?}", out.commands);
        assert!(out.instance.local_activities().is_empty());
        assert!(
            !out.history
                .iter()
                .any(|e| matches!(e, EventKind::LocalActivityStarted { .. })),
            "it never started: {:?}",
            out.history
        );
    }

    #[test]
    fn r6_7_a_local_activity_started_by_the_step_that_closes_the_workflow_never_starts() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let running = local(&cx, "running", ActivityCancellationType::TryCancel);
        let backing_off = local(&cx, "backing-off", ActivityCancellationType::TryCancel);
        let cx = StepContext::new("wf", cx.finish().instance, 1);
        cx.apply(Event::LocalActivityBackoff {
            op: backing_off,
            attempt: 2,
            retry_at_ms: 90_000,
            failures: vec![boom(1)],
        });
        let cx = StepContext::new("wf", cx.finish().instance, 2);
        let last = local(&cx, "last", ActivityCancellationType::TryCancel);
        cx.close_pending();
        let out = cx.finish();
        assert_eq!(
            out.commands,
            [Command::CancelTimer { op: backing_off }],
            "`{last}` never starts; `{running}` is told by the engine as the workflow closes"
        );
        assert!(out.history.is_empty(), "{:?}", out.history);
        assert!(out.instance.local_activities().is_empty());
        out.instance.validate().unwrap();
    }

    #[test]
    fn r9_a_local_activity_in_a_cancelled_scope_fails_at_once_and_never_runs() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        cx.cancel_scope(ScopeId::ROOT, "stop");
        let op = local(&cx, "a", ActivityCancellationType::TryCancel);
        assert_eq!(cx.take(op), Some(Err(WorkflowError::cancelled("stop"))));
        let out = cx.finish();
        assert!(out.commands.is_empty());
        assert!(out.instance.local_activities().is_empty());
        assert!(matches!(
            out.history.last(),
            Some(EventKind::OperationSkipped { what, .. }) if what == "local activity `a`"
        ));
    }

    #[test]
    fn r6_7_a_long_back_off_is_committed_and_waited_out_on_a_durable_timer() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let op = cx.schedule_local_activity(
            ScopeId::ROOT,
            "a",
            Ok(serde_json::Value::Null),
            LocalActivityOptions {
                retry: RetryPolicy::default()
                    .with_initial_interval(std::time::Duration::from_secs(600)),
                ..LocalActivityOptions::default()
            },
        );
        let cx = StepContext::new("wf", cx.finish().instance, 1_000);
        cx.apply(Event::LocalActivityBackoff {
            op,
            attempt: 2,
            retry_at_ms: 601_000,
            failures: vec![boom(1)],
        });
        assert_eq!(cx.take(op), None);
        let out = cx.finish();
        assert_eq!(
            out.commands,
            [Command::StartTimer {
                op,
                fire_at_ms: 601_000
            }]
        );
        let run = &out.instance.local_activities()[&op];
        assert_eq!((run.attempt, run.retry_at_ms), (2, Some(601_000)));
        assert!(out.history[0].to_string().contains("attempt 2 at"));
        assert!(out.instance.pending()[0]
            .waiting_for
            .contains("to run attempt 2"));

        // The timer fires: attempt 2 runs, with the failures so far carried to the end.
        let cx = StepContext::new("wf", out.instance, 601_000);
        cx.apply(Event::TimerFired { op });
        let out = cx.finish();
        assert!(matches!(
            &out.commands[..],
            [Command::RunLocalActivity { attempt: 2, failures, .. }] if failures == &[boom(1)]
        ));
        assert_eq!(out.instance.local_activities()[&op].retry_at_ms, None);
    }

    #[test]
    fn r6_7_a_cancel_during_a_durable_back_off_resolves_at_once_whatever_the_type() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let op = local(
            &cx,
            "a",
            ActivityCancellationType::WaitCancellationCompleted,
        );
        let cx = StepContext::new("wf", cx.finish().instance, 1);
        cx.apply(Event::LocalActivityBackoff {
            op,
            attempt: 2,
            retry_at_ms: 90_000,
            failures: vec![boom(1)],
        });
        let cx = StepContext::new("wf", cx.finish().instance, 2);
        cx.apply(Event::CancelRequested {
            reason: "stop".into(),
        });
        assert_eq!(cx.take(op), Some(Err(WorkflowError::cancelled("stop"))));
        let out = cx.finish();
        assert_eq!(out.commands, [Command::CancelTimer { op }]);
        assert!(out.instance.local_activities().is_empty());
    }

    #[test]
    fn r6_4_a_back_off_reported_after_a_wait_cancel_ends_the_call_with_its_failure() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let op = local(
            &cx,
            "a",
            ActivityCancellationType::WaitCancellationCompleted,
        );
        let cx = StepContext::new("wf", cx.finish().instance, 1);
        cx.cancel_scope(ScopeId::ROOT, "stop");
        cx.apply(Event::LocalActivityBackoff {
            op,
            attempt: 2,
            retry_at_ms: 90_000,
            failures: vec![boom(1)],
        });
        assert_eq!(
            cx.take(op),
            Some(Err(WorkflowError::Activity {
                activity: "a".into(),
                failure: boom(1)
            }))
        );
        let out = cx.finish();
        assert!(
            !out.commands
                .iter()
                .any(|c| matches!(c, Command::StartTimer { .. })),
            "no further attempt: {:?}",
            out.commands
        );
    }
}
