//! Child workflows and cancel requests to other workflows
//! ([R7](crate::semantics#r7-child-workflows)): carrying out the child commands of a committed
//! step, telling a parent when its child closes, and reconciling both after a restart.
//!
//! A child is created in the same transaction as the step that starts it
//! ([`StepCommit::new_workflows`](crate::store::StepCommit)), and a closing child's outcome
//! reaches its parent's inbox in the same transaction as the child's last step
//! ([`StepCommit::outbox`](crate::store::StepCommit)): a worker that dies right after a step
//! loses neither. Cancels sent to children and other workflows are carried out after the
//! commit; the stepper awaits them before the workflow's next step, so they take effect in
//! the order the steps emitted them, and a claim of the parent sends them again.

use super::{CachedMachine, EngineInner};
use crate::store::{InboxEntry, NewWorkflow, ParentLink, WorkflowClose};
use crate::{
    ChildOutcome, ClientError, Command, DynMachine, Event, Instance, OpKind, OpStatus, StoreError,
};
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

    /// Prepares the child starts of a step of `parent` before it commits: the rows to create
    /// with the step (leased to this worker), and what to do once it committed. A start that
    /// cannot be prepared (unknown type, input that does not decode) creates nothing and is
    /// reported to the parent after the commit. A closing step starts no child.
    pub(crate) fn prepare_children(
        &self,
        parent: &str,
        commands: &[Command],
        closing: bool,
        now_ms: u64,
    ) -> (Vec<NewWorkflow>, Vec<PreparedChild>) {
        let mut rows = Vec::new();
        let mut prepared = Vec::new();
        if closing {
            return (rows, prepared);
        }
        for command in commands {
            let Command::StartChild {
                op,
                workflow,
                id,
                input,
            } = command
            else {
                continue;
            };
            let link = ParentLink {
                workflow_id: parent.to_string(),
                op: *op,
            };
            let start = super::StartAt {
                parent: Some(link.clone()),
                ..super::StartAt::at(now_ms)
            };
            let started =
                match super::prepare_start(&self.workflows, workflow, id, input.clone(), start) {
                    Ok((mut row, machine, instance)) => {
                        row.lease = Some(self.holdings.request.clone());
                        rows.push(row);
                        Ok((machine, instance))
                    }
                    Err(ClientError::UnknownWorkflow(_)) => Err(format!(
                        "workflow type `{workflow}` is not registered with this engine; register \
                     it with `Engine::builder().register(..)`"
                    )),
                    Err(other) => Err(other.to_string()),
                };
            prepared.push(PreparedChild {
                id: id.clone(),
                link,
                started,
            });
        }
        (rows, prepared)
    }

    /// Carries out the child commands of a committed step of `parent`, in order.
    pub(crate) async fn dispatch_children(
        self: &Arc<Self>,
        parent: &str,
        commands: Vec<Command>,
        closed: bool,
        mut prepared: Vec<PreparedChild>,
    ) {
        for command in commands {
            match command {
                // A closing step withdraws its own starts (`close_pending`); never start a
                // child for a closed parent.
                Command::StartChild { .. } if closed => {}
                Command::StartChild { op, .. } => {
                    // Found first: a borrow of `prepared` must not live across the await.
                    let found = prepared.iter().position(|p| p.link.op == op);
                    match found {
                        Some(i) => self.child_started(prepared.swap_remove(i)).await,
                        None => tracing::error!(
                            workflow = parent,
                            %op,
                            "a child start was committed without being prepared"
                        ),
                    }
                }
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

    /// After the step that created child `child` committed: steps it here, or tells the
    /// parent why it did not start (its id was taken, or it could not be prepared).
    async fn child_started(self: &Arc<Self>, child: PreparedChild) {
        let PreparedChild { id, link, started } = child;
        let parent = link.workflow_id.clone();
        let (machine, instance) = match started {
            Ok(started) => started,
            Err(message) => return self.child_not_started(&link, &id, message).await,
        };
        let mut delay = Duration::from_millis(100);
        let record = loop {
            match self.store.load_workflow(&id).await {
                Ok(record) => break record,
                Err(e) => {
                    tracing::warn!(workflow = %parent, child = %id, "could not read the new child, retrying in {delay:?}: {e}");
                    if !self.back_off(&mut delay).await {
                        return; // reconciled when the parent is claimed again
                    }
                }
            }
        };
        if record.parent.as_ref() != Some(&link) {
            let message =
                format!("a workflow with id `{id}` already exists; give each child its own id");
            return self.child_not_started(&link, &id, message).await;
        }
        tracing::info!(workflow = %parent, op = %link.op, child = %id, "child workflow started");
        match &record.lease {
            Some(lease) if lease.owner == self.holdings.request.owner => {
                self.holdings.hold(&id, lease.epoch);
                if record.version == 0 {
                    self.cache_machine(
                        &id,
                        CachedMachine {
                            version: 0,
                            machine,
                            instance,
                        },
                    );
                }
                self.notify(&id);
            }
            // Claimed by another worker meanwhile (this one lost it): theirs to step.
            _ => {}
        }
    }

    async fn child_not_started(self: &Arc<Self>, link: &ParentLink, id: &str, message: String) {
        tracing::info!(workflow = %link.workflow_id, op = %link.op, child = id, "child workflow not started: {message}");
        self.report(
            &link.workflow_id,
            Event::ChildClosed {
                op: link.op,
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
                // Children are created with the step that starts them: one that is missing
                // could not be prepared, and the worker stopped before saying so.
                Err(StoreError::NotFound(_)) => Some(ChildOutcome::StartFailed(
                    "the child workflow could not be created (its type is not registered with \
                     the worker that started it, or its input did not decode)"
                        .to_string(),
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

/// A child start prepared with its parent's step (see
/// [`EngineInner::prepare_children`]).
pub(crate) struct PreparedChild {
    id: String,
    link: ParentLink,
    /// The child's decoded machine, or why it could not be prepared.
    started: Result<(Box<dyn DynMachine>, Instance), String>,
}
