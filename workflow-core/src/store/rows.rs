//! The row forms the SQL stores (SQLite, PostgreSQL) share: how 64-bit unsigned numbers and
//! JSON records are stored, and how rows, read as plain columns, become records.
//!
//! A row that does not decode fails only its own workflow: every column is read leniently
//! (a [`Read`] holds what is wrong with a column instead of failing the read of the table),
//! and each row is decoded on its own. A damaged workflows row still becomes a
//! [`WorkflowRecord`], with the fault in its `stuck`; a damaged task, timer or inbox row
//! becomes a [`WorkflowFault::DamagedRecord`] for its workflow; a damaged history row becomes
//! an [`EventKind::Damaged`] entry in its place.

use super::{
    InboxEntry, Lease, ParentLink, RunningWorkflow, TaskRecord, TimerRecord, WorkflowRecord,
};
use crate::history::{EventKind, HistoryEvent};
use crate::{OpId, StoreError, WorkflowFault, WorkflowStatus};

/// A 64-bit unsigned number, stored bit for bit in a signed `INTEGER`/`BIGINT`.
pub(crate) fn int(n: u64) -> i64 {
    n as i64
}

/// The inverse of [`int`].
pub(crate) fn uint(n: i64) -> u64 {
    n as u64
}

/// A record as the JSON text of a column.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("could not encode a record as JSON: {e}")))
}

/// A column as read: its value, or what is wrong with what is stored there (bytes that are
/// not UTF-8 where JSON is due, text where a number is due, ...), quoting it.
pub(crate) type Read<T> = Result<T, String>;

/// The fault of a workflow whose stored `what` does not read.
pub(crate) fn damaged(what: impl Into<String>, message: impl Into<String>) -> WorkflowFault {
    WorkflowFault::DamagedRecord {
        what: what.into(),
        message: message.into(),
    }
}

/// A stored text as a message quotes it: at most 80 characters.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        format!("{text:?}")
    } else {
        let start: String = text.chars().take(MAX).collect();
        format!("{start:?} (cut)")
    }
}

/// The record a JSON column holds, or the fault naming `what` it is.
fn from_json<T: serde::de::DeserializeOwned>(
    what: &str,
    text: Read<String>,
) -> Result<T, WorkflowFault> {
    let text = text.map_err(|why| damaged(what, why))?;
    serde_json::from_str(&text)
        .map_err(|e| damaged(what, format!("{} does not decode: {e}", excerpt(&text))))
}

/// [`from_json`] for a column that may be NULL.
fn from_json_opt<T: serde::de::DeserializeOwned>(
    what: &str,
    text: Read<Option<String>>,
) -> Result<Option<T>, WorkflowFault> {
    match text {
        Ok(Some(text)) => from_json(what, Ok(text)).map(Some),
        Ok(None) => Ok(None),
        Err(why) => Err(damaged(what, why)),
    }
}

/// A column's value, or the fault naming `what` it is.
fn column<T>(what: &str, value: Read<T>) -> Result<T, WorkflowFault> {
    value.map_err(|why| damaged(what, why))
}

/// A stored status. One this build does not know counts as Running, with the fault saying
/// so: the workflow is kept for the operator, and no worker claims it (claims select on the
/// stored `running`), so nothing of it runs.
pub(crate) fn stored_status(text: &str) -> (WorkflowStatus, Option<WorkflowFault>) {
    match text.parse() {
        Ok(status) => (status, None),
        Err(e) => (WorkflowStatus::Running, Some(damaged("status", e))),
    }
}

/// The first fault found among a workflow's rows.
#[derive(Default)]
pub(crate) struct Damage(Option<WorkflowFault>);

impl Damage {
    /// Notes `fault` unless an earlier one was noted.
    pub(crate) fn note(&mut self, fault: WorkflowFault) {
        self.0.get_or_insert(fault);
    }

    /// The value of `decoded`, or `fallback` with its fault noted.
    fn or<T>(&mut self, decoded: Result<T, WorkflowFault>, fallback: T) -> T {
        decoded.unwrap_or_else(|fault| {
            self.note(fault);
            fallback
        })
    }

    /// The fault, if any.
    pub(crate) fn fault(self) -> Option<WorkflowFault> {
        self.0
    }
}

/// The lease of a row: `Some` while it has an owner.
pub(crate) fn stored_lease(
    owner: Option<String>,
    epoch: i64,
    until_ms: Option<i64>,
) -> Option<Lease> {
    owner.map(|owner| Lease {
        owner,
        epoch: uint(epoch),
        until_ms: until_ms.map_or(0, uint),
    })
}

/// A workflows row as read, before decoding. Columns that are only shown (the id, type,
/// state name, cancel reason, stuck mark, lease owner) and the snapshot are text with any
/// bytes that are not UTF-8 replaced; the others are [`Read`].
pub(crate) struct RawWorkflow {
    pub(crate) id: String,
    pub(crate) workflow_type: String,
    pub(crate) schema: Read<i64>,
    pub(crate) status: String,
    pub(crate) snapshot: String,
    pub(crate) version: Read<i64>,
    pub(crate) state_name: String,
    pub(crate) cancel_reason: Option<String>,
    pub(crate) stuck: Option<String>,
    pub(crate) close: Read<Option<String>>,
    pub(crate) created_at_ms: Read<i64>,
    pub(crate) updated_at_ms: Read<i64>,
    pub(crate) parent_id: Read<Option<String>>,
    pub(crate) parent_op: Read<Option<i64>>,
    pub(crate) owner: Option<String>,
    pub(crate) lease_epoch: Read<i64>,
    pub(crate) lease_until_ms: Read<Option<i64>>,
}

impl RawWorkflow {
    /// The record, and the fault of the first column that does not read, if one does not.
    /// The record is whole either way: a column that does not read takes a neutral value
    /// (0, `None`; an unknown status is Running, see [`stored_status`]), and the fault is
    /// its `stuck`, so that listing and describing show it.
    pub(crate) fn decode(self) -> (WorkflowRecord, Option<WorkflowFault>) {
        let mut damage = Damage::default();
        let (status, unknown) = stored_status(&self.status);
        if let Some(fault) = unknown {
            damage.note(fault);
        }
        // A snapshot that is not JSON must not hide the workflow (or every other one, in
        // `running_workflows`): it is handed on as a string, which the engine fails to decode
        // as a machine state and records as the workflow's error.
        let snapshot = crate::Snapshot::from_json_text(self.snapshot.clone())
            .unwrap_or_else(|_| crate::Snapshot::from(serde_json::Value::String(self.snapshot)));
        let schema = damage.or(column("schema fingerprint", self.schema), 0);
        let version = damage.or(column("version", self.version), 0);
        let close = damage.or(from_json_opt("close", self.close), None);
        let created_at_ms = damage.or(column("creation time", self.created_at_ms), 0);
        let updated_at_ms = damage.or(column("update time", self.updated_at_ms), 0);
        let parent_id = damage.or(column("parent id", self.parent_id), None);
        let parent_op = damage.or(column("parent operation", self.parent_op), None);
        let parent = match (parent_id, parent_op) {
            (Some(workflow_id), Some(op)) => Some(ParentLink {
                workflow_id,
                op: OpId(uint(op)),
            }),
            _ => None,
        };
        let lease_epoch = damage.or(column("lease epoch", self.lease_epoch), 0);
        let lease_until_ms = damage.or(column("lease expiry", self.lease_until_ms), None);
        let lease = stored_lease(self.owner, lease_epoch, lease_until_ms);
        let fault = damage.fault();
        // A mark that does not decode is still a mark: keep its text.
        let stuck = self.stuck.map(|text| {
            serde_json::from_str(&text).unwrap_or(WorkflowFault::Engine { message: text })
        });
        let record = WorkflowRecord {
            id: self.id,
            workflow_type: self.workflow_type,
            schema: uint(schema),
            status,
            snapshot,
            version: uint(version),
            state_name: self.state_name,
            cancel_reason: self.cancel_reason,
            stuck: fault.clone().or(stuck),
            close,
            created_at_ms: uint(created_at_ms),
            updated_at_ms: uint(updated_at_ms),
            parent,
            lease,
        };
        (record, fault)
    }
}

/// A tasks row as read, before decoding.
pub(crate) struct RawTask {
    pub(crate) op: Read<i64>,
    pub(crate) activity: Read<String>,
    pub(crate) input: Read<String>,
    pub(crate) options: Read<String>,
    pub(crate) attempt: Read<i64>,
    pub(crate) heartbeat_details: Read<Option<String>>,
    pub(crate) last_heartbeat_ms: Read<Option<i64>>,
    pub(crate) scheduled_at_ms: Read<i64>,
    pub(crate) cancel_requested: Read<bool>,
    pub(crate) notify_running: Read<bool>,
}

impl RawTask {
    /// The task of workflow `workflow_id`, or the fault naming the first column that does
    /// not read ("activity task op#3 input").
    pub(crate) fn decode(self, workflow_id: &str) -> Result<TaskRecord, WorkflowFault> {
        let op = column("activity task operation number", self.op)?;
        let of = |c: &str| format!("activity task op#{op} {c}");
        Ok(TaskRecord {
            workflow_id: workflow_id.to_string(),
            op: OpId(uint(op)),
            activity: column(&of("activity name"), self.activity)?,
            input: from_json(&of("input"), self.input)?,
            options: from_json(&of("options"), self.options)?,
            attempt: u32::try_from(column(&of("attempt"), self.attempt)?).unwrap_or(u32::MAX),
            heartbeat_details: from_json_opt(&of("heartbeat details"), self.heartbeat_details)?,
            last_heartbeat_ms: column(&of("heartbeat time"), self.last_heartbeat_ms)?.map(uint),
            scheduled_at_ms: uint(column(&of("schedule time"), self.scheduled_at_ms)?),
            cancel_requested: column(&of("cancel flag"), self.cancel_requested)?,
            notify_running: column(&of("cancel notice flag"), self.notify_running)?,
        })
    }
}

/// A timers row as read, before decoding.
pub(crate) struct RawTimer {
    pub(crate) op: Read<i64>,
    pub(crate) fire_at_ms: Read<i64>,
}

impl RawTimer {
    /// The timer of workflow `workflow_id`, or the fault ("timer op#2 deadline").
    pub(crate) fn decode(self, workflow_id: &str) -> Result<TimerRecord, WorkflowFault> {
        let op = column("timer operation number", self.op)?;
        let fire_at_ms = column(&format!("timer op#{op} deadline"), self.fire_at_ms)?;
        Ok(TimerRecord {
            workflow_id: workflow_id.to_string(),
            op: OpId(uint(op)),
            fire_at_ms: uint(fire_at_ms),
        })
    }
}

/// An inbox row as read, before decoding.
pub(crate) struct RawInbox {
    pub(crate) seq: Read<i64>,
    pub(crate) event: Read<String>,
}

impl RawInbox {
    /// The entry, or the fault ("inbox event 17").
    pub(crate) fn decode(self) -> Result<InboxEntry, WorkflowFault> {
        let seq = column("inbox event number", self.seq)?;
        Ok(InboxEntry {
            seq: uint(seq),
            event: from_json(&format!("inbox event {seq}"), self.event)?,
        })
    }
}

/// A history row as read, before decoding.
pub(crate) struct RawHistory {
    pub(crate) seq: Read<i64>,
    pub(crate) at_ms: Read<i64>,
    pub(crate) event: Read<String>,
}

impl RawHistory {
    /// The entry; one that does not read is an [`EventKind::Damaged`] entry in its place
    /// (a number that does not read is 0; an event that does decode is quoted in the
    /// message), so that the rest of the history still shows.
    pub(crate) fn decode(self) -> HistoryEvent {
        let mut damage = Damage::default();
        let seq = damage.or(column("number", self.seq), 0);
        let at_ms = damage.or(column("time", self.at_ms), 0);
        let event: Result<EventKind, WorkflowFault> = from_json("event", self.event);
        let kind = match (damage.fault(), event) {
            (None, Ok(kind)) => kind,
            (Some(fault), Ok(kind)) => EventKind::Damaged {
                message: format!("{} (the entry: {kind})", entry_fault(fault)),
            },
            (Some(fault), Err(_)) | (None, Err(fault)) => EventKind::Damaged {
                message: entry_fault(fault),
            },
        };
        HistoryEvent {
            seq: uint(seq),
            at_ms: uint(at_ms),
            kind,
        }
    }
}

/// What is wrong with a history entry, from the fault of its column.
fn entry_fault(fault: WorkflowFault) -> String {
    match fault {
        WorkflowFault::DamagedRecord { what, message } => format!("its {what}: {message}"),
        other => other.to_string(),
    }
}

/// A Running workflow as read for resuming it, from its decoded row (`record`, and the
/// row's own fault) and its decoded tasks, timers and inbox. When anything of it does not
/// decode, `damaged` holds the first fault and the lists are left empty: nothing of it may
/// be resumed.
pub(crate) fn running(
    record: WorkflowRecord,
    fault: Option<WorkflowFault>,
    tasks: Result<Vec<TaskRecord>, WorkflowFault>,
    timers: Result<Vec<TimerRecord>, WorkflowFault>,
    inbox: Result<Vec<InboxEntry>, WorkflowFault>,
) -> RunningWorkflow {
    let mut damage = Damage(fault);
    let tasks = damage.or(tasks, Vec::new());
    let timers = damage.or(timers, Vec::new());
    let inbox = damage.or(inbox, Vec::new());
    match damage.fault() {
        Some(fault) => RunningWorkflow {
            record,
            tasks: Vec::new(),
            timers: Vec::new(),
            inbox: Vec::new(),
            damaged: Some(fault),
        },
        None => RunningWorkflow {
            record,
            tasks,
            timers,
            inbox,
            damaged: None,
        },
    }
}
