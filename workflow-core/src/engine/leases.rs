//! Which workflows this engine steps: the worker side of the store's lease protocol
//! (`store/mod.rs`, "Leases and fencing").
//!
//! - **Claim.** At `build` and whenever the store hints at a change (or the safety poll
//!   ticks), the engine claims free and expired workflows in small batches, so that several
//!   workers woken together share the work; each claimed workflow is adopted: its timers are
//!   re-armed, its in-flight activities dispatched again, its waiting events stepped, its
//!   children reconciled.
//! - **Damaged.** A claimed workflow whose rows do not read ([`RunningWorkflow::damaged`]) is
//!   held but not resumed: nothing is dispatched for it, and its steps only mark it stuck
//!   with the fault (through the fenced `set_stuck`), at once and again at each new event,
//!   since it runs nothing until its rows are read again by a new claim (after a restart,
//!   once repaired). Every other workflow resumes normally.
//! - **Hold.** The engine keeps the fence of every workflow it holds and passes it with every
//!   write it makes for that workflow. It renews all its leases in one write every third of
//!   the lease duration; a workflow missing from the answer, or with another epoch, was taken
//!   over and is dropped.
//! - **Drop.** A workflow is dropped when its lease was lost (renewal, or a fenced write
//!   refused with [`StoreError::LeaseLost`]): its timers are disarmed, its cached machine and
//!   undelivered results forgotten, and its running activities stopped (their results could
//!   not be committed anyway).
//! - **Hand over.** [`Engine::shutdown`](crate::Engine::shutdown) stops claiming and stepping,
//!   lets steps in flight commit (bounded), and releases every lease so another worker claims
//!   the workflows at once instead of after the lease expires.
//!
//! Renewal and the safety poll tick in real time (leases are on the store's clock), from
//! plain threads that end with the engine.

use super::runner::ActivityJob;
use super::{lock, EngineInner};
use crate::activity::StopReason;
use crate::store::{Fence, LeaseRequest, RunningWorkflow, StoreChange};
use crate::{Event, OpId, StoreError, WorkflowFault};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many workflows one claim takes. Small, so that workers woken by the same hint
/// interleave their claims and share a burst of new workflows.
const CLAIM_BATCH: usize = 16;

/// The workflows an engine holds, with the epoch of each lease, and the fault of those held
/// whose rows did not read when claimed.
pub(crate) struct Holdings {
    pub(crate) request: LeaseRequest,
    held: Mutex<HashMap<String, u64>>,
    /// Leases the last renewal returned that were not held: given back if the next renewal
    /// returns them again, still not held ([`Holdings::unheld_after_renewal`]).
    unheld: Mutex<HashMap<String, u64>>,
    damaged: Mutex<HashMap<String, WorkflowFault>>,
}

impl Holdings {
    pub(crate) fn new(request: LeaseRequest) -> Holdings {
        Holdings {
            request,
            held: Mutex::new(HashMap::new()),
            unheld: Mutex::new(HashMap::new()),
            damaged: Mutex::new(HashMap::new()),
        }
    }

    /// The fault of a held workflow whose rows did not read when it was claimed: it is not
    /// to be stepped, only marked stuck.
    pub(crate) fn damage(&self, id: &str) -> Option<WorkflowFault> {
        lock(&self.damaged).get(id).cloned()
    }

    /// The fence for writes about `id`, while this engine holds it.
    pub(crate) fn fence(&self, id: &str) -> Option<Fence> {
        lock(&self.held).get(id).map(|&epoch| Fence {
            owner: self.request.owner.clone(),
            epoch,
        })
    }

    pub(crate) fn holds(&self, id: &str) -> bool {
        lock(&self.held).contains_key(id)
    }

    /// Holds `id` under the lease of `epoch`, read whole (a new claim reads its rows anew).
    pub(crate) fn hold(&self, id: &str, epoch: u64) {
        lock(&self.damaged).remove(id);
        lock(&self.held).insert(id.to_string(), epoch);
    }

    /// Holds `id` under the lease of `epoch`, whose rows did not read ([`Holdings::damage`]).
    fn hold_damaged(&self, id: &str, epoch: u64, fault: WorkflowFault) {
        lock(&self.damaged).insert(id.to_string(), fault);
        lock(&self.held).insert(id.to_string(), epoch);
    }

    /// Forgets `id`; `true` if it was held.
    pub(crate) fn forget(&self, id: &str) -> bool {
        lock(&self.damaged).remove(id);
        lock(&self.held).remove(id).is_some()
    }

    pub(crate) fn count(&self) -> usize {
        lock(&self.held).len()
    }

    /// What is held now, to compare a renewal's answer with.
    fn snapshot(&self) -> HashMap<String, u64> {
        lock(&self.held).clone()
    }

    /// The leases a renewal returned (the store says this worker owns them) that this engine
    /// does not hold, and did not hold at the previous renewal either, at the same epoch: a
    /// row owned but never stepped, renewed for good unless given back. (Seen once, a lease
    /// may belong to a child whose creating step just committed, held a moment later.)
    fn unheld_after_renewal(&self, renewed: &[(String, u64)]) -> Vec<(String, u64)> {
        let held = lock(&self.held);
        let now: HashMap<String, u64> = renewed
            .iter()
            .filter(|(id, epoch)| held.get(id) != Some(epoch))
            .cloned()
            .collect();
        drop(held);
        let mut unheld = lock(&self.unheld);
        let confirmed = now
            .iter()
            .filter(|(id, epoch)| unheld.get(*id) == Some(epoch))
            .map(|(id, epoch)| (id.clone(), *epoch))
            .collect();
        *unheld = now;
        confirmed
    }

    /// Compares a renewal's answer with what was held when it was sent (`before`): returns
    /// the workflows lost, that is, held then and still held at the same epoch, but not
    /// renewed at that epoch. A workflow claimed or created while the renewal was in flight
    /// is not judged by it.
    fn lost_after_renewal(
        &self,
        before: &HashMap<String, u64>,
        renewed: &[(String, u64)],
    ) -> Vec<String> {
        let renewed: HashMap<&str, u64> = renewed.iter().map(|(id, e)| (id.as_str(), *e)).collect();
        let held = lock(&self.held);
        before
            .iter()
            .filter(|(id, epoch)| held.get(*id) == Some(epoch))
            .filter(|(id, epoch)| renewed.get(id.as_str()) != Some(epoch))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

impl EngineInner {
    /// The fence of a workflow this engine holds.
    pub(crate) fn fence(&self, id: &str) -> Option<Fence> {
        self.holdings.fence(id)
    }

    /// Claims free and expired workflows until none is left, adopting each.
    pub(crate) async fn claim_available(self: &Arc<Self>) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(total);
            }
            let claimed = self
                .store
                .claim_workflows(&self.holdings.request, CLAIM_BATCH)
                .await?;
            let n = claimed.len();
            total += n;
            for workflow in claimed {
                self.adopt(workflow);
            }
            if n < CLAIM_BATCH {
                return Ok(total);
            }
            // Let other workers' claims interleave with ours, the more so the busier this
            // one is, so that a burst of new workflows spreads over the workers.
            tokio::time::sleep(self.claim_pause()).await;
        }
    }

    /// The pause between two full claim batches: 1 ms, plus 1 ms per 16 workflows stepping
    /// or running activities here, at most 20 ms.
    fn claim_pause(&self) -> Duration {
        let busy = lock(&self.slots).len() + lock(&self.tasks).len();
        Duration::from_millis(1 + (busy as u64 / 16).min(19))
    }

    /// Takes over a claimed workflow: re-arms its timers from the stored deadlines,
    /// dispatches again the activity tasks that were in flight (at least once: the
    /// interrupted attempt runs again, with the heartbeat details it recorded) and the local
    /// activities whose end was not committed (R6.7), steps it if
    /// events wait in its inbox or it never stepped, and reconciles its children (R7).
    ///
    /// A workflow whose rows did not read is held, but nothing of it is resumed: its step
    /// marks it stuck with the fault.
    fn adopt(self: &Arc<Self>, workflow: RunningWorkflow) {
        let id = workflow.record.id.clone();
        let Some(lease) = &workflow.record.lease else {
            tracing::error!(workflow = %id, "the store returned a claimed workflow without its lease");
            return;
        };
        // Anything a previous holding of this engine left behind is stale.
        lock(&self.cache).remove(&id);
        if let Some(fault) = workflow.damaged {
            tracing::debug!(workflow = %id, epoch = lease.epoch, "claimed, damaged: {fault}");
            self.holdings.hold_damaged(&id, lease.epoch, fault);
            self.notify(&id);
            return;
        }
        self.holdings.hold(&id, lease.epoch);
        tracing::debug!(workflow = %id, epoch = lease.epoch, "claimed");
        for timer in &workflow.timers {
            self.start_timer(&id, timer.op, timer.fire_at_ms);
        }
        // A task whose result already waits in the inbox finished; do not run it again.
        let reported: HashSet<OpId> = workflow
            .inbox
            .iter()
            .filter_map(|entry| match &entry.event {
                Event::ActivityCompleted { op, .. } | Event::ActivityFailed { op, .. } => Some(*op),
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
                scheduled_at_ms: task.scheduled_at_ms,
                previous_details: task.heartbeat_details,
                // A task cancelled before the hand-over never starts again (R6.1).
                cancel: task.cancel_requested.then_some(task.notify_running),
                fence: None,
                local: None,
            });
        }
        if !workflow.inbox.is_empty() || workflow.record.version == 0 {
            self.notify(&id);
        }
        // Children and cancels of other workflows whose answers may have been lost.
        if let Some(instance) = super::stored_instance(&workflow.record.snapshot) {
            // Local activities whose end was not committed run again (R6.7).
            self.resume_local_activities(&id, &instance);
            let inner = self.clone();
            let _ = self.spawn(inner.reconcile_children(id, instance, workflow.inbox));
        }
    }

    /// Renews every lease this engine holds and drops the workflows it lost. Returns whether
    /// the store answered.
    async fn renew_leases(self: &Arc<Self>) -> bool {
        let before = self.holdings.snapshot();
        match self.store.renew_leases(&self.holdings.request).await {
            Ok(renewed) => {
                for id in self.holdings.lost_after_renewal(&before, &renewed) {
                    self.drop_workflow(&id, "its lease was taken over by another worker");
                }
                let unheld = self.holdings.unheld_after_renewal(&renewed);
                if !unheld.is_empty() {
                    self.give_back(unheld).await;
                }
                true
            }
            Err(e) => {
                tracing::warn!(
                    worker = %self.holdings.request.owner,
                    "could not renew the leases; retrying at the next tick (writes stay fenced): {e}"
                );
                false
            }
        }
    }

    /// Gives back leases the store says this worker owns but that it does not hold, and
    /// claims again: the workflows resume (here or on another worker) with their tasks and
    /// timers, through the ordinary claim.
    async fn give_back(self: &Arc<Self>, unheld: Vec<(String, u64)>) {
        for (id, epoch) in unheld {
            let fence = Fence {
                owner: self.holdings.request.owner.clone(),
                epoch,
            };
            match self.store.release_lease(&id, &fence).await {
                Ok(true) => tracing::warn!(
                    workflow = %id,
                    epoch,
                    "gave back a lease this worker owned in the store but did not hold"
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!(workflow = %id, "could not give back a lease: {e}"),
            }
        }
        let inner = self.clone();
        let _ = self.spawn(async move {
            if let Err(e) = inner.claim_available().await {
                tracing::warn!("claiming after giving back leases failed; retrying later: {e}");
            }
        });
    }

    /// Drops every workflow held: the leases could not be renewed for a whole lease, so
    /// other workers may hold them by now. Their fenced writes would be refused anyway; this
    /// stops the activities and timers that would run for nothing meanwhile.
    fn drop_all(self: &Arc<Self>) {
        let held: Vec<String> = lock(&self.holdings.held).keys().cloned().collect();
        if held.is_empty() {
            return;
        }
        tracing::error!(
            worker = %self.holdings.request.owner,
            workflows = held.len(),
            "the leases could not be renewed for longer than they last; dropping every \
             workflow held (they are released and claimed again once the store answers)"
        );
        for id in held {
            self.drop_workflow(&id, "its lease could not be renewed in time");
        }
    }

    /// Handles a store error of a write made for `id`: a lost lease drops the workflow.
    /// Returns `true` if it was one.
    pub(crate) fn lease_lost(self: &Arc<Self>, id: &str, error: &StoreError) -> bool {
        if !matches!(error, StoreError::LeaseLost { .. }) {
            return false;
        }
        self.drop_workflow(id, &error.to_string());
        true
    }

    /// Stops everything this engine does for `id` after losing it to another worker.
    fn drop_workflow(self: &Arc<Self>, id: &str, why: &str) {
        if !self.holdings.forget(id) {
            return;
        }
        tracing::warn!(workflow = id, "dropping the workflow: {why}");
        lock(&self.cache).remove(id);
        lock(&self.local).remove(id);
        self.timers.remove_workflow(id);
        // Stopped and forgotten: a later claim of the same workflow dispatches its tasks
        // afresh, and these runners' results are dropped (their epoch is gone).
        if let Some(tasks) = lock(&self.tasks).remove(id) {
            for control in tasks.values() {
                control.stop_for(StopReason::TakenOver, true);
            }
        }
    }

    /// Gives up every lease (graceful shutdown).
    pub(crate) async fn release_leases(&self) {
        let owner = &self.holdings.request.owner;
        match self.store.release_leases(owner).await {
            Ok(n) => tracing::info!(worker = %owner, released = n, "leases released"),
            Err(e) => tracing::warn!(
                worker = %owner,
                "could not release the leases; other workers take the workflows over when \
                 they expire: {e}"
            ),
        }
    }

    /// Starts the engine's two background loops: lease renewal, every third of the lease,
    /// and the watcher, which claims, steps and checks outcomes on every store hint and
    /// safety-poll tick. They are separate so that a long look at the store (claiming a
    /// backlog) never delays a renewal.
    pub(crate) fn watch_store(self: &Arc<Self>, poll: Duration) {
        let lease = Duration::from_millis(self.holdings.request.duration_ms);
        let renew_every = (lease / 3).max(Duration::from_millis(10));
        let (Some(mut renewals), Some(mut polls)) = (
            real_time_ticks("workflow-lease-renewal", renew_every),
            real_time_ticks("workflow-store-poll", poll),
        ) else {
            tracing::error!(
                "could not start the engine's tick threads; leases are not renewed, so other \
                 workers will take this engine's workflows over"
            );
            return;
        };
        let weak = Arc::downgrade(self);
        self.spawn(async move {
            let mut last_renewed = std::time::Instant::now();
            let mut dropped_all = false;
            while renewals.recv().await.is_some() {
                let Some(inner) = weak.upgrade() else { return };
                if inner.shutdown.is_cancelled() {
                    return;
                }
                if inner.renew_leases().await {
                    last_renewed = std::time::Instant::now();
                    if std::mem::take(&mut dropped_all) {
                        // The store still names this worker on the leases it dropped, and
                        // would go on renewing them for nobody: give them up, so that any
                        // worker (this one included) claims them afresh.
                        inner.release_leases().await;
                    }
                } else if last_renewed.elapsed() >= lease && !dropped_all {
                    inner.drop_all();
                    dropped_all = true;
                }
            }
        });
        let mut changes = self.store.changes();
        let weak = Arc::downgrade(self);
        self.spawn(async move {
            loop {
                let hint = match changes.as_mut() {
                    Some(feed) => tokio::select! {
                        tick = polls.recv() => match tick {
                            Some(()) => None,
                            None => return,
                        },
                        change = feed.recv() => match change {
                            Ok(change) => Some(change),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                Some(StoreChange::Any)
                            }
                            // The hints stopped: the safety poll alone remains.
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                changes = None;
                                continue;
                            }
                        },
                    },
                    None => match polls.recv().await {
                        Some(()) => None,
                        None => return,
                    },
                };
                let Some(inner) = weak.upgrade() else { return };
                if inner.shutdown.is_cancelled() {
                    return;
                }
                // Hints waiting behind this one are answered by the same look (one claim for
                // a burst of new workflows, not one per workflow).
                let mut hints = vec![hint];
                if let Some(feed) = changes.as_mut() {
                    loop {
                        match feed.try_recv() {
                            Ok(change) => hints.push(Some(change)),
                            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {
                                hints.push(Some(StoreChange::Any))
                            }
                            Err(_) => break,
                        }
                    }
                }
                inner.look_at_store(hints).await;
            }
        });
    }

    /// What hints (or a safety poll, `None`) ask for, all at once: step the held workflows
    /// that got events, claim once if anything became claimable, and wake the outcome
    /// waiters of workflows that closed elsewhere. A safety poll or an `Any` looks at
    /// everything.
    async fn look_at_store(self: &Arc<Self>, hints: Vec<Option<StoreChange>>) {
        let everything = hints
            .iter()
            .any(|h| matches!(h, None | Some(StoreChange::Any)));
        let mut claim = everything;
        let mut closed: Vec<String> = Vec::new();
        for hint in hints.into_iter().flatten() {
            match hint {
                StoreChange::Event(id) => self.notify(&id),
                StoreChange::Claimable => claim = true,
                StoreChange::Closed(id) => closed.push(id),
                StoreChange::Any => {}
            }
        }
        if everything {
            match self
                .store
                .workflows_to_step(&self.holdings.request.owner)
                .await
            {
                Ok(ids) => ids.iter().for_each(|id| self.notify(id)),
                Err(e) => tracing::warn!("looking for new events failed: {e}"),
            }
        }
        if claim {
            if let Err(e) = self.claim_available().await {
                tracing::warn!("claiming workflows failed: {e}");
            }
        }
        let awaited: Vec<String> = {
            let waiters = lock(&self.waiters);
            if everything {
                waiters.keys().cloned().collect()
            } else {
                // A close hinted by the store also reaches the attempts running here.
                let tasks = lock(&self.tasks);
                closed
                    .into_iter()
                    .filter(|id| waiters.contains_key(id) || tasks.contains_key(id))
                    .collect()
            }
        };
        for id in awaited {
            if let Ok(record) = self.store.load_workflow(&id).await {
                if record.status.is_closed() {
                    self.on_closed(&id, Some(record.status));
                }
            }
        }
    }
}

/// Ticks every `period` of real time, from a plain thread, so that an engine on a paused tokio
/// clock (tests) is not kept busy by them; the thread ends once the receiver is dropped.
fn real_time_ticks(name: &str, period: Duration) -> Option<tokio::sync::mpsc::Receiver<()>> {
    let (sender, ticks) = tokio::sync::mpsc::channel::<()>(1);
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || loop {
            std::thread::sleep(period);
            match sender.try_send(()) {
                Ok(()) | Err(tokio::sync::mpsc::error::TrySendError::Full(())) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => return,
            }
        })
        .ok()?;
    Some(ticks)
}
