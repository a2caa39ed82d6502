//! Cancel actions: what a cancel does to each pending operation of a cancelled scope, in
//! creation order (R1.3) — activities by their cancellation type (R6), timers, signals,
//! cancel requests to other workflows, and children by theirs (R7, a child not yet started
//! never starts) — and what the workflow's close does to the operations and children it
//! leaves behind (the parent close policy, R7).

use super::events::Command;
use super::instance::{OpId, OpKind, OpRecord, OpStatus};
use super::{StepContext, StepState};
use crate::history::EventKind;
use crate::{
    ActivityCancellationType, ChildWorkflowCancellationType, ParentClosePolicy, WorkflowError,
};

impl StepContext {
    /// Closes the workflow's operations when it finishes: pending activities are cancelled
    /// (unless abandoned), pending timers (the execution timeout's too) are stopped, and each child still running gets its
    /// parent close policy (R7). A child whose start is still among this step's commands is
    /// simply never started.
    pub fn close_pending(&self) {
        let mut st = self.state.borrow_mut();
        st.drop_started_scopes();
        if let Some(op) = st.execution_timer() {
            st.commands.push(Command::CancelTimer { op });
        }
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
        st.close_local_activities();
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
                        reason: None,
                    })
                }
                OpKind::Timer { .. } => st.commands.push(Command::CancelTimer { op }),
                // Children were handled above; a cancel already sent elsewhere stays sent.
                OpKind::CancelSignal
                | OpKind::Race { .. }
                | OpKind::Join { .. }
                | OpKind::Scope { .. }
                | OpKind::Child { .. }
                | OpKind::CancelExternal { .. }
                | OpKind::LocalActivity { .. } => {}
            }
        }
    }
}

impl StepState {
    pub(super) fn cancel_op(&mut self, op: OpId, reason: &str) {
        match self.instance.ops.get(&op).map(|rec| rec.kind.clone()) {
            Some(OpKind::Child {
                workflow,
                id,
                cancellation,
                ..
            }) => return self.cancel_child(op, workflow, id, cancellation, reason),
            Some(OpKind::LocalActivity {
                activity,
                cancellation,
            }) => return self.cancel_local(op, activity, cancellation, reason),
            Some(OpKind::CancelExternal { id, .. }) => {
                // A request to another workflow stays sent, even when it leaves in this very
                // step (what the history already says): the call resolves now and the answer
                // is absorbed. Only its scope was cancelled, not the request.
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
                        reason: Some(reason.to_string()),
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
                        reason: Some(reason.to_string()),
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
                        reason: Some(reason.to_string()),
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
            OpKind::Child { .. } | OpKind::CancelExternal { .. } | OpKind::LocalActivity { .. } => {
            }
            OpKind::Race { .. } | OpKind::Join { .. } | OpKind::Scope { .. } => {
                // A race (or join) is not work of its own: it ends when one of the raced operations
                // does, and those belong to the scopes that started them (R10). So racing an
                // operation against the scope's `cancelled()` signal notices the cancel. The
                // handle of a started scope waits for its block, which the cancel reaches
                // through the scope tree (R3.7).
            }
        }
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
}

#[cfg(test)]
mod tests {
    //! The pure core needs no runtime: a step is a function of the instance and the events.
    use crate::history::EventKind;
    use crate::step::events::{ChildOutcome, Command, Event};
    use crate::step::instance::{Instance, OpId, ScopeId};
    use crate::step::StepContext;
    use crate::{
        ActivityCancellationType, ActivityOptions, ChildWorkflowCancellationType,
        ParentClosePolicy, WorkflowError,
    };
    use std::time::Duration;

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
                    notify_running: true,
                    reason: Some("stop".to_string()),
                },
                Command::CancelTimer { op: timer },
                Command::CancelActivity {
                    op: wait,
                    notify_running: true,
                    reason: Some("stop".to_string()),
                },
                Command::CancelActivity {
                    op: abandon,
                    notify_running: false,
                    reason: Some("stop".to_string()),
                },
            ]
        );
        assert!(matches!(out.history[0], EventKind::CancelRequested { .. }));
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
}
