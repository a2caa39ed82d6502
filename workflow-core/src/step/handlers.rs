//! Compensation and confirmation handlers (R12): recording a compensable block that
//! completed, queueing its handlers when the workflow closes (compensating after a failure or
//! cancel, confirming after success) or when it calls `ctx.compensate()` / `ctx.confirm()`,
//! and the queue the generated code runs them from, each in its own disconnected scope.

use super::instance::{Closing, CompensableRecord, HandlerRun};
use super::StepContext;
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

    /// The explicitly started handler running now has ended.
    /// Records that a compensation or confirmation handler failed: in the history, and on
    /// the workflow itself, where `describe` and `list` show it (R12).
    pub(crate) fn handler_failed(&self, message: String) {
        let mut st = self.state.borrow_mut();
        st.history.push(EventKind::Log {
            message: message.clone(),
        });
        st.instance.handler_failures.push(message);
    }

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
