//! Durable storage of workflows: the [`Store`] trait, the plain records it reads and writes,
//! and [`MemoryStore`], the in-memory implementation.
//!
//! See [`Store`] for the tables.
//!
//! Every method that changes more than one table does so atomically (one transaction).

#[cfg(test)]
pub(crate) mod contract;
mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

use crate::history::{EventKind, HistoryEvent};
use crate::{ActivityOptions, ErrorRecord, Event, OpId, StoreError, WorkflowFault, WorkflowStatus};
use serde::{Deserialize, Serialize};

/// One row of the workflows table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    /// The workflow id.
    pub id: String,
    /// The registered workflow type name.
    pub workflow_type: String,
    /// The schema fingerprint of the machine the snapshot was taken with.
    pub schema: u64,
    /// Where the workflow stands.
    pub status: WorkflowStatus,
    /// The snapshot: `{"machine": <machine state>, "instance": <Instance>}`.
    pub snapshot: crate::Snapshot,
    /// Number of committed steps; the optimistic-concurrency version.
    pub version: u64,
    /// Name of the machine's current state, for `describe`.
    pub state_name: String,
    /// The reason of the cancel request, once one was recorded (R1.5).
    pub cancel_reason: Option<String>,
    /// Set when the workflow cannot make progress (a panic in workflow code, a schema
    /// mismatch, a snapshot that does not decode): says why (R2.4).
    pub stuck: Option<WorkflowFault>,
    /// How the workflow closed, once it has.
    pub close: Option<WorkflowClose>,
    /// Engine time of creation, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Engine time of the last change, ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// Set for a child workflow: the parent to tell when it closes (R7).
    #[serde(default)]
    pub parent: Option<ParentLink>,
}

/// The link from a child workflow to the parent that started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent's workflow id.
    pub workflow_id: String,
    /// The parent's operation that awaits the child.
    pub op: OpId,
}

/// How a workflow closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum WorkflowClose {
    /// Returned `Ok` with this value (JSON).
    Completed {
        /// The workflow's output.
        result: serde_json::Value,
    },
    /// Returned a cancellation error after a cancel request (R2.2).
    Canceled {
        /// The error.
        error: ErrorRecord,
    },
    /// Returned any other error (R2.3).
    Failed {
        /// The error.
        error: ErrorRecord,
    },
    /// Terminated by a caller; no workflow code ran.
    Terminated {
        /// The reason given.
        reason: String,
    },
}

impl WorkflowClose {
    /// The final status this close gives.
    pub fn status(&self) -> WorkflowStatus {
        match self {
            WorkflowClose::Completed { .. } => WorkflowStatus::Completed,
            WorkflowClose::Canceled { .. } => WorkflowStatus::Canceled,
            WorkflowClose::Failed { .. } => WorkflowStatus::Failed,
            WorkflowClose::Terminated { .. } => WorkflowStatus::Terminated,
        }
    }
}

/// What [`Store::create_workflow`] needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewWorkflow {
    /// The workflow id.
    pub id: String,
    /// The registered workflow type name.
    pub workflow_type: String,
    /// The schema fingerprint.
    pub schema: u64,
    /// The initial snapshot.
    pub snapshot: crate::Snapshot,
    /// Name of the start state.
    pub state_name: String,
    /// The input, recorded in the `WorkflowStarted` history event.
    pub input: serde_json::Value,
    /// Engine time, ms since the Unix epoch.
    pub at_ms: u64,
    /// Set when a workflow starts it as its child.
    #[serde(default)]
    pub parent: Option<ParentLink>,
}

/// One row of the inbox: an event waiting for the workflow's next step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxEntry {
    /// Store-assigned sequence number, increasing in arrival order.
    pub seq: u64,
    /// The event.
    pub event: Event,
}

/// One row of the tasks table: an activity call that was scheduled and has not been
/// consumed by a step yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The workflow that scheduled it.
    pub workflow_id: String,
    /// Its operation id.
    pub op: OpId,
    /// The registered activity name.
    pub activity: String,
    /// Its input, as JSON.
    pub input: serde_json::Value,
    /// Timeouts, retries, cancellation type.
    pub options: ActivityOptions,
    /// The last attempt started or about to start (the engine writes 1 with the task, as it
    /// dispatches the first attempt right after that commit).
    pub attempt: u32,
    /// The details of the last heartbeat.
    pub heartbeat_details: Option<serde_json::Value>,
    /// Engine time of the last heartbeat, ms since the Unix epoch.
    pub last_heartbeat_ms: Option<u64>,
    /// Engine time it was scheduled, ms since the Unix epoch.
    pub scheduled_at_ms: u64,
    /// The workflow cancelled it: no further attempt starts.
    pub cancel_requested: bool,
    /// The cancel is delivered to a running attempt at its next heartbeat (not `Abandon`).
    pub notify_running: bool,
}

/// One row of the timers table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerRecord {
    /// The workflow that started it.
    pub workflow_id: String,
    /// Its operation id.
    pub op: OpId,
    /// Deadline, ms since the Unix epoch.
    pub fire_at_ms: u64,
}

/// A cancel sent to an activity task by a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCancel {
    /// The task's operation id.
    pub op: OpId,
    /// Whether a running attempt is told (false for `Abandon`).
    pub notify_running: bool,
}

/// Everything one step writes, committed by [`Store::commit_step`] in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepCommit {
    /// The workflow.
    pub workflow_id: String,
    /// The version the step was based on; the commit fails with
    /// [`StoreError::Conflict`] if the stored version differs.
    pub expected_version: u64,
    /// The new snapshot.
    pub snapshot: crate::Snapshot,
    /// Name of the machine's state after the step.
    pub state_name: String,
    /// History entries to append; the store assigns their sequence numbers.
    pub history: Vec<EventKind>,
    /// Engine time of the step, ms since the Unix epoch (stamped on the history entries).
    pub at_ms: u64,
    /// Inbox entries the step consumed.
    pub consumed_inbox: Vec<u64>,
    /// Activity tasks to insert.
    pub new_tasks: Vec<TaskRecord>,
    /// Cancels to record on existing tasks (after `new_tasks` are inserted).
    pub cancelled_tasks: Vec<TaskCancel>,
    /// Tasks whose results the step consumed, to delete.
    pub removed_tasks: Vec<OpId>,
    /// Timers to insert.
    pub new_timers: Vec<TimerRecord>,
    /// Timers that fired or were cancelled, to delete.
    pub removed_timers: Vec<OpId>,
    /// Set when the workflow closes with this step: the status changes, and the remaining
    /// inbox, tasks and timers of the workflow are deleted.
    pub close: Option<WorkflowClose>,
}

/// A Running workflow with everything the engine needs to resume it after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningWorkflow {
    /// The workflow row.
    pub record: WorkflowRecord,
    /// Its activity tasks.
    pub tasks: Vec<TaskRecord>,
    /// Its timers.
    pub timers: Vec<TimerRecord>,
    /// Its inbox.
    pub inbox: Vec<InboxEntry>,
}

/// Durable storage for workflows.
///
/// The trait mirrors five tables (DESIGN.md "Storage"), so that SQLite and PostgreSQL
/// implementations can map it one to one:
///
/// | table | record | written by |
/// |---|---|---|
/// | workflows | [`WorkflowRecord`] | [`Store::create_workflow`], [`Store::commit_step`], [`Store::request_cancel`], [`Store::terminate`], [`Store::set_stuck`] |
/// | history | [`HistoryEvent`] | [`Store::create_workflow`], [`Store::commit_step`], [`Store::terminate`] |
/// | inbox | [`InboxEntry`] | [`Store::enqueue_event`], [`Store::request_cancel`]; consumed by [`Store::commit_step`] |
/// | tasks | [`TaskRecord`] | [`Store::commit_step`], [`Store::record_task_attempt`], [`Store::record_heartbeat`] |
/// | timers | [`TimerRecord`] | [`Store::commit_step`] |
///
///
/// Implementations must make each method atomic. Errors: [`StoreError::NotFound`] for an
/// unknown workflow id, [`StoreError::AlreadyClosed`] where a method needs a Running
/// workflow, [`StoreError::Backend`] for everything the backend itself reports.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a workflow with status Running, version 0, no cancel request, and the history
    /// event `WorkflowStarted`. [`StoreError::AlreadyExists`] if the id is taken.
    async fn create_workflow(&self, workflow: NewWorkflow) -> Result<(), StoreError>;

    /// The workflow row.
    async fn load_workflow(&self, id: &str) -> Result<WorkflowRecord, StoreError>;

    /// All workflow rows, optionally only those with `status`, ordered by id.
    async fn list_workflows(
        &self,
        status: Option<WorkflowStatus>,
    ) -> Result<Vec<WorkflowRecord>, StoreError>;

    /// What a step reads, together: the workflow row and its inbox.
    ///
    /// `cached` is the version whose machine the engine still holds: when the stored version
    /// equals it, the snapshot is not needed and an implementation may return
    /// [`Snapshot::null`](crate::Snapshot::null) in its place (reading and decoding a snapshot per step
    /// is most of a step's cost otherwise). The default reads both with
    /// [`load_workflow`](Store::load_workflow) and [`read_inbox`](Store::read_inbox).
    async fn load_for_step(
        &self,
        id: &str,
        cached: Option<u64>,
    ) -> Result<(WorkflowRecord, Vec<InboxEntry>), StoreError> {
        let _ = cached;
        let record = self.load_workflow(id).await?;
        let inbox = self.read_inbox(id).await?;
        Ok((record, inbox))
    }

    /// Appends an event to a Running workflow's inbox and returns its sequence number.
    async fn enqueue_event(&self, id: &str, event: Event) -> Result<u64, StoreError>;

    /// The inbox of a workflow, in arrival order.
    async fn read_inbox(&self, id: &str) -> Result<Vec<InboxEntry>, StoreError>;

    /// Records a cancel request: sets the reason on the workflow row and enqueues
    /// [`Event::CancelRequested`], atomically. Returns `true` if this was the first request;
    /// a second request changes nothing and returns `false` (R1.4).
    async fn request_cancel(&self, id: &str, reason: &str) -> Result<bool, StoreError>;

    /// Commits one step atomically; returns the new version. See [`StepCommit`].
    async fn commit_step(&self, commit: StepCommit) -> Result<u64, StoreError>;

    /// Records that `attempt` of a task is about to start. `StoreError::NotFound` if the task
    /// no longer exists (its workflow closed or was terminated): the attempt must not run.
    async fn record_task_attempt(
        &self,
        workflow_id: &str,
        op: OpId,
        attempt: u32,
    ) -> Result<(), StoreError>;

    /// Records a heartbeat of a task: its details and time. Ignored if the task no longer
    /// exists.
    async fn record_heartbeat(
        &self,
        workflow_id: &str,
        op: OpId,
        details: Option<serde_json::Value>,
        at_ms: u64,
    ) -> Result<(), StoreError>;

    /// Marks a Running workflow as stuck (R2.4), or clears the mark with `None`. Ignored
    /// for a closed workflow.
    async fn set_stuck(&self, id: &str, fault: Option<WorkflowFault>) -> Result<(), StoreError>;

    /// Closes a Running workflow as Terminated, appends `WorkflowTerminated`, and deletes its
    /// inbox, tasks and timers.
    async fn terminate(&self, id: &str, reason: &str, at_ms: u64) -> Result<(), StoreError>;

    /// Every Running workflow with its tasks, timers and inbox (for recovery at start-up).
    async fn running_workflows(&self) -> Result<Vec<RunningWorkflow>, StoreError>;

    /// The activity tasks of a workflow, by operation id.
    async fn tasks(&self, id: &str) -> Result<Vec<TaskRecord>, StoreError>;

    /// The history of a workflow, in order.
    async fn history(&self, id: &str) -> Result<Vec<HistoryEvent>, StoreError>;

    /// Whether other processes may write to this store (a `wf cancel` from another terminal,
    /// say). An engine on a shared store polls [`Store::workflows_to_step`] to find the
    /// events they add (and the workflows they start). `false` unless overridden.
    fn is_shared(&self) -> bool {
        false
    }

    /// The ids of the Running workflows that need a step: inbox entries are waiting, or the
    /// workflow never stepped (version 0, started by another process). A stuck workflow
    /// needs a step only once an event arrived after it was marked (R2.4: retried at the
    /// next event, not at every poll). Ordered by id.
    ///
    /// The default reads every Running workflow and leaves stuck ones out altogether;
    /// implementations that remember the inbox position at the mark do better.
    async fn workflows_to_step(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .running_workflows()
            .await?
            .into_iter()
            .filter(|w| w.record.stuck.is_none())
            .filter(|w| !w.inbox.is_empty() || w.record.version == 0)
            .map(|w| w.record.id)
            .collect())
    }
}
