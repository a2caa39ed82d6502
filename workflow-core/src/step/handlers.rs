//! Compensation and confirmation handlers (R12): recording a compensable block that
//! completed, queueing its handlers when the workflow closes (compensating after a failure or
//! cancel, confirming after success) or when it calls `ctx.compensate()` / `ctx.confirm()`,
//! and the queue the generated code runs them from, each in its own disconnected scope.
//!
//! And the failures of cleanup, kept on the workflow: a compensation or confirmation handler
//! that failed (R12), an operation awaited in a cancellation handler that resolved with an
//! error (R4.3).

use super::instance::{Closing, CompensableRecord, HandlerRun, OpKind, ScopeId};
use super::{StepContext, StepState};
use crate::history::EventKind;
use crate::WorkflowError;

impl StepContext {
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

    /// Records that a compensation or confirmation handler failed: in the history, and on
    /// the workflow itself, where `describe`, `list` and the outcome show it (R12).
    pub(crate) fn handler_failed(&self, message: String) {
        self.state.borrow_mut().cleanup_failed(message);
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
}

impl StepState {
    /// Records a failure of the workflow's cleanup: in the history, and on the workflow
    /// itself, where `describe`, `list` and the outcome show it (R4.3, R12).
    fn cleanup_failed(&mut self, message: String) {
        self.history.push(EventKind::CleanupFailed {
            message: message.clone(),
        });
        self.instance.handler_failures.push(message);
    }

    /// The name of the cancellation handler whose scope `scope` is, or lies beneath.
    pub(super) fn handler_of(&self, scope: ScopeId) -> Option<&str> {
        let mut at = Some(scope);
        // A validated tree has parents opened before their children; the bound ends the walk
        // whatever the data says.
        for _ in 0..self.instance.scopes.len() {
            let rec = self.instance.scopes.get(at?.0 as usize)?;
            if let Some(handler) = &rec.handler {
                return Some(handler);
            }
            at = rec.parent;
        }
        None
    }

    /// An operation of `kind`, in scope `scope`, was awaited and resolved with `error`: if
    /// that happened in a cancellation handler (its scope or one beneath it), the failure is
    /// recorded on the workflow (R4.3). A handler cannot fail, but what it awaits can, and
    /// the cleanup it stood for did not happen.
    pub(super) fn note_awaited_error(
        &mut self,
        scope: ScopeId,
        kind: &OpKind,
        error: &WorkflowError,
    ) {
        let Some(handler) = self.handler_of(scope).map(str::to_string) else {
            return;
        };
        let place = match self.resumed {
            Some((workflow, state)) => format!(" of workflow `{workflow}` (state `{state}`)"),
            None => String::new(),
        };
        // These errors name their operation themselves.
        let what = match error {
            WorkflowError::Activity { .. }
            | WorkflowError::Child { .. }
            | WorkflowError::ExternalCancel { .. } => error.to_string(),
            _ => format!("{kind}: {error}"),
        };
        let message = format!("cancellation handler `{handler}`{place}: {what}");
        self.cleanup_failed(message);
    }
}

#[cfg(test)]
mod tests {
    //! The pure core needs no runtime: a step is a function of the instance and the events.
    use crate::history::EventKind;
    use crate::step::events::Event;
    use crate::step::instance::{Instance, ScopeId, ScopeKind};
    use crate::step::StepContext;
    use crate::{ActivityFailure, ActivityOptions};
    use std::time::Duration;

    fn failure(message: &str) -> ActivityFailure {
        ActivityFailure::Application {
            message: message.to_string(),
            non_retryable: true,
        }
    }

    fn activity(cx: &StepContext, scope: ScopeId, name: &str) -> crate::step::OpId {
        cx.schedule_activity(
            scope,
            name,
            Ok(serde_json::Value::Null),
            ActivityOptions::default(),
        )
    }

    #[test]
    fn r4_3_an_error_awaited_in_a_cancellation_handler_is_recorded_with_its_place() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let handler = cx.new_handler_scope("on_cancel#2");
        let refund = activity(&cx, handler, "refund");
        // A scope opened inside the handler is still the handler's.
        let inner = cx.open_scope(handler, ScopeKind::Cancellable, None);
        let nap = cx.start_timer(inner, Duration::from_secs(5));
        // The same failure outside a handler is the workflow's own business.
        let elsewhere = activity(&cx, ScopeId::ROOT, "refund");
        let plain = cx.new_disconnected_scope();
        let detached = activity(&cx, plain, "refund");
        let started = cx.finish().instance;

        let cx = StepContext::new("wf", started, 1);
        cx.resuming("order", "OnCancelRefund");
        for op in [refund, elsewhere, detached] {
            cx.apply(Event::ActivityFailed {
                op,
                failure: failure("the bank said no"),
            });
        }
        cx.cancel_scope(inner, "gave up");
        for op in [refund, nap, elsewhere, detached] {
            assert!(matches!(cx.take(op), Some(Err(_))));
        }
        let out = cx.finish();
        assert_eq!(
            out.instance.handler_failures(),
            [
                "cancellation handler `on_cancel#2` of workflow `order` (state \
                 `OnCancelRefund`): activity `refund` failed: the bank said no",
                "cancellation handler `on_cancel#2` of workflow `order` (state \
                 `OnCancelRefund`): timer (5000 ms): cancelled: gave up",
            ]
        );
        let recorded: Vec<&EventKind> = out
            .history
            .iter()
            .filter(|e| matches!(e, EventKind::CleanupFailed { .. }))
            .collect();
        assert_eq!(recorded.len(), 2, "{:?}", out.history);
    }

    #[test]
    fn r4_3_a_handler_whose_operations_succeed_records_nothing() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let handler = cx.new_handler_scope("on_cancel#0");
        let refund = activity(&cx, handler, "refund");
        let cx = StepContext::new("wf", cx.finish().instance, 1);
        cx.apply(Event::ActivityCompleted {
            op: refund,
            result: serde_json::json!("refunded"),
        });
        assert_eq!(cx.take(refund), Some(Ok(serde_json::json!("refunded"))));
        let out = cx.finish();
        assert!(out.instance.handler_failures().is_empty());
        assert!(!out
            .history
            .iter()
            .any(|e| matches!(e, EventKind::CleanupFailed { .. })));
    }

    #[test]
    fn r4_3_a_failure_a_handler_awaits_through_a_race_or_join_is_recorded() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let handler = cx.new_handler_scope("on_cancel#1");
        let a = activity(&cx, handler, "release");
        let b = activity(&cx, handler, "notify");
        let join = cx.start_join(handler, vec![a, b]);
        let c = activity(&cx, handler, "undo");
        let race = cx.start_race(handler, vec![c]);
        let cx = StepContext::new("wf", cx.finish().instance, 1);
        cx.apply(Event::ActivityFailed {
            op: a,
            failure: failure("seat gone"),
        });
        cx.apply(Event::ActivityCompleted {
            op: b,
            result: serde_json::Value::Null,
        });
        cx.apply(Event::ActivityFailed {
            op: c,
            failure: ActivityFailure::Cancelled,
        });
        assert!(matches!(cx.take(join), Some(Ok(_))));
        assert!(matches!(cx.take(race), Some(Ok(_))));
        let out = cx.finish();
        assert_eq!(
            out.instance.handler_failures(),
            [
                "cancellation handler `on_cancel#1`: activity `release` failed: seat gone",
                "cancellation handler `on_cancel#1`: activity `undo` failed: activity was \
                 cancelled",
            ]
        );
    }
}
