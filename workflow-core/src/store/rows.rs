//! The row forms the SQL stores (SQLite, PostgreSQL) share: how 64-bit unsigned numbers and
//! JSON records are stored, and how a workflows row, read as plain columns, becomes a
//! [`WorkflowRecord`] (a row that does not decode fails only its own workflow).

use super::{Lease, ParentLink, WorkflowRecord};
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

/// A JSON column's record; the error names `what` was stored.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Backend(format!("stored {what} does not decode: {e}")))
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

/// A workflows row as read, before decoding.
pub(crate) struct RawWorkflow {
    pub(crate) id: String,
    pub(crate) workflow_type: String,
    pub(crate) schema: i64,
    pub(crate) status: String,
    pub(crate) snapshot: String,
    pub(crate) version: i64,
    pub(crate) state_name: String,
    pub(crate) cancel_reason: Option<String>,
    pub(crate) stuck: Option<String>,
    pub(crate) close: Option<String>,
    pub(crate) created_at_ms: i64,
    pub(crate) updated_at_ms: i64,
    pub(crate) parent_id: Option<String>,
    pub(crate) parent_op: Option<i64>,
    pub(crate) owner: Option<String>,
    pub(crate) lease_epoch: i64,
    pub(crate) lease_until_ms: Option<i64>,
}

impl RawWorkflow {
    /// The record; an error names the workflow and the column that does not decode.
    pub(crate) fn decode(self) -> Result<WorkflowRecord, StoreError> {
        let status: WorkflowStatus = self.status.parse().map_err(|e| {
            StoreError::Backend(format!("workflow `{}`: stored status {e}", self.id))
        })?;
        // A snapshot that is not JSON must not hide the workflow (or every other one, in
        // `running_workflows`): it is handed on as a string, which the engine fails to decode
        // as a machine state and records as the workflow's error.
        let snapshot = crate::Snapshot::from_json_text(self.snapshot.clone())
            .unwrap_or_else(|_| crate::Snapshot::from(serde_json::Value::String(self.snapshot)));
        let close = match self.close {
            Some(text) => Some(from_json(
                &text,
                &format!("close of workflow `{}`", self.id),
            )?),
            None => None,
        };
        let parent = match (self.parent_id, self.parent_op) {
            (Some(workflow_id), Some(op)) => Some(ParentLink {
                workflow_id,
                op: OpId(uint(op)),
            }),
            _ => None,
        };
        let lease = stored_lease(self.owner, self.lease_epoch, self.lease_until_ms);
        Ok(WorkflowRecord {
            id: self.id,
            workflow_type: self.workflow_type,
            schema: uint(self.schema),
            status,
            snapshot,
            version: uint(self.version),
            state_name: self.state_name,
            cancel_reason: self.cancel_reason,
            // A mark that does not decode is still a mark: keep its text.
            stuck: self.stuck.map(|text| {
                serde_json::from_str(&text).unwrap_or(WorkflowFault::Engine { message: text })
            }),
            close,
            created_at_ms: uint(self.created_at_ms),
            updated_at_ms: uint(self.updated_at_ms),
            parent,
            lease,
        })
    }
}
