//! [`MemoryStore`]: all tables in one mutex-guarded value.

use super::{
    check_fence, Fence, InboxEntry, Lease, LeaseRequest, NewWorkflow, Purge, RunningWorkflow,
    StepCommit, Store, TaskRecord, TimerRecord, WorkflowClose, WorkflowRecord,
};
use crate::history::{EventKind, HistoryEvent};
use crate::{Event, OpId, StoreError, WorkflowFault, WorkflowStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The in-memory [`Store`]. Nothing survives the process, except through
/// [`to_bytes`](MemoryStore::to_bytes) / [`from_bytes`](MemoryStore::from_bytes), which copy
/// all tables; tests use them to prove that a workflow resumes in a fresh engine.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Tables {
    workflows: BTreeMap<String, WorkflowRecord>,
    history: BTreeMap<String, Vec<HistoryEvent>>,
    inbox: BTreeMap<String, Vec<InboxEntry>>,
    next_inbox_seq: u64,
    tasks: BTreeMap<String, Vec<TaskRecord>>,
    timers: BTreeMap<String, Vec<TimerRecord>>,
    /// The lease epoch of each workflow that was ever leased (it outlives the lease).
    #[serde(default)]
    epochs: BTreeMap<String, u64>,
}

/// The store's clock for leases: the system's, in ms since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// All tables, serialized as JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        let tables = self.lock().clone();
        match serde_json::to_vec(&tables) {
            Ok(bytes) => bytes,
            Err(e) => {
                // Every key is a string and every value plain data, so this cannot happen;
                // an empty result makes `from_bytes` fail loudly rather than lose data quietly.
                tracing::error!("could not serialize the memory store: {e}");
                Vec::new()
            }
        }
    }

    /// A store holding the tables serialized by [`to_bytes`](MemoryStore::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<MemoryStore, StoreError> {
        let tables: Tables = serde_json::from_slice(bytes).map_err(|e| {
            StoreError::Backend(format!("the memory store bytes do not decode: {e}"))
        })?;
        Ok(MemoryStore {
            tables: Mutex::new(tables),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Tables {
    fn workflow(&self, id: &str) -> Result<&WorkflowRecord, StoreError> {
        self.workflows
            .get(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    fn running_mut(&mut self, id: &str) -> Result<&mut WorkflowRecord, StoreError> {
        let rec = self
            .workflows
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        if rec.status != WorkflowStatus::Running {
            return Err(StoreError::AlreadyClosed {
                id: id.to_string(),
                status: rec.status,
            });
        }
        Ok(rec)
    }

    fn append_history(
        &mut self,
        id: &str,
        at_ms: u64,
        events: impl IntoIterator<Item = EventKind>,
    ) {
        let history = self.history.entry(id.to_string()).or_default();
        for kind in events {
            let seq = history.len() as u64 + 1;
            history.push(HistoryEvent { seq, at_ms, kind });
        }
    }

    fn push_inbox(&mut self, id: &str, event: Event) -> u64 {
        self.next_inbox_seq += 1;
        let seq = self.next_inbox_seq;
        self.inbox
            .entry(id.to_string())
            .or_default()
            .push(InboxEntry { seq, event });
        seq
    }

    /// Inserts a Running workflow and its `WorkflowStarted` event.
    fn insert_workflow(&mut self, workflow: NewWorkflow) -> Result<(), StoreError> {
        if self.workflows.contains_key(&workflow.id) {
            return Err(StoreError::AlreadyExists(workflow.id));
        }
        let lease = workflow
            .lease
            .as_ref()
            .map(|l| self.lease_to(&workflow.id, l, now_ms()));
        let record = WorkflowRecord {
            id: workflow.id.clone(),
            workflow_type: workflow.workflow_type.clone(),
            schema: workflow.schema,
            status: WorkflowStatus::Running,
            snapshot: workflow.snapshot,
            version: 0,
            state_name: workflow.state_name,
            cancel_reason: None,
            stuck: None,
            close: None,
            created_at_ms: workflow.at_ms,
            updated_at_ms: workflow.at_ms,
            parent: workflow.parent,
            lease,
        };
        self.workflows.insert(workflow.id.clone(), record);
        self.history.insert(workflow.id.clone(), Vec::new());
        self.append_history(
            &workflow.id,
            workflow.at_ms,
            [EventKind::WorkflowStarted {
                workflow: workflow.workflow_type,
                input: workflow.input,
            }],
        );
        Ok(())
    }

    fn drop_runtime_rows(&mut self, id: &str) {
        self.inbox.remove(id);
        self.tasks.remove(id);
        self.timers.remove(id);
    }

    /// Checks `fence` against the stored lease of `id` (a missing workflow passes: the
    /// write itself reports it).
    fn check_fence(&self, id: &str, fence: Option<&Fence>) -> Result<(), StoreError> {
        match self.workflows.get(id) {
            Some(rec) => check_fence(id, rec.lease.as_ref(), fence),
            None => Ok(()),
        }
    }

    /// Gives `id` to `lease.owner` with the next epoch.
    fn lease_to(&mut self, id: &str, lease: &LeaseRequest, now: u64) -> Lease {
        let epoch = self.epochs.entry(id.to_string()).or_default();
        *epoch += 1;
        Lease {
            owner: lease.owner.clone(),
            epoch: *epoch,
            until_ms: now.saturating_add(lease.duration_ms),
        }
    }

    fn running_workflow(&self, record: &WorkflowRecord) -> RunningWorkflow {
        RunningWorkflow {
            record: record.clone(),
            tasks: self.tasks.get(&record.id).cloned().unwrap_or_default(),
            timers: self.timers.get(&record.id).cloned().unwrap_or_default(),
            inbox: self.inbox.get(&record.id).cloned().unwrap_or_default(),
            damaged: None,
        }
    }

    fn task_mut(&mut self, id: &str, op: OpId) -> Option<&mut TaskRecord> {
        self.tasks
            .get_mut(id)
            .and_then(|tasks| tasks.iter_mut().find(|t| t.op == op))
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn create_workflow(&self, workflow: NewWorkflow) -> Result<(), StoreError> {
        self.lock().insert_workflow(workflow)
    }

    async fn load_workflow(&self, id: &str) -> Result<WorkflowRecord, StoreError> {
        self.lock().workflow(id).cloned()
    }

    async fn load_for_step(
        &self,
        id: &str,
        cached: Option<u64>,
    ) -> Result<(WorkflowRecord, Vec<InboxEntry>), StoreError> {
        let mut t = self.lock();
        let rec = t
            .workflows
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let record = if cached == Some(rec.version) {
            // Cloned without its snapshot, which the engine does not need.
            let snapshot = std::mem::take(&mut rec.snapshot);
            let record = rec.clone();
            rec.snapshot = snapshot;
            record
        } else {
            rec.clone()
        };
        let inbox = t.inbox.get(id).cloned().unwrap_or_default();
        Ok((record, inbox))
    }

    async fn list_workflows(
        &self,
        status: Option<WorkflowStatus>,
    ) -> Result<Vec<WorkflowRecord>, StoreError> {
        Ok(self
            .lock()
            .workflows
            .values()
            .filter(|w| status.is_none_or(|s| w.status == s))
            .cloned()
            .collect())
    }

    async fn enqueue_event(&self, id: &str, event: Event) -> Result<u64, StoreError> {
        let mut t = self.lock();
        t.running_mut(id)?;
        Ok(t.push_inbox(id, event))
    }

    async fn read_inbox(&self, id: &str) -> Result<Vec<InboxEntry>, StoreError> {
        let t = self.lock();
        t.workflow(id)?;
        Ok(t.inbox.get(id).cloned().unwrap_or_default())
    }

    async fn request_cancel(&self, id: &str, reason: &str) -> Result<bool, StoreError> {
        let mut t = self.lock();
        let rec = t.running_mut(id)?;
        if rec.cancel_reason.is_some() {
            return Ok(false);
        }
        rec.cancel_reason = Some(reason.to_string());
        t.push_inbox(
            id,
            Event::CancelRequested {
                reason: reason.to_string(),
            },
        );
        Ok(true)
    }

    async fn commit_step(&self, commit: StepCommit) -> Result<u64, StoreError> {
        let mut t = self.lock();
        let id = commit.workflow_id.as_str();
        t.check_fence(id, commit.fence.as_ref())?;
        let rec = t.running_mut(id)?;
        if rec.version != commit.expected_version {
            return Err(StoreError::Conflict {
                id: id.to_string(),
                expected: commit.expected_version,
                found: rec.version,
            });
        }
        rec.version += 1;
        let version = rec.version;
        rec.snapshot = commit.snapshot;
        rec.state_name = commit.state_name;
        rec.stuck = None;
        rec.updated_at_ms = commit.at_ms;
        let closing = commit.close.is_some();
        if let Some(close) = commit.close {
            rec.status = close.status();
            rec.close = Some(close);
            rec.lease = None;
        }
        t.append_history(id, commit.at_ms, commit.history);
        for child in commit.new_workflows {
            // An id already taken is left alone; the engine reads it back.
            let _ = t.insert_workflow(child);
        }
        for (other, event) in commit.outbox {
            if t.running_mut(&other).is_ok() {
                t.push_inbox(&other, event);
            }
        }
        if closing {
            t.drop_runtime_rows(id);
            return Ok(version);
        }
        if let Some(inbox) = t.inbox.get_mut(id) {
            inbox.retain(|e| !commit.consumed_inbox.contains(&e.seq));
        }
        let tasks = t.tasks.entry(id.to_string()).or_default();
        for task in commit.new_tasks {
            tasks.retain(|t| t.op != task.op);
            tasks.push(task);
        }
        for cancel in &commit.cancelled_tasks {
            if let Some(task) = tasks.iter_mut().find(|t| t.op == cancel.op) {
                task.cancel_requested = true;
                task.notify_running |= cancel.notify_running;
            }
        }
        tasks.retain(|t| !commit.removed_tasks.contains(&t.op));
        let timers = t.timers.entry(id.to_string()).or_default();
        for timer in commit.new_timers {
            timers.retain(|t| t.op != timer.op);
            timers.push(timer);
        }
        timers.retain(|t| !commit.removed_timers.contains(&t.op));
        Ok(version)
    }

    async fn record_task_attempt(
        &self,
        workflow_id: &str,
        op: OpId,
        attempt: u32,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let mut t = self.lock();
        t.check_fence(workflow_id, fence)?;
        match t.task_mut(workflow_id, op) {
            Some(task) => {
                task.attempt = attempt;
                Ok(())
            }
            // Its workflow closed (or was terminated) and dropped its tasks.
            None => Err(StoreError::NotFound(format!(
                "task {op} of workflow `{workflow_id}`"
            ))),
        }
    }

    async fn record_heartbeat(
        &self,
        workflow_id: &str,
        op: OpId,
        details: Option<serde_json::Value>,
        at_ms: u64,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let mut t = self.lock();
        t.check_fence(workflow_id, fence)?;
        if let Some(task) = t.task_mut(workflow_id, op) {
            if details.is_some() {
                task.heartbeat_details = details;
            }
            task.last_heartbeat_ms = Some(at_ms);
        }
        Ok(())
    }

    async fn set_stuck(
        &self,
        id: &str,
        fault: Option<WorkflowFault>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let mut t = self.lock();
        if t.workflow(id)?.status == WorkflowStatus::Running {
            t.check_fence(id, fence)?;
        }
        match t.running_mut(id) {
            Ok(rec) => {
                rec.stuck = fault;
                Ok(())
            }
            Err(StoreError::AlreadyClosed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn purge_closed(&self, purge: &Purge) -> Result<Vec<String>, StoreError> {
        let mut t = self.lock();
        let mut found: Vec<(u64, String)> = t
            .workflows
            .values()
            .filter(|r| purge.matches(r))
            .map(|r| (r.updated_at_ms, r.id.clone()))
            .collect();
        found.sort();
        found.truncate(purge.limit);
        let ids: Vec<String> = found.into_iter().map(|(_, id)| id).collect();
        if !purge.dry_run {
            for record in t.workflows.values_mut() {
                if record
                    .parent
                    .as_ref()
                    .is_some_and(|p| ids.contains(&p.workflow_id))
                {
                    record.parent = None;
                }
            }
            for id in &ids {
                t.workflows.remove(id);
                t.history.remove(id);
                t.inbox.remove(id);
                t.tasks.remove(id);
                t.timers.remove(id);
                // A new workflow with the id starts at the first epoch, as in the SQL stores.
                t.epochs.remove(id);
            }
        }
        Ok(ids)
    }

    async fn terminate(&self, id: &str, reason: &str, at_ms: u64) -> Result<(), StoreError> {
        let mut t = self.lock();
        let rec = t.running_mut(id)?;
        rec.status = WorkflowStatus::Terminated;
        rec.close = Some(WorkflowClose::Terminated {
            reason: reason.to_string(),
        });
        rec.lease = None;
        rec.updated_at_ms = at_ms;
        t.append_history(
            id,
            at_ms,
            [EventKind::WorkflowTerminated {
                reason: reason.to_string(),
            }],
        );
        t.drop_runtime_rows(id);
        Ok(())
    }

    async fn running_workflows(&self) -> Result<Vec<RunningWorkflow>, StoreError> {
        let t = self.lock();
        Ok(t.workflows
            .values()
            .filter(|w| w.status == WorkflowStatus::Running)
            .map(|w| t.running_workflow(w))
            .collect())
    }

    async fn workflows_to_step(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        let t = self.lock();
        Ok(t.workflows
            .values()
            .filter(|w| w.status == WorkflowStatus::Running && w.stuck.is_none())
            .filter(|w| w.lease.as_ref().is_some_and(|l| l.owner == owner))
            .filter(|w| w.version == 0 || t.inbox.get(&w.id).is_some_and(|i| !i.is_empty()))
            .map(|w| w.id.clone())
            .collect())
    }

    async fn claim_workflows(
        &self,
        lease: &LeaseRequest,
        limit: usize,
    ) -> Result<Vec<RunningWorkflow>, StoreError> {
        let now = now_ms();
        let mut t = self.lock();
        let free: Vec<String> = t
            .workflows
            .values()
            .filter(|w| w.status == WorkflowStatus::Running)
            .filter(|w| w.lease.as_ref().is_none_or(|l| l.until_ms <= now))
            .take(limit)
            .map(|w| w.id.clone())
            .collect();
        let mut claimed = Vec::with_capacity(free.len());
        for id in free {
            let granted = t.lease_to(&id, lease, now);
            let Some(rec) = t.workflows.get_mut(&id) else {
                continue;
            };
            rec.lease = Some(granted);
            let rec = rec.clone();
            claimed.push(t.running_workflow(&rec));
        }
        Ok(claimed)
    }

    async fn renew_leases(&self, lease: &LeaseRequest) -> Result<Vec<(String, u64)>, StoreError> {
        let until_ms = now_ms().saturating_add(lease.duration_ms);
        let mut t = self.lock();
        Ok(t.workflows
            .values_mut()
            .filter(|w| w.status == WorkflowStatus::Running)
            .filter_map(|w| match &mut w.lease {
                Some(l) if l.owner == lease.owner => {
                    l.until_ms = until_ms;
                    Some((w.id.clone(), l.epoch))
                }
                _ => None,
            })
            .collect())
    }

    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let mut t = self.lock();
        let mut released = 0;
        for w in t.workflows.values_mut() {
            if w.lease.as_ref().is_some_and(|l| l.owner == owner) {
                w.lease = None;
                released += 1;
            }
        }
        Ok(released)
    }

    async fn release_lease(&self, id: &str, fence: &Fence) -> Result<bool, StoreError> {
        let mut t = self.lock();
        let Some(w) = t.workflows.get_mut(id) else {
            return Ok(false);
        };
        let ours = w
            .lease
            .as_ref()
            .is_some_and(|l| l.owner == fence.owner && l.epoch == fence.epoch);
        if ours {
            w.lease = None;
        }
        Ok(ours)
    }

    async fn tasks(&self, id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let t = self.lock();
        t.workflow(id)?;
        let mut tasks = t.tasks.get(id).cloned().unwrap_or_default();
        tasks.sort_by_key(|t| t.op);
        Ok(tasks)
    }

    async fn history(&self, id: &str) -> Result<Vec<HistoryEvent>, StoreError> {
        let t = self.lock();
        t.workflow(id)?;
        Ok(t.history.get(id).cloned().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    #[tokio::test]
    async fn memory_store_keeps_the_store_contract() {
        contract::check_all(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn bytes_round_trip() {
        let store = MemoryStore::new();
        contract::terminate_closes(&store).await;
        let copy = MemoryStore::from_bytes(&store.to_bytes()).unwrap();
        contract::after_terminate_closes(&copy).await;
        assert!(MemoryStore::from_bytes(b"not json").is_err());
    }
}
