//! Applying events: a cancel request (once, R1.4), an activity's result (a late one absorbed,
//! R6.3), a fired timer (a `with_timeout` deadline cancels its scope, R5.1; the execution
//! timeout's is a cancel request, R5.3), a child's close
//! or its record of our cancel request (R7), and the answer to a cancel sent to another
//! workflow. Each resolves the operation that awaits it and records what happened.

use super::events::{ChildOutcome, Event};
use super::instance::{OpId, OpKind, OpRecord, OpStatus, ScopeId};
use super::{StepContext, StepState};
use crate::history::EventKind;
use crate::{ActivityFailure, ChildFailure, ChildWorkflowCancellationType, WorkflowError};

impl StepContext {
    /// Applies one external event before the machine runs.
    pub fn apply(&self, event: Event) {
        let mut st = self.state.borrow_mut();
        match event {
            Event::CancelRequested { reason } => {
                let execution_timer = st.execution_timer();
                st.request_cancel(reason);
                if let Some(op) = execution_timer {
                    st.stop_execution_timer(op);
                }
            }
            Event::ActivityCompleted { op, result } => {
                st.resolve_activity(op, Ok(result));
            }
            Event::ActivityFailed { op, failure } => {
                st.resolve_activity(op, Err(failure));
            }
            Event::LocalActivityEnded {
                op,
                result,
                attempts,
                failures,
            } => st.local_ended(op, result, attempts, failures),
            Event::LocalActivityBackoff {
                op,
                attempt,
                retry_at_ms,
                failures,
            } => st.local_backoff(op, attempt, retry_at_ms, failures),
            Event::ChildClosed { op, outcome } => st.child_closed(op, outcome),
            Event::ChildCancelRecorded { op } => st.child_cancel_recorded(op),
            Event::ExternalCancelDone { op, result } => st.external_cancel_done(op, result),
            Event::TimerFired { op } => {
                if st.local_retry_due(op) {
                    return; // the back-off of a local activity
                }
                if st.execution_timeout_fired(op) {
                    return;
                }
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
}

impl StepState {
    /// Applies a cancel request of the workflow (R1): the first one records its reason and
    /// cancels the root scope; a second one changes nothing (R1.4).
    pub(super) fn request_cancel(&mut self, reason: String) {
        if self.instance.cancel_reason.is_some() {
            return;
        }
        self.instance.cancel_reason = Some(reason.clone());
        self.history.push(EventKind::CancelRequested {
            reason: reason.clone(),
        });
        self.cancel_scope(ScopeId::ROOT, &reason);
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
}

#[cfg(test)]
mod tests {
    //! The pure core needs no runtime: a step is a function of the instance and the events.
    use crate::history::EventKind;
    use crate::step::events::Event;
    use crate::step::instance::{Instance, ScopeId};
    use crate::step::StepContext;
    use crate::{ActivityOptions, WorkflowError};

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
}
