//! The workflow's execution timeout (R5.3): its value checked at the start, the timer the
//! first step starts for its deadline, and what its firing does — a cancel request of the
//! whole workflow whose reason says it timed out.
//!
//! The deadline is stored in the instance from the start, so it is counted from the start
//! even if no worker runs the workflow for a while, and the timer is a stored timer row like
//! any other, re-armed by recovery. The timer has no scope: a cancel of the root scope by
//! workflow code or by an unhandled error (R13) leaves it armed, and only a cancel request
//! (which it would have made itself) or the close stops it.

use super::events::Command;
use super::instance::{ExecutionTimeout, Instance, OpId};
use super::{StepContext, StepState};
use crate::history::EventKind;
use crate::options::MAX_EXECUTION_TIMEOUT;
use std::time::Duration;

/// The reason of the cancel request an execution timeout of `after_ms` makes: "workflow
/// execution timed out after 30s". The one place that words it, so that a typed cause can be
/// attached beside it.
pub(crate) fn execution_timeout_reason(after_ms: u64) -> String {
    format!(
        "workflow execution timed out after {}",
        crate::time::format_duration_ms(after_ms)
    )
}

impl ExecutionTimeout {
    /// The execution timeout `after` of a workflow started at `started_ms`. Refused, with a
    /// sentence saying what it may be, when it is shorter than 1 ms or longer than
    /// [`MAX_EXECUTION_TIMEOUT`].
    pub(crate) fn starting(after: Duration, started_ms: u64) -> Result<Self, String> {
        if after < Duration::from_millis(1) {
            return Err(format!(
                "{after:?} is too short: a workflow's execution timeout is at least 1 ms \
                 (leave it unset for none)"
            ));
        }
        if after > MAX_EXECUTION_TIMEOUT {
            return Err(format!(
                "{after:?} is longer than the {} days an execution timeout may be; leave it \
                 unset for none",
                MAX_EXECUTION_TIMEOUT.as_secs() / 86_400
            ));
        }
        // At most 100 years: far from overflowing, and exact in JSON.
        let after_ms = after.as_millis() as u64;
        Ok(ExecutionTimeout {
            after_ms,
            deadline_ms: started_ms.saturating_add(after_ms),
            timer: None,
        })
    }
}

impl Instance {
    /// The runtime state of a workflow before its first step, with its execution timeout.
    pub(crate) fn starting(execution_timeout: Option<ExecutionTimeout>) -> Instance {
        Instance {
            execution_timeout,
            ..Instance::default()
        }
    }
}

impl StepContext {
    /// Starts the timer of the workflow's execution timeout, at its first step (R5.3): the
    /// deadline counts from the start, so a step that comes after it has a timer that fires
    /// at once. Does nothing for a workflow without one, or whose timer was started.
    pub fn arm_execution_timeout(&self) {
        let mut st = self.state.borrow_mut();
        let Some(timeout) = st.instance.execution_timeout else {
            return;
        };
        if timeout.timer.is_some() {
            return;
        }
        let op = OpId(st.instance.next_op);
        // A validated snapshot keeps the counter at most `MAX_OP_ID`, far from overflowing.
        st.instance.next_op = st.instance.next_op.saturating_add(1);
        st.instance.execution_timeout = Some(ExecutionTimeout {
            timer: Some(op),
            ..timeout
        });
        let duration_ms = timeout.deadline_ms.saturating_sub(st.now_ms);
        st.history.push(EventKind::TimerStarted {
            op,
            duration_ms,
            fire_at_ms: timeout.deadline_ms,
        });
        st.commands.push(Command::StartTimer {
            op,
            fire_at_ms: timeout.deadline_ms,
        });
    }
}

impl StepState {
    /// The execution timeout's timer while it may still fire: started, and no cancel request
    /// received (its own firing is one, and any other request stops it).
    pub(super) fn execution_timer(&self) -> Option<OpId> {
        if self.instance.cancel_reason.is_some() {
            return None;
        }
        self.instance.execution_timeout.and_then(|t| t.timer)
    }

    /// Applies a fired timer if it is the execution timeout's: the workflow gets a cancel
    /// request with the timeout's reason (R5.3). Returns whether it was.
    pub(super) fn execution_timeout_fired(&mut self, op: OpId) -> bool {
        let Some(timeout) = self.instance.execution_timeout else {
            return false;
        };
        if timeout.timer != Some(op) {
            return false;
        }
        // A fire that was on its way when a cancel request stopped the timer changes
        // nothing: the request it would make was made (R1.4).
        if self.execution_timer().is_some() {
            self.history.push(EventKind::TimerFired { op });
            self.request_cancel(execution_timeout_reason(timeout.after_ms));
        }
        true
    }

    /// Stops the execution timeout's timer `op` once a cancel request was received: the
    /// request it would make has been made.
    pub(super) fn stop_execution_timer(&mut self, op: OpId) {
        self.commands.push(Command::CancelTimer { op });
        self.history.push(EventKind::TimerCancelled { op });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::events::Event;
    use crate::step::instance::ScopeId;
    use crate::WorkflowError;

    const START: u64 = 1_000_000;

    fn timed(after: Duration) -> Instance {
        Instance::starting(Some(ExecutionTimeout::starting(after, START).unwrap()))
    }

    #[test]
    fn r5_3_the_first_step_starts_a_timer_for_the_deadline_counted_from_the_start() {
        // The first step comes 10 s after the start: the deadline does not move.
        let cx = StepContext::new("wf", timed(Duration::from_secs(30)), START + 10_000);
        cx.arm_execution_timeout();
        let out = cx.finish();
        let timer = out.instance.execution_timeout().and_then(|t| t.timer);
        let Some(op) = timer else {
            panic!("no timer: {:?}", out.instance)
        };
        assert_eq!(
            out.commands,
            [Command::StartTimer {
                op,
                fire_at_ms: START + 30_000
            }]
        );
        assert!(out.instance.pending().is_empty(), "no scope waits for it");
        // Later steps start no second timer.
        let cx = StepContext::new("wf", out.instance, START + 20_000);
        cx.arm_execution_timeout();
        assert!(cx.finish().commands.is_empty());
    }

    #[test]
    fn r5_3_the_deadline_is_a_cancel_request_whose_reason_says_it_timed_out() {
        let cx = StepContext::new("wf", timed(Duration::from_secs(30)), START);
        cx.arm_execution_timeout();
        let sleep = cx.start_timer(ScopeId::ROOT, Duration::from_secs(3600));
        let armed = cx.finish().instance;
        let timer = armed.execution_timeout().and_then(|t| t.timer).unwrap();
        let cx = StepContext::new("wf", armed, START + 30_000);
        cx.apply(Event::TimerFired { op: timer });
        let reason = "workflow execution timed out after 30s";
        assert!(cx.workflow_cancel_requested());
        assert_eq!(cx.workflow_cancel_reason().as_deref(), Some(reason));
        assert_eq!(cx.take(sleep), Some(Err(WorkflowError::cancelled(reason))));
        let out = cx.finish();
        assert_eq!(
            out.history,
            [
                EventKind::TimerFired { op: timer },
                EventKind::CancelRequested {
                    reason: reason.to_string()
                },
                EventKind::TimerCancelled { op: sleep },
            ]
        );
        assert_eq!(out.commands, [Command::CancelTimer { op: sleep }]);
    }

    #[test]
    fn r5_3_a_cancel_request_or_the_close_stops_the_timer_and_a_late_fire_changes_nothing() {
        let cx = StepContext::new("wf", timed(Duration::from_secs(30)), START);
        cx.arm_execution_timeout();
        let armed = cx.finish().instance;
        let timer = armed.execution_timeout().and_then(|t| t.timer).unwrap();

        let cx = StepContext::new("wf", armed.clone(), START + 1);
        cx.apply(Event::CancelRequested {
            reason: "customer".into(),
        });
        cx.apply(Event::TimerFired { op: timer });
        assert_eq!(cx.workflow_cancel_reason().as_deref(), Some("customer"));
        let out = cx.finish();
        assert_eq!(out.commands, [Command::CancelTimer { op: timer }]);
        assert_eq!(
            out.history,
            [
                EventKind::CancelRequested {
                    reason: "customer".to_string()
                },
                EventKind::TimerCancelled { op: timer },
            ]
        );

        let cx = StepContext::new("wf", armed, START + 1);
        cx.close_pending();
        assert_eq!(cx.finish().commands, [Command::CancelTimer { op: timer }]);
    }

    #[test]
    fn r5_3_a_root_scope_cancelled_by_code_leaves_the_timeout_armed() {
        let cx = StepContext::new("wf", timed(Duration::from_millis(1500)), START);
        cx.arm_execution_timeout();
        cx.cancel_scope(ScopeId::ROOT, "by code");
        let out = cx.finish();
        let timer = out
            .instance
            .execution_timeout()
            .and_then(|t| t.timer)
            .unwrap();
        assert!(!out.commands.contains(&Command::CancelTimer { op: timer }));
        let cx = StepContext::new("wf", out.instance, START + 1_500);
        cx.apply(Event::TimerFired { op: timer });
        assert_eq!(
            cx.workflow_cancel_reason().as_deref(),
            Some("workflow execution timed out after 1s500ms")
        );
    }

    #[test]
    fn r5_3_a_zero_or_absurdly_long_timeout_is_refused_with_what_it_may_be() {
        for short in [Duration::ZERO, Duration::from_micros(999)] {
            let err = ExecutionTimeout::starting(short, START).unwrap_err();
            assert!(err.contains("at least 1 ms"), "{err}");
        }
        for long in [
            MAX_EXECUTION_TIMEOUT + Duration::from_secs(1),
            Duration::MAX,
        ] {
            let err = ExecutionTimeout::starting(long, START).unwrap_err();
            assert!(err.contains("36500 days"), "{err}");
        }
        let longest = ExecutionTimeout::starting(MAX_EXECUTION_TIMEOUT, START).unwrap();
        assert_eq!(longest.deadline_ms, START + 3_153_600_000_000);
    }
}
