//! Creating, cancelling and terminating workflows: what the client does on a caller's behalf
//! and the engine does on a parent workflow's behalf (child workflows, `cancel_external`).

use super::EngineInner;
use crate::store::{NewWorkflow, ParentLink};
use crate::{ClientError, ExecutionTimeout, Instance, ParentClosePolicy, StoreError};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Arc;
use std::time::Duration;

use crate::client::codec;

/// How a workflow starts, beside its type and input: its parent (for a child), its start
/// time, and its execution timeout (R5.3).
#[derive(Debug, Clone, Default)]
pub(crate) struct StartAt {
    pub(crate) parent: Option<ParentLink>,
    pub(crate) at_ms: u64,
    pub(crate) execution_timeout: Option<Duration>,
}

impl StartAt {
    /// A start at `at_ms`, not a child's, without an execution timeout.
    pub(crate) fn at(at_ms: u64) -> Self {
        StartAt {
            at_ms,
            ..StartAt::default()
        }
    }
}

/// The row that starts workflow `id` of type `workflow_name`, with its decoded machine.
/// Fails (and nothing is stored) if the type is unknown, the input does not decode or a
/// start option is out of range.
pub(crate) fn prepare_start(
    workflows: &std::collections::HashMap<&'static str, Arc<dyn crate::DynWorkflow>>,
    workflow_name: &str,
    id: &str,
    input: serde_json::Value,
    start: StartAt,
) -> Result<(NewWorkflow, Box<dyn crate::DynMachine>, Instance), ClientError> {
    let workflow = workflows
        .get(workflow_name)
        .cloned()
        .ok_or_else(|| ClientError::UnknownWorkflow(workflow_name.to_string()))?;
    prepare_start_of(&*workflow, id, input, start)
}

/// [`prepare_start`] for a workflow type at hand (a client that is not a worker has no
/// registry). The row is unowned: a worker claims it.
pub(crate) fn prepare_start_of(
    workflow: &dyn crate::DynWorkflow,
    id: &str,
    input: serde_json::Value,
    start: StartAt,
) -> Result<(NewWorkflow, Box<dyn crate::DynMachine>, Instance), ClientError> {
    let StartAt {
        parent,
        at_ms,
        execution_timeout,
    } = start;
    let workflow_name = workflow.name();
    let execution_timeout = execution_timeout
        .map(|after| ExecutionTimeout::starting(after, at_ms))
        .transpose()
        .map_err(|message| ClientError::InvalidOption {
            option: format!("execution timeout of workflow `{workflow_name}`"),
            message,
        })?;
    let depth = crate::json_limits::value_depth(&input);
    if depth > crate::json_limits::MAX_VALUE_DEPTH {
        return Err(ClientError::TooDeep {
            what: format!("the input of workflow `{workflow_name}`"),
            depth,
        });
    }
    let machine = workflow
        .start(input.clone())
        .map_err(|e| codec(format!("the input of workflow `{workflow_name}`"), e))?;
    let instance = Instance::starting(execution_timeout);
    let machine_state = machine
        .snapshot()
        .map_err(|e| codec(format!("the start state of workflow `{workflow_name}`"), e))?;
    let snapshot = super::encode_snapshot(&machine_state, &instance)
        .map_err(|e| codec(format!("the start state of workflow `{workflow_name}`"), e))?;
    let depth = crate::json_limits::text_depth(snapshot.as_str());
    if depth > crate::json_limits::READER_DEPTH {
        return Err(ClientError::TooDeep {
            what: format!("the start state of workflow `{workflow_name}`"),
            depth,
        });
    }
    let new = NewWorkflow {
        id: id.to_string(),
        workflow_type: workflow.name().to_string(),
        schema: workflow.schema(),
        snapshot,
        state_name: machine.state_name().to_string(),
        input,
        at_ms,
        parent,
        lease: None,
    };
    Ok((new, machine, instance))
}

impl EngineInner {
    /// Stores a new Running workflow of type `workflow_name` (with an execution timeout when
    /// one is given) and triggers its first step. Nothing is stored if the type is unknown or the input
    /// does not decode.
    pub(crate) async fn create_workflow(
        self: &Arc<Self>,
        workflow_name: &str,
        id: &str,
        input: serde_json::Value,
        execution_timeout: Option<Duration>,
    ) -> Result<(), ClientError> {
        let start = StartAt {
            execution_timeout,
            ..StartAt::at(self.clock.now_ms())
        };
        let (mut new, machine, instance) =
            prepare_start(&self.workflows, workflow_name, id, input, start)?;
        // Created leased to this engine (epoch 1), which steps it at once.
        new.lease = Some(self.holdings.request.clone());
        self.store.create_workflow(new).await?;
        self.holdings.hold(id, 1);
        tracing::info!(workflow = %id, r#type = workflow_name, "workflow started");
        self.cache_machine(
            id,
            super::CachedMachine {
                version: 0,
                machine,
                instance,
            },
        );
        self.notify(id);
        Ok(())
    }

    /// Records a cancel request for workflow `id` and wakes it (R1.1, R1.4).
    pub(crate) async fn request_cancel(
        self: &Arc<Self>,
        id: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        if self.store.request_cancel(id, reason).await? {
            tracing::info!(workflow = id, reason = %reason, "cancel requested");
            self.arrived(id, super::Arrival::Cancel);
            self.notify(id);
        }
        Ok(())
    }

    /// Terminates workflow `id` (see [`terminate_in_store`]) and wakes what this engine
    /// runs for it, its parent and its children.
    pub(crate) async fn terminate_workflow(
        self: &Arc<Self>,
        id: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let touched = terminate_in_store(&*self.store, id, reason, self.clock.now_ms()).await?;
        for closed in &touched.closed {
            tracing::info!(workflow = %closed, reason = %reason, "workflow terminated");
            self.on_closed(closed, Some(crate::WorkflowStatus::Terminated));
        }
        for woken in &touched.to_step {
            self.notify(woken);
        }
        Ok(())
    }
}

/// What [`terminate_in_store`] changed.
#[derive(Debug, Default)]
pub(crate) struct Terminated {
    /// The workflows it closed: the one asked for and the children whose parent close
    /// policy is `Terminate`.
    pub(crate) closed: Vec<String>,
    /// The workflows that got an event and need a step: parents told of a closed child,
    /// children asked to cancel.
    pub(crate) to_step: Vec<String>,
}

/// Closes workflow `id` as Terminated, tells its parent (an event in the parent's inbox)
/// and applies its running children's parent close policy (R7), using only the store, so
/// that a tool without the workflow code (`wf terminate`) does all an engine would.
///
/// A failure after the workflow itself was closed is logged, not returned: the parent and
/// the children are reconciled by the next engine's recovery.
pub(crate) fn terminate_in_store<'a>(
    store: &'a dyn crate::Store,
    id: &'a str,
    reason: &'a str,
    at_ms: u64,
) -> BoxFuture<'a, Result<Terminated, StoreError>> {
    async move {
        store.terminate(id, reason, at_ms).await?;
        let mut touched = Terminated {
            closed: vec![id.to_string()],
            to_step: Vec::new(),
        };
        let record = match store.load_workflow(id).await {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(workflow = id, "could not read the terminated workflow: {e}");
                return Ok(touched);
            }
        };
        if let (Some(parent), Some(close)) = (&record.parent, &record.close) {
            let event = crate::Event::ChildClosed {
                op: parent.op,
                outcome: super::children::child_outcome(close),
            };
            match store.enqueue_event(&parent.workflow_id, event).await {
                Ok(_) => touched.to_step.push(parent.workflow_id.clone()),
                Err(StoreError::NotFound(_) | StoreError::AlreadyClosed { .. }) => {}
                Err(e) => tracing::warn!(
                    workflow = id,
                    parent = %parent.workflow_id,
                    "could not tell the parent; the next recovery will: {e}"
                ),
            }
        }
        let children = super::stored_instance(&record.snapshot)
            .map(|i| i.children().clone())
            .unwrap_or_default();
        let why = "the parent workflow was terminated";
        for child in children.into_values() {
            let result = match child.parent_close {
                ParentClosePolicy::Terminate => terminate_in_store(store, &child.id, why, at_ms)
                    .await
                    .map(|more| {
                        touched.closed.extend(more.closed);
                        touched.to_step.extend(more.to_step);
                    }),
                ParentClosePolicy::RequestCancel => {
                    store.request_cancel(&child.id, why).await.map(|first| {
                        if first {
                            touched.to_step.push(child.id.clone());
                        }
                    })
                }
                ParentClosePolicy::Abandon => Ok(()),
            };
            match result {
                Ok(()) | Err(StoreError::NotFound(_) | StoreError::AlreadyClosed { .. }) => {}
                Err(e) => tracing::warn!(
                    workflow = id,
                    child = %child.id,
                    "could not apply the parent close policy: {e}"
                ),
            }
        }
        Ok(touched)
    }
    .boxed()
}
