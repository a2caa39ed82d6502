//! Recovery at `build`: resumes every Running workflow found in the store.

use super::runner::ActivityJob;
use super::EngineInner;
use crate::{Event, OpId, StoreError};
use std::collections::HashSet;
use std::sync::Arc;

impl EngineInner {
    /// For every Running workflow: re-arms its timers from the stored deadlines, dispatches
    /// again the activity tasks that were in flight (at least once: the interrupted attempt
    /// runs again, with the heartbeat details it recorded), steps it if events wait in its
    /// inbox or it never stepped, and reconciles its children (R7).
    pub(crate) async fn recover(self: &Arc<Self>) -> Result<(), StoreError> {
        let running = self.store.running_workflows().await?;
        if !running.is_empty() {
            tracing::info!(workflows = running.len(), "recovering running workflows");
        }
        for workflow in running {
            let id = workflow.record.id.as_str();
            for timer in &workflow.timers {
                self.start_timer(id, timer.op, timer.fire_at_ms);
            }
            // A task whose result already waits in the inbox finished; do not run it again.
            let reported: HashSet<OpId> = workflow
                .inbox
                .iter()
                .filter_map(|entry| match &entry.event {
                    Event::ActivityCompleted { op, .. } | Event::ActivityFailed { op, .. } => {
                        Some(*op)
                    }
                    _ => None,
                })
                .collect();
            for task in workflow.tasks {
                if reported.contains(&task.op) {
                    continue;
                }
                self.start_activity(ActivityJob {
                    workflow_id: task.workflow_id,
                    op: task.op,
                    activity: task.activity,
                    input: task.input,
                    options: task.options,
                    first_attempt: task.attempt.max(1),
                    previous_details: task.heartbeat_details,
                    // A task cancelled before the restart never starts again (R6.1).
                    cancel: task.cancel_requested.then_some(task.notify_running),
                });
            }
            if !workflow.inbox.is_empty() || workflow.record.version == 0 {
                self.notify(id);
            }
            // Children and cancels of other workflows whose answers may have been lost.
            if let Some(instance) = super::stored_instance(&workflow.record.snapshot) {
                let inner = self.clone();
                let (id, inbox) = (id.to_string(), workflow.inbox);
                let _ = self.spawn(inner.reconcile_children(id, instance, inbox));
            }
        }
        Ok(())
    }
}
