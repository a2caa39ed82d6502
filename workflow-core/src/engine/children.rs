//! Child workflows and cancel requests to other workflows (CANCELLATION.md R7): carrying out
//! the child commands of a committed step, telling a parent when its child closes, and
//! reconciling both after a restart.
//!
//! The stepper awaits these commands before the workflow's next step, so they take effect in
//! the order the steps emitted them: a child is created before a later step can cancel it,
//! and a cancel never overtakes the start it is meant for.

use super::EngineInner;
use crate::store::{InboxEntry, ParentLink, WorkflowClose};
use crate::{ChildOutcome, ClientError, Command, Event, Instance, OpKind, OpStatus, StoreError};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Whether the stepper hands `command` to [`EngineInner::dispatch_children`].
pub(crate) fn is_child_command(command: &Command) -> bool {
    matches!(
        command,
        Command::StartChild { .. }
            | Command::CancelChild { .. }
            | Command::TerminateChild { .. }
            | Command::CancelExternal { .. }
    )
}

/// How a closed child is reported to its parent.
pub(crate) fn child_outcome(close: &WorkflowClose) -> ChildOutcome {
    match close {
        WorkflowClose::Completed { result } => ChildOutcome::Completed(result.clone()),
        WorkflowClose::Failed { error } => ChildOutcome::Failed(error.message.clone()),
        WorkflowClose::Canceled { error } => ChildOutcome::Canceled(error.message.clone()),
        WorkflowClose::Terminated { reason } => ChildOutcome::Terminated(reason.clone()),
    }
}

impl EngineInner {
    /// Waits before retrying a store call that failed; `false` once the engine shuts down.
    async fn back_off(&self, delay: &mut Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(*delay) => {}
            _ = self.shutdown.cancelled() => return false,
        }
        *delay = (*delay * 2).min(Duration::from_secs(30));
        true
    }

    /// Carries out the child commands of a committed step of `parent`, in order.
    pub(crate) async fn dispatch_children(
        self: &Arc<Self>,
        parent: &str,
        commands: Vec<Command>,
        closed: bool,
    ) {
        for command in commands {
            match command {
                // A closing step withdraws its own starts (`close_pending`); never start a
                // child for a closed parent.
                Command::StartChild { .. } if closed => {}
                Command::StartChild {
                    op,
                    workflow,
                    id,
                    input,
                } => self.start_child(parent, op, &workflow, &id, input).await,
                Command::CancelChild { op, id, reason } => {
                    self.cancel_child(parent, op, &id, &reason).await
                }
                Command::TerminateChild { id, reason } => self.terminate_child(&id, &reason).await,
                Command::CancelExternal { op, id, reason } => {
                    self.cancel_external(parent, op, &id, &reason).await
                }
                _ => {}
            }
        }
    }

    /// Creates child `id` linked to `parent`; if it cannot be, the parent's call resolves
    /// with `StartFailed`.
    async fn start_child(
        self: &Arc<Self>,
        parent: &str,
        op: crate::OpId,
        workflow: &str,
        id: &str,
        input: serde_json::Value,
    ) {
        let link = ParentLink {
            workflow_id: parent.to_string(),
            op,
        };
        let mut delay = Duration::from_millis(100);
        let message = loop {
            match self
                .create_workflow(workflow, id, input.clone(), Some(link.clone()))
                .await
            {
                Ok(()) => {
                    tracing::info!(workflow = parent, %op, child = id, "child workflow started");
                    return;
                }
                Err(ClientError::AlreadyExists(_)) => {
                    // Our own earlier attempt may have been stored before its answer was lost.
                    match self.store.load_workflow(id).await {
                        Ok(existing) if existing.parent.as_ref() == Some(&link) => return,
                        _ => {
                            break format!(
                                "a workflow with id `{id}` already exists; give each child its \
                                 own id"
                            )
                        }
                    }
                }
                Err(ClientError::UnknownWorkflow(_)) => {
                    break format!(
                        "workflow type `{workflow}` is not registered with this engine; register \
                         it with `Engine::builder().register(..)`"
                    )
                }
                Err(ClientError::Store(e)) => {
                    tracing::warn!(
                        workflow = parent,
                        child = id,
                        "could not start the child, retrying in {delay:?}: {e}"
                    );
                    if !self.back_off(&mut delay).await {
                        return; // reconciled at the next recovery
                    }
                }
                Err(other) => break other.to_string(),
            }
        };
        tracing::info!(workflow = parent, %op, child = id, "child workflow not started: {message}");
        self.report(
            parent,
            Event::ChildClosed {
                op,
                outcome: ChildOutcome::StartFailed(message),
            },
        )
        .await;
    }

    /// Records a cancel request for `id`, retrying store failures; `Err` with a message when
    /// there is no such running workflow, `None` if the engine shut down first.
    async fn cancel_recorded(
        self: &Arc<Self>,
        id: &str,
        reason: &str,
    ) -> Option<Result<(), String>> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.request_cancel(id, reason).await {
                Ok(()) => return Some(Ok(())),
                Err(e @ (StoreError::NotFound(_) | StoreError::AlreadyClosed { .. })) => {
                    return Some(Err(ClientError::from(e).to_string()))
                }
                Err(e) => {
                    tracing::warn!(
                        workflow = id,
                        "could not record a cancel request, retrying in {delay:?}: {e}"
                    );
                    if !self.back_off(&mut delay).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Asks child `id` to cancel, then tells the parent the request is recorded. A child that
    /// already closed has reported (or will report) its close, which resolves the call.
    async fn cancel_child(self: &Arc<Self>, parent: &str, op: crate::OpId, id: &str, reason: &str) {
        if self.cancel_recorded(id, reason).await.is_none() {
            return;
        }
        self.report(parent, Event::ChildCancelRecorded { op }).await;
    }

    /// Parent close policy `Terminate`.
    async fn terminate_child(self: &Arc<Self>, id: &str, reason: &str) {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.terminate_workflow(id, reason).await {
                Ok(()) | Err(StoreError::NotFound(_) | StoreError::AlreadyClosed { .. }) => return,
                Err(e) => {
                    tracing::warn!(
                        workflow = id,
                        "could not terminate the child, retrying in {delay:?}: {e}"
                    );
                    if !self.back_off(&mut delay).await {
                        return;
                    }
                }
            }
        }
    }

    /// `ctx.cancel_external(id, reason)`.
    async fn cancel_external(
        self: &Arc<Self>,
        parent: &str,
        op: crate::OpId,
        id: &str,
        reason: &str,
    ) {
        let Some(result) = self.cancel_recorded(id, reason).await else {
            return;
        };
        self.report(parent, Event::ExternalCancelDone { op, result })
            .await;
    }

    /// Tells `parent` that its child closed (in the background: the report retries until
    /// the store takes it). A parent that closed meanwhile does not need it.
    pub(crate) fn tell_parent(self: &Arc<Self>, parent: ParentLink, outcome: ChildOutcome) {
        let inner = self.clone();
        let _ = self.spawn(async move {
            let event = Event::ChildClosed {
                op: parent.op,
                outcome,
            };
            inner.report(&parent.workflow_id, event).await;
        });
    }

    /// After a restart, finishes what the last engine may have left half done for workflow
    /// `id`: a child never created (the engine stopped between the commit and the start) is
    /// reported as not started; a child that closed without its parent hearing of it is
    /// reported; cancels sent to children or other workflows are sent again (they are
    /// idempotent, R1.4) and answered. Answers already waiting in the inbox are not repeated.
    pub(crate) async fn reconcile_children(
        self: Arc<Self>,
        id: String,
        instance: Instance,
        inbox: Vec<InboxEntry>,
    ) {
        let answered: HashSet<crate::OpId> = inbox
            .iter()
            .filter_map(|entry| match &entry.event {
                Event::ChildClosed { op, .. } | Event::ExternalCancelDone { op, .. } => Some(*op),
                _ => None,
            })
            .collect();
        for (op, child) in instance.children() {
            if answered.contains(op) {
                continue;
            }
            let link = ParentLink {
                workflow_id: id.clone(),
                op: *op,
            };
            let outcome = match self.store.load_workflow(&child.id).await {
                Err(StoreError::NotFound(_)) => Some(ChildOutcome::StartFailed(
                    "the engine stopped before the child workflow was created".to_string(),
                )),
                Ok(record) if record.parent.as_ref() != Some(&link) => {
                    Some(ChildOutcome::StartFailed(format!(
                        "a workflow with id `{}` already exists; give each child its own id",
                        child.id
                    )))
                }
                Ok(record) => record.close.as_ref().map(child_outcome),
                Err(e) => {
                    tracing::warn!(workflow = %id, child = %child.id, "could not check the child after a restart: {e}");
                    None
                }
            };
            if let Some(outcome) = outcome {
                self.report(&id, Event::ChildClosed { op: *op, outcome })
                    .await;
                continue;
            }
            let Some(rec) = instance.operations().get(op) else {
                continue;
            };
            if rec.status == OpStatus::CancelRequested {
                let reason = instance
                    .scopes()
                    .get(rec.scope.0 as usize)
                    .and_then(|s| s.cancel_requested.clone())
                    .unwrap_or_default();
                self.cancel_child(&id, *op, &child.id, &reason).await;
            }
        }
        for (op, rec) in instance.operations() {
            if let (OpKind::CancelExternal { id: target, reason }, OpStatus::Pending) =
                (&rec.kind, &rec.status)
            {
                if !answered.contains(op) {
                    self.cancel_external(&id, *op, target, reason).await;
                }
            }
        }
    }
}
