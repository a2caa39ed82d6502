//! Cancellation scopes: opening and closing them (with the deadline of a `with_timeout`
//! scope, R5.1), cancelling one from workflow code, from a cancel request or from an unhandled
//! error (R13), reading their signals, and the walk of the scope tree that decides which
//! scopes a cancel reaches and which only see its signal (R3). The cancel action each pending
//! operation then gets is in `cancel`.

use super::events::Command;
use super::instance::{OpId, OpKind, OpStatus, ScopeId, ScopeKind, ScopeRecord};
use super::{StepContext, StepState};
use crate::history::EventKind;
use std::time::Duration;

impl StepContext {
    /// Whether an unhandled error cancelled the workflow (it then closes Canceled, R13).
    pub fn unhandled_error_cancelled(&self) -> bool {
        self.state.borrow().instance.unhandled_cancel.is_some()
    }

    /// An error is leaving the workflow body. Under `UnhandledErrorAction::Cancel` this
    /// cancels the workflow, once: the root scope's pending operations get their cancel
    /// actions, and the handlers of the code being left run.
    pub(crate) fn unhandled_error(&self, message: &str) {
        let mut st = self.state.borrow_mut();
        if st.unhandled != crate::UnhandledErrorAction::Cancel
            || st.instance.unhandled_cancel.is_some()
        {
            return;
        }
        let reason = format!("unhandled error: {message}");
        st.instance.unhandled_cancel = Some(reason.clone());
        st.history.push(EventKind::ScopeCancelled {
            scope: ScopeId::ROOT,
            reason: reason.clone(),
        });
        st.cancel_scope(ScopeId::ROOT, &reason);
    }

    /// Whether the workflow received a cancel request (decides Canceled vs Failed, R2).
    pub fn workflow_cancel_requested(&self) -> bool {
        self.state.borrow().instance.cancel_reason.is_some()
    }

    pub(crate) fn workflow_cancel_reason(&self) -> Option<String> {
        self.state.borrow().instance.cancel_reason.clone()
    }

    /// The kind of a scope.
    pub(crate) fn scope_kind(&self, scope: ScopeId) -> Option<ScopeKind> {
        self.state
            .borrow()
            .instance
            .scopes
            .get(scope.0 as usize)
            .map(|s| s.kind)
    }

    /// The reason of the scope's fired cancellation signal, if it fired.
    pub(crate) fn scope_signal(&self, scope: ScopeId) -> Option<String> {
        let st = self.state.borrow();
        st.instance
            .scopes
            .get(scope.0 as usize)
            .and_then(|s| s.signal.clone())
    }

    pub(crate) fn new_disconnected_scope(&self) -> ScopeId {
        let mut st = self.state.borrow_mut();
        let id = ScopeId(st.instance.scopes.len() as u32);
        st.instance.scopes.push(ScopeRecord {
            parent: None,
            kind: ScopeKind::Disconnected,
            cancel_requested: None,
            signal: None,
            handler: None,
        });
        id
    }

    /// The disconnected scope of cancellation handler `handler` (`on_cancel#N`), marked so
    /// that an operation awaited in it that resolves with an error is recorded (R4.3).
    pub(crate) fn new_handler_scope(&self, handler: &str) -> ScopeId {
        let scope = self.new_disconnected_scope();
        if let Some(rec) = self
            .state
            .borrow_mut()
            .instance
            .scopes
            .get_mut(scope.0 as usize)
        {
            rec.handler = Some(handler.to_string());
        }
        scope
    }

    /// Opens a scope under `parent`. A cancellable scope under a cancelled parent is born
    /// cancelled (R3.6); a non-cancellable one is born with its signal fired. With a timeout,
    /// a timer owned by the new scope cancels it when it fires (R5.1).
    pub(crate) fn open_scope(
        &self,
        parent: ScopeId,
        kind: ScopeKind,
        timeout: Option<Duration>,
    ) -> ScopeId {
        let mut st = self.state.borrow_mut();
        let id = ScopeId(st.instance.scopes.len() as u32);
        let parent_rec = st.instance.scopes.get(parent.0 as usize);
        let parent_cancel = parent_rec.and_then(|p| p.cancel_requested.clone());
        let parent_signal = parent_rec.and_then(|p| p.signal.clone());
        let cancel_requested = match kind {
            ScopeKind::Cancellable => parent_cancel,
            _ => None,
        };
        // A non-cancellable scope sees the signal its parent has seen; a cancellable one only
        // if it is born cancelled (a shield's cancellable children never see it, R3.3).
        let signal = match kind {
            ScopeKind::NonCancellable => parent_signal,
            _ => cancel_requested.clone(),
        };
        st.instance.scopes.push(ScopeRecord {
            parent: Some(parent),
            kind,
            cancel_requested,
            signal,
            handler: None,
        });
        if let Some(timeout) = timeout {
            let duration_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            let fire_at_ms = st.now_ms.saturating_add(duration_ms);
            let op = st.new_op(
                id,
                OpKind::Timer {
                    duration_ms,
                    fire_at_ms,
                    timeout_of: Some(id),
                },
            );
            if !st.reject_if_cancelled(op, id) {
                st.history.push(EventKind::TimerStarted {
                    op,
                    duration_ms,
                    fire_at_ms,
                });
                st.commands.push(Command::StartTimer { op, fire_at_ms });
            }
        }
        id
    }

    /// Closes a scope whose body has ended: a timeout that has not fired is cancelled and
    /// recorded as such (R5.1). Operations started in the scope and still pending keep
    /// running; they stay owned by it (R3.1, R10).
    pub(crate) fn close_scope(&self, scope: ScopeId) {
        let mut st = self.state.borrow_mut();
        let timers: Vec<OpId> = st
            .instance
            .ops
            .iter()
            .filter(
                |(_, r)| matches!(r.kind, OpKind::Timer { timeout_of: Some(s), .. } if s == scope),
            )
            .map(|(op, _)| *op)
            .collect();
        for op in timers {
            if let Some(rec) = st.instance.ops.remove(&op) {
                if rec.status == OpStatus::Pending {
                    st.commands.push(Command::CancelTimer { op });
                    st.history.push(EventKind::TimerCancelled { op });
                }
            }
        }
    }

    /// Cancels `scope` from workflow code (`ctx.cancel_scope()`), with the same actions as a
    /// cancel request (R1.3, R3.2).
    pub(crate) fn cancel_scope(&self, scope: ScopeId, reason: &str) {
        let mut st = self.state.borrow_mut();
        let already = st
            .instance
            .scopes
            .get(scope.0 as usize)
            .is_none_or(|s| s.cancel_requested.is_some());
        if !already {
            st.history.push(EventKind::ScopeCancelled {
                scope,
                reason: reason.to_string(),
            });
        }
        st.cancel_scope(scope, reason);
    }

    /// Whether `scope` itself is cancelled (not just signalled): its handler runs when its
    /// code is left.
    pub(crate) fn scope_is_cancelled(&self, scope: ScopeId) -> bool {
        self.state.borrow().scope_is_cancelled(scope)
    }
}

impl StepState {
    fn scope_is_cancelled(&self, scope: ScopeId) -> bool {
        self.instance
            .scopes
            .get(scope.0 as usize)
            .is_some_and(|s| s.cancel_requested.is_some())
    }

    /// R1.3 / R3.2 / R3.3: cancels `scope` and the cancellable scopes beneath it, fires the
    /// signal of the non-cancellable scopes directly beneath those (without cancelling them
    /// or what they contain), then gives every pending operation of the cancelled scopes its
    /// cancel action, in creation order.
    pub(super) fn cancel_scope(&mut self, scope: ScopeId, reason: &str) {
        self.progress += 1;
        let mut cancelled = vec![false; self.instance.scopes.len()];
        let mut signalled = vec![false; self.instance.scopes.len()];
        // Scopes to cancel, and non-cancellable scopes whose signal fires (R3.3): the signal
        // goes on down through non-cancellable scopes, but not into the cancellable scopes
        // they shield.
        let mut to_cancel = vec![scope];
        let mut to_signal = Vec::new();
        // Each scope is visited once (a validated tree has no cycle, but a walk over stored
        // data must end whatever the data says).
        while let Some(s) = to_cancel.pop() {
            match cancelled.get_mut(s.0 as usize) {
                Some(slot) if !*slot => *slot = true,
                _ => continue,
            }
            for (i, child) in self.instance.scopes.iter().enumerate() {
                if child.parent == Some(s) {
                    match child.kind {
                        ScopeKind::NonCancellable => to_signal.push(ScopeId(i as u32)),
                        ScopeKind::Cancellable => to_cancel.push(ScopeId(i as u32)),
                        ScopeKind::Root | ScopeKind::Disconnected => {}
                    }
                }
            }
        }
        while let Some(s) = to_signal.pop() {
            match signalled.get_mut(s.0 as usize) {
                Some(slot) if !*slot => *slot = true,
                _ => continue,
            }
            for (i, child) in self.instance.scopes.iter().enumerate() {
                if child.parent == Some(s) && child.kind == ScopeKind::NonCancellable {
                    to_signal.push(ScopeId(i as u32));
                }
            }
        }
        for (i, rec) in self.instance.scopes.iter_mut().enumerate() {
            if cancelled[i] {
                rec.cancel_requested
                    .get_or_insert_with(|| reason.to_string());
            }
            if cancelled[i] || signalled[i] {
                rec.signal.get_or_insert_with(|| reason.to_string());
            }
        }
        let targets: Vec<OpId> = self
            .instance
            .ops
            .iter()
            .filter(|(_, rec)| {
                let i = rec.scope.0 as usize;
                rec.status == OpStatus::Pending
                    && (cancelled.get(i).copied().unwrap_or(false)
                        || (signalled.get(i).copied().unwrap_or(false)
                            && rec.kind == OpKind::CancelSignal))
            })
            .map(|(op, _)| *op)
            .collect();
        for op in targets {
            self.cancel_op(op, reason);
        }
    }
}
