//! Durable timers: one queue of deadlines per engine, driven by one task that sleeps until
//! the earliest (virtual under a paused tokio clock) and delivers `TimerFired` to each due
//! timer's workflow.
//!
//! A pending timer costs an entry in two maps (about 150 bytes), not a task of its own, so
//! a worker can hold many parked workflows. The stored timer rows are the durable part:
//! recovery re-arms them from their deadlines.

use super::{lock, EngineInner};
use crate::{Event, OpId};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The pending timers of an engine.
#[derive(Default)]
pub(crate) struct TimerQueue {
    state: Mutex<Timers>,
    /// Wakes the driver when a timer earlier than the one it sleeps for is armed.
    earlier: Notify,
}

#[derive(Default)]
struct Timers {
    by_deadline: BTreeSet<(Instant, Arc<str>, OpId)>,
    by_workflow: HashMap<Arc<str>, HashMap<OpId, Instant>>,
}

impl Timers {
    fn remove(&mut self, id: &str, op: OpId) {
        let Some((key, ops)) = self.by_workflow.get_key_value(id) else {
            return;
        };
        let key = Arc::clone(key);
        let Some(&deadline) = ops.get(&op) else {
            return;
        };
        self.by_deadline.remove(&(deadline, key, op));
        self.forget(id, op);
    }

    /// Drops timer `op` from its workflow's entry, and the entry once it is empty.
    fn forget(&mut self, id: &str, op: OpId) {
        if let Some(ops) = self.by_workflow.get_mut(id) {
            ops.remove(&op);
            if ops.is_empty() {
                self.by_workflow.remove(id);
            }
        }
    }

    /// Takes the timers due at `now`.
    fn take_due(&mut self, now: Instant) -> Vec<(Arc<str>, OpId)> {
        let mut due = Vec::new();
        while let Some(first) = self.by_deadline.first() {
            if first.0 > now {
                break;
            }
            let (_, id, op) = self.by_deadline.pop_first().expect("checked above");
            self.forget(&id, op);
            due.push((id, op));
        }
        due
    }
}

impl TimerQueue {
    /// How many timers are pending (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).by_deadline.len()
    }

    pub(crate) fn clear(&self) {
        *lock(&self.state) = Timers::default();
    }

    /// Forgets every timer of workflow `id` (it closed).
    pub(crate) fn remove_workflow(&self, id: &str) {
        let mut timers = lock(&self.state);
        if let Some((key, ops)) = timers.by_workflow.remove_entry(id) {
            for (op, deadline) in ops {
                timers.by_deadline.remove(&(deadline, Arc::clone(&key), op));
            }
        }
    }
}

impl EngineInner {
    /// Starts the task that fires this engine's timers. Like every engine task it runs until
    /// `shutdown` (dropping the engine's handles does not stop sleeping workflows).
    pub(crate) fn start_timer_driver(self: &Arc<Self>) {
        let queue = Arc::clone(&self.timers);
        let engine = Arc::clone(self);
        self.spawn(async move {
            loop {
                let next = lock(&queue.state).by_deadline.first().map(|t| t.0);
                match next {
                    Some(deadline) => tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => {}
                        _ = queue.earlier.notified() => continue,
                    },
                    None => {
                        queue.earlier.notified().await;
                        continue;
                    }
                }
                let due = lock(&queue.state).take_due(Instant::now());
                for (id, op) in due {
                    tracing::debug!(workflow = &*id, %op, "timer fired");
                    engine.deliver_local(&id, Event::TimerFired { op }, None);
                }
            }
        });
    }

    /// Arms timer `op` of workflow `id` to fire at engine time `fire_at_ms` (again: an
    /// earlier deadline of the same timer is replaced).
    pub(crate) fn start_timer(&self, id: &str, op: OpId, fire_at_ms: u64) {
        let deadline = self.clock.instant_at(fire_at_ms);
        let mut timers = lock(&self.timers.state);
        timers.remove(id, op);
        let key: Arc<str> = match timers.by_workflow.get_key_value(id) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(id),
        };
        let earliest = timers
            .by_deadline
            .first()
            .is_none_or(|first| deadline < first.0);
        timers.by_deadline.insert((deadline, Arc::clone(&key), op));
        timers
            .by_workflow
            .entry(key)
            .or_default()
            .insert(op, deadline);
        drop(timers);
        if earliest {
            // A stored permit if the driver is not waiting yet: it looks again.
            self.timers.earlier.notify_one();
        }
    }

    /// Stops timer `op` of workflow `id` (the step that cancelled it already resolved it).
    pub(crate) fn cancel_timer(&self, id: &str, op: OpId) {
        lock(&self.timers.state).remove(id, op);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_timers_come_out_in_deadline_order_and_removed_ones_never() {
        let now = Instant::now();
        let at = |ms| now + std::time::Duration::from_millis(ms);
        let mut t = Timers::default();
        for (id, op, ms) in [("a", 1, 30), ("b", 1, 10), ("a", 2, 20), ("c", 7, 50)] {
            let key: Arc<str> = Arc::from(id);
            t.by_deadline.insert((at(ms), key.clone(), OpId(op)));
            t.by_workflow
                .entry(key)
                .or_default()
                .insert(OpId(op), at(ms));
        }
        t.remove("a", OpId(2));
        t.remove("zz", OpId(1)); // unknown: nothing happens
        let due: Vec<(String, u64)> = t
            .take_due(at(40))
            .into_iter()
            .map(|(id, op)| (id.to_string(), op.0))
            .collect();
        assert_eq!(due, [("b".to_string(), 1), ("a".to_string(), 1)]);
        assert_eq!(t.by_deadline.len(), 1);
        assert_eq!(t.by_workflow.len(), 1, "emptied workflows are dropped");
        assert!(t.take_due(at(49)).is_empty());
        assert_eq!(t.take_due(at(50)).len(), 1);
        assert!(t.by_workflow.is_empty());
    }
}
