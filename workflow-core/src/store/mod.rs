//! Durable storage of workflows: the [`Store`] trait, the plain records it reads and writes,
//! and [`MemoryStore`], the in-memory implementation.
//!
//! See [`Store`] for the tables.
//!
//! Every method that changes more than one table does so atomically (one transaction).
//!
//! # Leases and fencing (several workers on one store)
//!
//! Any number of engines ("workers") may run on one store; each workflow is stepped by one of
//! them at a time. The protocol, which every implementation keeps the same way:
//!
//! - A Running workflow row carries a **lease**: its owner (a worker id, unique per process),
//!   an expiry on the *store's* clock (so workers on machines with skewed clocks agree), and an
//!   **epoch** that grows by one at every claim. A row with no owner, or whose lease expired,
//!   can be claimed ([`Store::claim_workflows`]); claims are atomic, so two workers never get
//!   the same row, and each claim hands the worker a [`Fence`] (owner and epoch).
//! - The owner renews all its leases in one write ([`Store::renew_leases`]) well before they
//!   expire, and learns from the answer which it still holds; one it no longer holds (taken
//!   over while it was frozen, partitioned or slow) it drops at once.
//! - **Every write a worker makes on behalf of a workflow it steps carries its fence**: a step's
//!   commit, an activity attempt, a heartbeat, a stuck mark. The store applies it only while
//!   the row's owner and epoch are still the fence's; otherwise it refuses it with
//!   [`StoreError::LeaseLost`] and changes nothing. Expiry alone does not refuse a write: a
//!   lease that expired but that nobody claimed still fences, since no one else wrote. A worker that was taken over therefore
//!   cannot commit a step, record an activity's result (results are committed by steps) or
//!   fire a timer (a fired timer is committed by a step), however late it wakes up.
//! - Writes that are not a worker's own (a client's start, cancel, terminate, an event for
//!   another workflow's inbox) are not fenced: they are requests, and the owner applies them
//!   in its next step.
//! - A worker that stops gracefully releases its leases ([`Store::release_leases`]) so
//!   another claims them at once; a worker that dies is taken over when its leases expire.
//! - Activities run on the worker that holds their workflow. A worker that claims a workflow
//!   dispatches again the activity tasks that were in flight (activities are at-least-once);
//!   a taken-over worker's attempts are stopped at their next fenced write.

#[cfg(test)]
pub(crate) mod contract;
mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod rows;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore};

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
    /// The worker holding the workflow, while one does (see the module's "Leases and
    /// fencing"). `None` for a closed workflow and for one no worker has claimed yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// A worker's lease on a workflow, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The worker id.
    pub owner: String,
    /// The number of claims the workflow has seen; this holder's fence.
    pub epoch: u64,
    /// When the lease expires unless renewed, on the store's clock (ms since the Unix epoch).
    pub until_ms: u64,
}

impl Lease {
    /// The fence this lease gives its holder's writes.
    pub fn fence(&self) -> Fence {
        Fence {
            owner: self.owner.clone(),
            epoch: self.epoch,
        }
    }
}

/// What a worker's write carries so that the store can refuse it once the worker no longer
/// holds the workflow: the owner and epoch of the lease it was given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    /// The worker id.
    pub owner: String,
    /// The lease's epoch.
    pub epoch: u64,
}

/// What a worker asks for when it claims or renews leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// The worker id (unique per process).
    pub owner: String,
    /// How long the lease lasts from the store's now, in ms.
    pub duration_ms: u64,
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
    /// Set when a worker creates it (a child, or a start through the worker's own client):
    /// the row is created leased to that worker with epoch 1, so it steps it at once. A
    /// client that is not a worker leaves it unowned for a worker to claim.
    #[serde(default)]
    pub lease: Option<LeaseRequest>,
}

/// Which closed workflows [`Store::purge_closed`] deletes (retention, and reusing the id of
/// a closed workflow). A Running workflow is never deleted, whatever the filter says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purge {
    /// Only workflows that closed before this time, ms since the Unix epoch (a closed row's
    /// last update is its close).
    pub closed_before_ms: u64,
    /// Only the workflow with this id.
    #[serde(default)]
    pub id: Option<String>,
    /// Only workflows closed with one of these statuses; empty for any closed status.
    #[serde(default)]
    pub statuses: Vec<crate::WorkflowStatus>,
    /// At most this many, the ones that closed first.
    pub limit: usize,
    /// Only say which would be deleted.
    #[serde(default)]
    pub dry_run: bool,
}

impl Purge {
    /// How many workflows one purge deletes by default: big enough to keep up, small enough
    /// that one transaction does not hold the store for long.
    pub const BATCH: usize = 1000;

    /// The closed workflows that closed before `closed_before_ms`, a batch at a time.
    pub fn closed_before(closed_before_ms: u64) -> Purge {
        Purge {
            closed_before_ms,
            id: None,
            statuses: Vec::new(),
            limit: Purge::BATCH,
            dry_run: false,
        }
    }

    /// The purge that makes way for a new workflow with the id of closed workflow `id`, as
    /// `policy` allows; `None` when it allows none.
    pub fn to_reuse(id: &str, policy: crate::IdReusePolicy) -> Option<Purge> {
        let statuses = policy.reusable_statuses();
        (!statuses.is_empty()).then(|| Purge {
            closed_before_ms: u64::MAX,
            id: Some(id.to_string()),
            statuses,
            limit: 1,
            dry_run: false,
        })
    }

    /// Whether the workflow `record` is one this purge deletes (the limit aside).
    pub fn matches(&self, record: &WorkflowRecord) -> bool {
        record.status.is_closed()
            && record.updated_at_ms < self.closed_before_ms
            && self.id.as_ref().is_none_or(|id| *id == record.id)
            && (self.statuses.is_empty() || self.statuses.contains(&record.status))
    }

    /// The cutoff as a SQL `BIGINT` (a cutoff past `i64::MAX` ms is no cutoff at all).
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn closed_before_sql(&self) -> i64 {
        i64::try_from(self.closed_before_ms).unwrap_or(i64::MAX)
    }

    /// The statuses to delete, as stored (every closed status when the filter is empty).
    pub(crate) fn status_names(&self) -> Vec<&'static str> {
        use crate::WorkflowStatus::*;
        let all = [Completed, Canceled, Failed, Terminated];
        all.into_iter()
            .filter(|s| self.statuses.is_empty() || self.statuses.contains(s))
            .map(crate::WorkflowStatus::as_str)
            .collect()
    }
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
    /// The stepping worker's fence; `None` commits unfenced (a single engine on a store
    /// nobody else writes, and tests). See the module's "Leases and fencing".
    #[serde(default)]
    pub fence: Option<Fence>,
    /// Child workflows this step starts, created in the same transaction (as
    /// [`Store::create_workflow`] would, their `lease` included), so that a worker dying
    /// right after the step loses no start. A child whose id is already taken is left
    /// alone (the engine reads it back and tells the parent).
    #[serde(default)]
    pub new_workflows: Vec<NewWorkflow>,
    /// Events for other workflows' inboxes, added in the same transaction (a closing child's
    /// outcome for its parent), so that none is lost to a crash after the step. An event for
    /// a workflow that is closed or gone is dropped; one for a workflow held by another
    /// worker wakes it (a hint).
    #[serde(default)]
    pub outbox: Vec<(String, Event)>,
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
    /// Set when something stored for the workflow does not read (its row, a task, a timer,
    /// an inbox entry): the first such fault, a [`WorkflowFault::DamagedRecord`]. `tasks`,
    /// `timers` and `inbox` are then empty, since nothing of it may be resumed from a
    /// partial read; the engine marks it stuck with this fault instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damaged: Option<WorkflowFault>,
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
/// workflow, [`StoreError::LeaseLost`] for a fenced write of a worker that no longer holds the
/// workflow (checked before anything else of the write), [`StoreError::Damaged`] where a row
/// of the workflow that the method must decode does not read, [`StoreError::Backend`] for
/// everything the backend itself reports.
///
/// # Damaged rows
///
/// A row that does not read (changed behind the store's back: not JSON, not UTF-8, not a
/// number, an unknown status) fails only its own workflow, never a method's answer about
/// other workflows:
/// - a workflows row still reads as a [`WorkflowRecord`] (in [`load_workflow`],
///   [`list_workflows`] and the others), a column that does not read taking a neutral value
///   and its fault ([`WorkflowFault::DamagedRecord`]) put in `stuck`; an unknown status reads
///   as Running, and such a workflow is claimed by nobody but can be terminated;
/// - [`running_workflows`] and [`claim_workflows`] return a workflow whose row, tasks,
///   timers or inbox do not read with [`RunningWorkflow::damaged`] set;
/// - [`load_for_step`] (for a Running workflow), [`read_inbox`] and [`tasks`] answer
///   [`StoreError::Damaged`] for the workflow;
/// - [`history`] shows an entry that does not read as [`EventKind::Damaged`], in its place.
///
/// [`load_workflow`]: Store::load_workflow
/// [`list_workflows`]: Store::list_workflows
/// [`running_workflows`]: Store::running_workflows
/// [`claim_workflows`]: Store::claim_workflows
/// [`load_for_step`]: Store::load_for_step
/// [`read_inbox`]: Store::read_inbox
/// [`tasks`]: Store::tasks
/// [`history`]: Store::history
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
    ///
    /// [`StoreError::Damaged`] when the row of a Running workflow, or one of its inbox
    /// entries, does not read (see the trait's "Damaged rows").
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

    /// The inbox of a workflow, in arrival order; [`StoreError::Damaged`] if an entry does
    /// not read.
    async fn read_inbox(&self, id: &str) -> Result<Vec<InboxEntry>, StoreError>;

    /// Records a cancel request: sets the reason on the workflow row and enqueues
    /// [`Event::CancelRequested`], atomically. Returns `true` if this was the first request;
    /// a second request changes nothing and returns `false` (R1.4).
    async fn request_cancel(&self, id: &str, reason: &str) -> Result<bool, StoreError>;

    /// Commits one step atomically; returns the new version. See [`StepCommit`]. A commit
    /// that closes the workflow also ends its lease.
    async fn commit_step(&self, commit: StepCommit) -> Result<u64, StoreError>;

    /// Records that `attempt` of a task is about to start. `StoreError::NotFound` if the task
    /// no longer exists (its workflow closed or was terminated): the attempt must not run.
    /// Fenced like a commit when `fence` is given (a closed workflow has no lease, so a fenced
    /// call answers `LeaseLost` for it: the attempt must not run either).
    async fn record_task_attempt(
        &self,
        workflow_id: &str,
        op: OpId,
        attempt: u32,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError>;

    /// Records a heartbeat of a task: its details and time. Ignored if the task no longer
    /// exists. Fenced like a commit when `fence` is given.
    async fn record_heartbeat(
        &self,
        workflow_id: &str,
        op: OpId,
        details: Option<serde_json::Value>,
        at_ms: u64,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError>;

    /// Marks a Running workflow as stuck (R2.4), or clears the mark with `None`. Ignored
    /// for a closed workflow. Fenced like a commit when `fence` is given.
    async fn set_stuck(
        &self,
        id: &str,
        fault: Option<WorkflowFault>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError>;

    /// Closes a Running workflow as Terminated, appends `WorkflowTerminated`, deletes its
    /// inbox, tasks and timers, and ends its lease.
    async fn terminate(&self, id: &str, reason: &str, at_ms: u64) -> Result<(), StoreError>;

    /// Deletes the closed workflows `purge` selects, with their history, at most
    /// `purge.limit`, those that closed first; returns their ids. With `purge.dry_run`,
    /// deletes nothing and returns the ids it would delete, those that closed first first.
    /// Never deletes a Running workflow. Workflows whose parent is deleted lose their parent
    /// link (their outcome reaches nobody, and never a new workflow that reuses the id).
    async fn purge_closed(&self, purge: &Purge) -> Result<Vec<String>, StoreError>;

    /// Every Running workflow with its tasks, timers and inbox (for recovery at start-up).
    async fn running_workflows(&self) -> Result<Vec<RunningWorkflow>, StoreError>;

    /// The activity tasks of a workflow, by operation id; [`StoreError::Damaged`] if one does
    /// not read.
    async fn tasks(&self, id: &str) -> Result<Vec<TaskRecord>, StoreError>;

    /// The history of a workflow, in order; an entry that does not read is shown as
    /// [`EventKind::Damaged`] in its place.
    async fn history(&self, id: &str) -> Result<Vec<HistoryEvent>, StoreError>;

    /// Whether other processes may write to this store (a `wf cancel` from another terminal,
    /// another worker). `false` unless overridden.
    fn is_shared(&self) -> bool {
        false
    }

    /// The ids of the Running workflows held by `owner` that need a step: inbox entries are
    /// waiting, or the workflow never stepped (version 0). A stuck workflow needs a step
    /// only once an event arrived after it was marked (R2.4: retried at the next event, not
    /// at every poll). Ordered by id.
    async fn workflows_to_step(&self, owner: &str) -> Result<Vec<String>, StoreError>;

    /// Claims up to `limit` Running workflows for `lease.owner`: those no worker holds, and
    /// those whose lease expired on the store's clock (`until_ms <= now`). Each claimed row gets the owner, an
    /// expiry `lease.duration_ms` from now, and its epoch plus one; two concurrent claims
    /// never return the same workflow. Returns them with everything needed to resume them
    /// (as [`running_workflows`](Store::running_workflows)), `record.lease` set.
    async fn claim_workflows(
        &self,
        lease: &LeaseRequest,
        limit: usize,
    ) -> Result<Vec<RunningWorkflow>, StoreError>;

    /// Extends every lease `lease.owner` holds on a Running workflow to `lease.duration_ms`
    /// from now (one write, whatever the number of workflows) and returns those workflows,
    /// with their epochs. A lease that expired but was not claimed by anyone is renewed too
    /// (no one else wrote in between). A workflow the caller believes it holds and that is missing here, or comes
    /// back with another epoch, was taken over.
    async fn renew_leases(&self, lease: &LeaseRequest) -> Result<Vec<(String, u64)>, StoreError>;

    /// Gives up every lease `owner` holds (graceful shutdown), so that other workers claim
    /// them at once. Returns how many were released.
    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError>;

    /// Gives up one lease, if the row is still leased under `fence` (owner and epoch), so
    /// that any worker claims the workflow; whether it was. A worker calls it for a lease the
    /// store says it owns but that it does not hold in memory, so that no row stays owned,
    /// renewed and never stepped.
    async fn release_lease(&self, id: &str, fence: &Fence) -> Result<bool, StoreError>;

    /// Hints that the store changed, for engines and clients to wait on instead of polling
    /// (`LISTEN/NOTIFY` on PostgreSQL, a cheap change counter on SQLite). Only a hint: a
    /// receiver re-reads what it cares about, and keeps a slow poll behind it. `None` when
    /// the store has no way to tell (nobody else writes to it).
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<StoreChange>> {
        None
    }
}

/// A hint from [`Store::changes`]: what changed, so that each receiver does only the work
/// the change asks of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChange {
    /// A workflow no worker holds appeared (started by a client that is not a worker, or
    /// released by a worker that stopped): workers claim.
    Claimable,
    /// An event arrived for this workflow (a cancel request, a child's outcome, ...): its
    /// holder steps it.
    Event(String),
    /// This workflow closed: clients awaiting its outcome read it.
    Closed(String),
    /// Something changed; the store cannot say what (or hints were lost): look at
    /// everything.
    Any,
}

/// The fence check every implementation makes, on the stored lease of a workflow: `Ok` when
/// the write may proceed.
pub(crate) fn check_fence(
    id: &str,
    stored: Option<&Lease>,
    fence: Option<&Fence>,
) -> Result<(), StoreError> {
    let Some(fence) = fence else { return Ok(()) };
    match stored {
        Some(lease) if lease.owner == fence.owner && lease.epoch == fence.epoch => Ok(()),
        _ => Err(StoreError::LeaseLost {
            id: id.to_string(),
            owner: fence.owner.clone(),
            epoch: fence.epoch,
            holder: stored.map(|l| (l.owner.clone(), l.epoch)),
        }),
    }
}

/// Opens the store a location names, as `WF_DB`, `--db`, [`EngineBuilder::location`] and
/// [`Client::connect`](crate::Client::connect) take it: a `postgres://` (or `postgresql://`)
/// URL, or else the path of a SQLite file (created if needed).
///
/// [`EngineBuilder::location`]: crate::EngineBuilder::location
pub async fn open_location(location: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if is_postgres_url(location) {
        #[cfg(feature = "postgres")]
        return Ok(std::sync::Arc::new(
            crate::store::postgres::PostgresStore::connect(location).await?,
        ));
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::Backend(
            "this build has no PostgreSQL support; enable the `postgres` feature of \
             workflow-core"
                .to_string(),
        ));
    }
    #[cfg(feature = "sqlite")]
    return Ok(std::sync::Arc::new(
        crate::store::sqlite::SqliteStore::open(location)?,
    ));
    #[cfg(not(feature = "sqlite"))]
    Err(StoreError::Backend(format!(
        "`{location}` is not a postgres:// URL, and this build has no SQLite support; enable \
         the `sqlite` feature of workflow-core"
    )))
}

/// Whether `location` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}
