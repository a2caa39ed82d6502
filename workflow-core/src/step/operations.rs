//! Operations: creating them (activities, timers, child workflows, cancel requests to other
//! workflows, cancellation signals, races and joins), refusing one created in a cancelled
//! scope (R9), and taking a resolved result out of the operation table, settling a race or a
//! join first.

use super::events::Command;
use super::instance::{OpId, OpKind, OpRecord, OpStatus, RunningChild, ScopeId};
use super::{StepContext, StepState};
use crate::history::EventKind;
use crate::{ActivityOptions, ChildWorkflowCancellationType, ParentClosePolicy, WorkflowError};
use std::time::Duration;

impl StepContext {
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
        let Some(input) = st.input_or_fail(op, input, || format!("activity `{activity}`")) else {
            return op;
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
        let Some(input) = st.input_or_fail(op, input, || format!("child workflow `{workflow}`"))
        else {
            return op;
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

    /// Takes the result of `op` if it has resolved. The operation leaves the table.
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
                    kind,
                    scope,
                }) => {
                    st.progress += 1;
                    if let Err(error) = &result {
                        st.note_awaited_error(scope, &kind, error);
                    }
                    Some(result)
                }
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
    /// The input of operation `op`, or `None` after resolving `op` at once with a decode
    /// error when the input could not be made (it did not serialize, or nests too deep).
    pub(super) fn input_or_fail(
        &mut self,
        op: OpId,
        input: Result<serde_json::Value, String>,
        of: impl FnOnce() -> String,
    ) -> Option<serde_json::Value> {
        match input {
            Ok(input) => Some(input),
            Err(message) => {
                let what = format!("the input of {}", of());
                self.resolve_now(op, Err(WorkflowError::Decode { what, message }));
                None
            }
        }
    }

    pub(super) fn new_op(&mut self, scope: ScopeId, kind: OpKind) -> OpId {
        self.progress += 1;
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

    pub(super) fn resolve_now(
        &mut self,
        op: OpId,
        result: Result<serde_json::Value, WorkflowError>,
    ) {
        if let Some(rec) = self.instance.ops.get_mut(&op) {
            self.progress += 1;
            rec.status = OpStatus::Resolved(result);
        }
    }

    /// An operation of a race or join awaited in scope `awaited_in` resolved with `error`:
    /// recorded if a cancellation handler awaited it, or started it (R4.3).
    fn note_raced_error(
        &mut self,
        awaited_in: ScopeId,
        scope: ScopeId,
        kind: &OpKind,
        error: &WorkflowError,
    ) {
        let in_handler = self.handler_of(awaited_in).is_some();
        self.note_awaited_error(if in_handler { awaited_in } else { scope }, kind, error);
    }

    /// R9: an operation created in an already-cancelled scope fails at once and is never
    /// dispatched.
    pub(super) fn reject_if_cancelled(&mut self, op: OpId, scope: ScopeId) -> bool {
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

    /// A pending race resolves with the first of its operations that has resolved (the
    /// earliest given, if several did in the same step); that operation is consumed.
    fn settle_race(&mut self, race: OpId) {
        let Some(OpRecord {
            kind: OpKind::Race { ops },
            status: OpStatus::Pending,
            scope: awaited_in,
        }) = self.instance.ops.get(&race)
        else {
            return;
        };
        let awaited_in = *awaited_in;
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
            kind,
            scope,
        }) = self.instance.ops.remove(&op)
        else {
            return;
        };
        if let Err(error) = &result {
            self.note_raced_error(awaited_in, scope, &kind, error);
        }
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
            scope: awaited_in,
        }) = self.instance.ops.get(&join)
        else {
            return;
        };
        let awaited_in = *awaited_in;
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
        let mut results: Vec<serde_json::Value> = Vec::with_capacity(ops.len());
        for op in &ops {
            if let Some(OpRecord {
                status: OpStatus::Resolved(result),
                kind,
                scope,
            }) = self.instance.ops.remove(op)
            {
                if let Err(error) = &result {
                    self.note_raced_error(awaited_in, scope, &kind, error);
                }
                results.push(serde_json::json!({ "op": op, "result": result }));
            }
        }
        self.resolve_now(join, Ok(serde_json::json!({ "results": results })));
    }
}

#[cfg(test)]
mod tests {
    //! The pure core needs no runtime: a step is a function of the instance and the events.
    use crate::step::events::Event;
    use crate::step::instance::{Instance, OpId, ScopeId};
    use crate::step::StepContext;
    use crate::{ActivityOptions, WorkflowError};
    use std::time::Duration;

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
