//! Scopes started with `.start()` (R3.7): a scope whose block runs beside the code that
//! started it, awaited later through its handle.
//!
//! The design, in short:
//! - `ctx.cancellable(async { .. }).start()` (and `non_cancellable`, `with_timeout`) opens the
//!   scope under the current one, exactly as an awaited scope would be opened (so R3.2, R3.3
//!   and R3.6 apply unchanged), and creates an `OpKind::Scope` operation in the *current*
//!   scope: the handle awaits it, races it or joins it like any operation.
//! - The block is compiled into a machine of its own (as a parallel branch is), with its own
//!   copies of the outer locals it uses. It runs at once, up to its first suspension, in the
//!   step that starts it; then it is kept, type-erased, in the instance (`started_scopes`),
//!   like a compensation handler, so that it survives in the snapshot whatever the code that
//!   started it does next.
//! - Every step drives the kept machines and the workflow's own machine in turns until none
//!   of them changes anything (an operation created, resolved or taken, a scope cancelled:
//!   the step's `progress` counter), so a block and the code awaiting it can hand results to
//!   each other within one step.
//! - When a block ends, its scope is closed (a pending timeout is cancelled), and the handle's
//!   operation resolves with the block's value (`Ok` and `Err` alike).
//! - Cancelling through the handle (`handle.cancel(ctx)`) cancels the started scope, as
//!   `ctx.cancel_scope()` inside it would (R3.2): its pending operations get their cancel
//!   actions and its `on_cancel!` handlers run as its code is left.
//! - When the workflow closes while a block still runs, the block is dropped (its handlers do
//!   not run, as code after a pending await never runs) and its operations get the close
//!   treatment every pending operation gets; the history says so.

use super::instance::{OpId, OpKind, OpRecord, OpStatus, ScopeId, ScopeKind, StartedScope};
use super::{StepContext, StepState};
use crate::history::EventKind;
use crate::WorkflowError;
use std::time::Duration;

impl StepContext {
    /// Opens a started scope under `parent` and the operation (in `parent`) its handle
    /// awaits.
    pub(crate) fn start_scope(
        &self,
        parent: ScopeId,
        kind: ScopeKind,
        timeout: Option<Duration>,
    ) -> (OpId, ScopeId) {
        let scope = self.open_scope(parent, kind, timeout);
        let mut st = self.state.borrow_mut();
        let op = st.new_op(parent, OpKind::Scope { scope });
        st.history.push(EventKind::ScopeStarted { op, scope });
        (op, scope)
    }

    /// Keeps the machine of a started scope whose block has suspended.
    pub(crate) fn keep_started(
        &self,
        site: u32,
        op: OpId,
        scope: ScopeId,
        state: serde_json::Value,
    ) {
        self.state
            .borrow_mut()
            .instance
            .started_scopes
            .push(StartedScope {
                site,
                op,
                scope,
                state,
            });
    }

    /// The kept started scope at `index`, if there is one.
    pub(crate) fn started_at(&self, index: usize) -> Option<StartedScope> {
        self.state
            .borrow()
            .instance
            .started_scopes
            .get(index)
            .cloned()
    }

    /// Stores the machine of the kept started scope at `index` after it ran.
    pub(crate) fn update_started(&self, index: usize, state: serde_json::Value) {
        if let Some(run) = self
            .state
            .borrow_mut()
            .instance
            .started_scopes
            .get_mut(index)
        {
            run.state = state;
        }
    }

    /// The kept started scope at `index` has ended with `result`: it is no longer kept.
    pub(crate) fn remove_started(&self, index: usize) {
        let mut st = self.state.borrow_mut();
        if index < st.instance.started_scopes.len() {
            st.instance.started_scopes.remove(index);
        }
    }

    /// The block of the started scope `scope` ended with `result`: closes the scope and
    /// resolves the handle's operation `op` with the block's value.
    pub(crate) fn end_started(
        &self,
        op: OpId,
        scope: ScopeId,
        result: Result<serde_json::Value, WorkflowError>,
    ) {
        self.close_scope(scope);
        let mut st = self.state.borrow_mut();
        st.history.push(EventKind::ScopeEnded {
            op,
            scope,
            error: result.as_ref().err().map(|e| e.to_string()),
        });
        let pending = matches!(
            st.instance.ops.get(&op),
            Some(OpRecord {
                status: OpStatus::Pending,
                ..
            })
        );
        if pending {
            st.resolve_now(op, result);
        }
        st.progress += 1;
    }

    /// A count that grows whenever something happens that can let a suspended machine go on.
    pub(crate) fn progress(&self) -> u64 {
        self.state.borrow().progress
    }
}

impl StepState {
    /// The workflow closes: blocks still running are dropped, each noted in the history.
    pub(super) fn drop_started_scopes(&mut self) {
        for run in std::mem::take(&mut self.instance.started_scopes) {
            self.history.push(EventKind::ScopeEnded {
                op: run.op,
                scope: run.scope,
                error: Some(
                    "the workflow closed while the block still ran; its pending operations \
                     get the close treatment"
                        .to_string(),
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::history::EventKind;
    use crate::step::instance::{Instance, OpKind, ScopeId, ScopeKind};
    use crate::step::StepContext;
    use crate::WorkflowError;
    use std::time::Duration;

    #[test]
    fn r3_7_a_started_scope_is_owned_by_its_parent_and_its_handle_resolves_with_the_block() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let (op, scope) = cx.start_scope(ScopeId::ROOT, ScopeKind::Cancellable, None);
        let out = cx.finish();
        let rec = &out.instance.operations()[&op];
        assert_eq!(
            rec.scope,
            ScopeId::ROOT,
            "R3.1: the handle belongs to the starter"
        );
        assert_eq!(rec.kind, OpKind::Scope { scope });
        assert_eq!(
            out.instance.scopes()[scope.0 as usize].parent,
            Some(ScopeId::ROOT)
        );

        let cx = StepContext::new("wf", out.instance, 1);
        cx.keep_started(0, op, scope, serde_json::json!("Start"));
        assert_eq!(cx.take(op), None, "pending while the block runs");
        cx.remove_started(0);
        cx.end_started(op, scope, Ok(serde_json::json!(42)));
        assert_eq!(cx.take(op), Some(Ok(serde_json::json!(42))));
        let out = cx.finish();
        assert!(out.instance.started_scopes().is_empty());
        assert!(matches!(
            out.history.last(),
            Some(EventKind::ScopeEnded { error: None, .. })
        ));
    }

    #[test]
    fn r3_7_a_cancel_of_the_starter_reaches_a_started_cancellable_scope_and_not_its_handle() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let (op, scope) = cx.start_scope(ScopeId::ROOT, ScopeKind::Cancellable, None);
        let (shield_op, shield) = cx.start_scope(ScopeId::ROOT, ScopeKind::NonCancellable, None);
        cx.cancel_scope(ScopeId::ROOT, "stop");
        assert!(
            cx.scope_is_cancelled(scope),
            "R3.2 reaches the started scope"
        );
        assert!(
            !cx.scope_is_cancelled(shield),
            "R3.3: a started shield is not cancelled"
        );
        assert_eq!(cx.scope_signal(shield), Some("stop".to_string()));
        assert_eq!(cx.take(op), None, "the handle waits for the block to end");
        assert_eq!(cx.take(shield_op), None);
    }

    #[test]
    fn r3_7_a_started_timeout_scope_gets_its_timer_and_the_end_cancels_it() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let (op, scope) = cx.start_scope(
            ScopeId::ROOT,
            ScopeKind::Cancellable,
            Some(Duration::from_secs(5)),
        );
        cx.end_started(op, scope, Err(WorkflowError::cancelled("x")));
        let out = cx.finish();
        assert!(out
            .history
            .iter()
            .any(|e| matches!(e, EventKind::TimerCancelled { .. })));
        assert!(matches!(
            out.history.last(),
            Some(EventKind::ScopeEnded { error: Some(_), .. })
        ));
    }

    #[test]
    fn r3_7_blocks_still_running_when_the_workflow_closes_are_dropped_and_noted() {
        let cx = StepContext::new("wf", Instance::default(), 0);
        let (op, scope) = cx.start_scope(ScopeId::ROOT, ScopeKind::Cancellable, None);
        cx.keep_started(0, op, scope, serde_json::json!("Start"));
        cx.close_pending();
        let out = cx.finish();
        assert!(out.instance.started_scopes().is_empty());
        assert!(matches!(
            out.history.last(),
            Some(EventKind::ScopeEnded { error: Some(_), .. })
        ));
    }
}
