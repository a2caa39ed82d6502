//! Durable timers: a tokio task per pending timer sleeps until the stored deadline (virtual
//! under a paused tokio clock), then delivers `TimerFired` to the workflow's next step.

use super::{lock, EngineInner};
use crate::{Event, OpId};
use std::sync::Arc;

impl EngineInner {
    /// Arms timer `op` of workflow `id` to fire at engine time `fire_at_ms`.
    pub(crate) fn start_timer(self: &Arc<Self>, id: &str, op: OpId, fire_at_ms: u64) {
        let deadline = self.clock.instant_at(fire_at_ms);
        let inner = self.clone();
        let owned = id.to_string();
        // The map stays locked while spawning so that the timer cannot remove its own entry
        // before it is inserted.
        let mut timers = lock(&self.timers);
        let task = async move {
            tokio::time::sleep_until(deadline).await;
            inner.timer_fired(&owned, op).await;
        };
        if let Some(handle) = self.spawn(task) {
            if let Some(old) = timers.entry(id.to_string()).or_default().insert(op, handle) {
                old.abort();
            }
        }
    }

    /// Stops timer `op` of workflow `id` (the step that cancelled it already resolved it).
    pub(crate) fn cancel_timer(&self, id: &str, op: OpId) {
        let mut timers = lock(&self.timers);
        if let Some(entry) = timers.get_mut(id) {
            if let Some(handle) = entry.remove(&op) {
                handle.abort();
            }
            if entry.is_empty() {
                timers.remove(id);
            }
        }
    }

    async fn timer_fired(self: &Arc<Self>, id: &str, op: OpId) {
        {
            let mut timers = lock(&self.timers);
            if let Some(entry) = timers.get_mut(id) {
                entry.remove(&op);
                if entry.is_empty() {
                    timers.remove(id);
                }
            }
        }
        tracing::debug!(workflow = id, %op, "timer fired");
        self.deliver_local(id, Event::TimerFired { op });
    }
}
