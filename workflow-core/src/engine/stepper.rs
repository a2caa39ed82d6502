//! Stepping a workflow (DESIGN.md "A step"): load, apply the inbox, resume the machine,
//! commit ONE transaction, and only then dispatch the commands.
//!
//! Steps of one workflow are serialized by a slot per workflow: [`EngineInner::notify`]
//! spawns a stepper if none runs for that workflow, and otherwise marks the slot so the
//! running stepper steps once more. Different workflows step in parallel.

use super::local::LocalCall;
use super::runner::ActivityJob;
use super::{lock, Arrival, CachedMachine, EngineInner};
use crate::history::EventKind;
use crate::json_limits;
use crate::store::{
    StepCommit, TaskCancel, TaskRecord, TimerRecord, WorkflowClose, WorkflowRecord,
};
use crate::workflow::ErrorRecord;
use crate::Snapshot;
use crate::{
    Command, DynMachine, DynWorkflow, Event, Instance, Step, StepContext, StoreError,
    UnhandledErrorAction, WorkflowFault, WorkflowStatus,
};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use tracing::Instrument;

/// The stored snapshot, as decoded: the machine's state (left as text for the machine's own
/// type to decode) and the runtime state beside it.
#[derive(Deserialize)]
struct StoredSnapshot<'a> {
    #[serde(borrow)]
    machine: &'a serde_json::value::RawValue,
    instance: Instance,
}

/// The stored snapshot, as encoded.
#[derive(Serialize)]
struct SnapshotParts<'a> {
    machine: &'a Snapshot,
    instance: &'a Instance,
}

/// Encodes a snapshot.
pub(crate) fn encode_snapshot(machine: &Snapshot, instance: &Instance) -> Result<Snapshot, String> {
    Snapshot::of(&SnapshotParts { machine, instance }).map_err(|e| e.to_string())
}

/// The pending operations stored in a snapshot, for `describe` (empty if it does not decode).
pub(crate) fn stored_instance(snapshot: &Snapshot) -> Option<Instance> {
    #[derive(Deserialize)]
    struct InstanceOnly {
        instance: Instance,
    }
    snapshot
        .decode::<InstanceOnly>()
        .ok()
        .map(|s| s.instance)
        .filter(|instance| instance.validate().is_ok())
}

/// Decodes a stored snapshot into `workflow`'s machine and its runtime state, checking that
/// the runtime state is one the engine could have written ([`Instance::validate`]): a
/// snapshot that fails is a [`WorkflowFault::CorruptSnapshot`] of its workflow alone.
/// `state` is the stored state's name, for the fault.
pub(crate) fn decode_machine(
    workflow: &dyn DynWorkflow,
    state: &str,
    snapshot: &Snapshot,
) -> Result<(Box<dyn DynMachine>, Instance), WorkflowFault> {
    let corrupt = |message: String| WorkflowFault::CorruptSnapshot {
        workflow_type: workflow.name().to_string(),
        state: state.to_string(),
        message,
    };
    let stored: StoredSnapshot = snapshot.decode().map_err(|e| corrupt(e.to_string()))?;
    stored
        .instance
        .validate()
        .map_err(|e| corrupt(e.to_string()))?;
    let machine = workflow.restore(stored.machine.get()).map_err(corrupt)?;
    Ok((machine, stored.instance))
}

/// What running the machine produced, before the commit.
pub(crate) struct Ran {
    pub(crate) machine: Box<dyn DynMachine>,
    pub(crate) instance: Instance,
    pub(crate) commands: Vec<Command>,
    pub(crate) history: Vec<EventKind>,
    pub(crate) close: Option<WorkflowClose>,
    pub(crate) snapshot: Snapshot,
    pub(crate) state_name: &'static str,
}

/// The pure part of a step: apply the events, resume, decide the final status (R2).
pub(crate) fn run_machine(
    id: &str,
    mut machine: Box<dyn DynMachine>,
    instance: Instance,
    events: Vec<Event>,
    now_ms: u64,
    unhandled: UnhandledErrorAction,
) -> Result<Ran, String> {
    let cx = StepContext::new(id, instance, now_ms).with_unhandled_errors(unhandled);
    // The first step starts the timer of an execution timeout given at the start (R5.3).
    cx.arm_execution_timeout();
    for event in events {
        cx.apply(event);
    }
    let close = match machine.resume(&cx) {
        Step::Pending => None,
        Step::Ready(result) => {
            if let Err(error) = &result {
                // R13: under `Cancel`, an unhandled error cancels the workflow (if the code it
                // left had handlers, they already ran).
                cx.unhandled_error(&error.message);
            }
            cx.close_pending();
            Some(match result {
                Ok(result) => WorkflowClose::Completed { result },
                Err(error) if cx.unhandled_error_cancelled() => WorkflowClose::Canceled { error },
                Err(error) if error.is_cancellation && cx.workflow_cancel_requested() => {
                    WorkflowClose::Canceled { error }
                }
                Err(error) => WorkflowClose::Failed { error },
            })
        }
    };
    let close = close.map(|close| storable_close(id, close));
    let mut output = cx.finish();
    // Nothing is committed that the next step would refuse (an operation counter pushed past
    // its bound, say): the workflow is marked stuck instead, with its last good state kept.
    output.instance.validate().map_err(|e| {
        format!("the step would leave workflow `{id}` in a state it cannot resume from: {e}")
    })?;
    match &close {
        Some(WorkflowClose::Completed { result }) => {
            output.history.push(EventKind::WorkflowCompleted {
                result: result.clone(),
            })
        }
        Some(WorkflowClose::Canceled { error }) => {
            output.history.push(EventKind::WorkflowCanceled {
                error: error.message.clone(),
            })
        }
        Some(WorkflowClose::Failed { error }) => output.history.push(EventKind::WorkflowFailed {
            error: error.message.clone(),
        }),
        Some(WorkflowClose::Terminated { .. }) | None => {}
    }
    let machine_state = machine
        .snapshot()
        .map_err(|e| format!("the state of workflow `{id}` could not be serialized: {e}"))?;
    let snapshot = encode_snapshot(&machine_state, &output.instance).map_err(|e| {
        format!("the runtime state of workflow `{id}` could not be serialized: {e}")
    })?;
    let depth = json_limits::text_depth(snapshot.as_str());
    if depth > json_limits::READER_DEPTH {
        return Err(format!(
            "the state of workflow `{id}` in `{}` nests {depth} levels deep, more than the {} \
             a snapshot may to be read back; nothing was committed (keep deeply nested values \
             out of the workflow's locals)",
            machine.state_name(),
            json_limits::READER_DEPTH
        ));
    }
    Ok(Ran {
        state_name: machine.state_name(),
        machine,
        instance: output.instance,
        commands: output.commands,
        history: output.history,
        close,
        snapshot,
    })
}

/// `close`, with a result or error that nests too deep to read back replaced by a failure
/// that says so (see [`json_limits`]).
fn storable_close(id: &str, close: WorkflowClose) -> WorkflowClose {
    let too_deep = |what: &str, value: &serde_json::Value| {
        json_limits::check_value(&format!("the {what} of workflow `{id}`"), value).err()
    };
    // The error keeps its message and kind; only its nested value is replaced.
    let shallow = |error: ErrorRecord| match too_deep("error", &error.error) {
        Some(message) => ErrorRecord {
            error: serde_json::Value::String(message.clone()),
            message: format!("{}; {message}", error.message),
            is_cancellation: error.is_cancellation,
        },
        None => error,
    };
    match close {
        WorkflowClose::Completed { result } => match too_deep("result", &result) {
            Some(message) => WorkflowClose::Failed {
                error: ErrorRecord {
                    error: serde_json::Value::String(message.clone()),
                    message,
                    is_cancellation: false,
                },
            },
            None => WorkflowClose::Completed { result },
        },
        WorkflowClose::Failed { error } => WorkflowClose::Failed {
            error: shallow(error),
        },
        WorkflowClose::Canceled { error } => WorkflowClose::Canceled {
            error: shallow(error),
        },
        other => other,
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

impl EngineInner {
    /// Asks for a step of workflow `id`.
    pub(crate) fn notify(self: &Arc<Self>, id: &str) {
        // Only the worker holding a workflow steps it (another one is told by the store's
        // hint); a shutting-down engine starts no step.
        if self.shutdown.is_cancelled() || !self.holdings.holds(id) {
            return;
        }
        {
            let mut slots = lock(&self.slots);
            if let Some(again) = slots.get_mut(id) {
                *again = true;
                return;
            }
            slots.insert(id.to_string(), false);
        }
        let inner = self.clone();
        let owned = id.to_string();
        if self
            .spawn(async move { inner.run_stepper(owned).await })
            .is_none()
        {
            lock(&self.slots).remove(id);
        }
    }

    /// Steps `id` again after `delay` (unless the engine shuts down first).
    fn retry_step_later(self: &Arc<Self>, id: &str, delay: std::time::Duration) {
        let inner = self.clone();
        let id = id.to_string();
        let _ = self.spawn(async move {
            tokio::time::sleep(delay).await;
            inner.notify(&id);
        });
    }

    async fn run_stepper(self: Arc<Self>, id: String) {
        loop {
            let span = tracing::info_span!("workflow_step", workflow = %id);
            // Workflow code runs under its own `catch_unwind`; this one keeps the slot
            // consistent should anything else in the step panic.
            // Boxed: the step's future is large, and a small stepper future is cheap to spawn.
            let step = AssertUnwindSafe(Box::pin(self.step(&id)).instrument(span)).catch_unwind();
            let again = match step.await {
                Ok(Ok(again)) => again,
                Ok(Err(e)) => {
                    // Nothing was committed or dispatched; the events are still in the inbox.
                    // Step again later, so a transient store failure does not strand them.
                    tracing::warn!(workflow = %id, "step failed, retrying in 1 s: {e}");
                    self.retry_step_later(&id, std::time::Duration::from_secs(1));
                    false
                }
                Err(payload) => {
                    let message = format!("it panicked: {}", panic_message(&*payload));
                    self.mark_stuck(&id, WorkflowFault::Engine { message })
                        .await;
                    false
                }
            };
            let more = {
                let mut slots = lock(&self.slots);
                match slots.get_mut(&id) {
                    Some(flag) if (*flag || again) && !self.shutdown.is_cancelled() => {
                        *flag = false;
                        true
                    }
                    _ => {
                        slots.remove(&id);
                        false
                    }
                }
            };
            if !more {
                return;
            }
        }
    }

    async fn mark_stuck(self: &Arc<Self>, id: &str, fault: WorkflowFault) {
        tracing::error!(workflow = id, "workflow is stuck: {fault}");
        lock(&self.cache).remove(id);
        let fence = self.fence(id);
        if let Err(e) = self.store.set_stuck(id, Some(fault), fence.as_ref()).await {
            if !self.lease_lost(id, &e) {
                tracing::error!(
                    workflow = id,
                    "could not record that the workflow is stuck: {e}"
                );
            }
        }
    }

    /// The machine for `record`: the one `held` from the cache, or decoded from `snapshot`.
    fn load_machine(
        &self,
        workflow: &dyn DynWorkflow,
        record: &WorkflowRecord,
        held: Option<CachedMachine>,
        snapshot: Snapshot,
    ) -> Result<(Box<dyn DynMachine>, Instance), WorkflowFault> {
        if let Some(held) = held {
            return Ok((held.machine, held.instance));
        }
        decode_machine(workflow, &record.state_name, &snapshot)
    }

    /// One step. Returns `true` when the workflow should be stepped again at once.
    ///
    /// The step applies the events waiting in the store's inbox and those delivered in memory
    /// by this engine's activity runners and timers ([`EngineInner::deliver_local`]), in the
    /// order they arrived (a result that came before a cancel is applied before it, R6.3).
    /// The ones delivered in memory become durable with the step's commit; until then a guard puts them
    /// back on every path that does not commit (a failed commit, a stuck workflow, a panic),
    /// and a crash loses only their runs, which recovery dispatches again (activities are
    /// at-least-once; a fired timer fires again at once).
    async fn step(self: &Arc<Self>, id: &str) -> Result<bool, StoreError> {
        let mut local = LocalEvents::take(self, id);
        let stepped = self.step_with(id, &mut local).await;
        drop(local);
        stepped
    }

    async fn step_with(
        self: &Arc<Self>,
        id: &str,
        local: &mut LocalEvents<'_>,
    ) -> Result<bool, StoreError> {
        let Some(fence) = self.fence(id) else {
            local.consumed();
            return Ok(false);
        };
        // Claimed with rows that do not read: nothing of it runs until a new claim reads
        // them again; each step (at once, then at each new event) records why.
        if let Some(fault) = self.holdings.damage(id) {
            self.mark_stuck(id, fault).await;
            return Ok(false);
        }
        let cached = lock(&self.cache).get(id).map(|c| c.version);
        let (mut record, inbox) = match self.store.load_for_step(id, cached).await {
            Ok(loaded) => loaded,
            Err(StoreError::NotFound(_)) => {
                local.consumed();
                return Ok(false);
            }
            // Its row or an inbox entry does not read: stuck, and stepped again at its next
            // event (R2.4), not retried at once.
            Err(StoreError::Damaged { fault, .. }) => {
                self.mark_stuck(id, fault).await;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if record.status != WorkflowStatus::Running {
            lock(&self.cache).remove(id);
            local.consumed();
            return Ok(false);
        }
        if inbox.is_empty() && local.events().next().is_none() && record.version > 0 {
            return Ok(false);
        }
        // Taken out of the cache now, so that no other step can evict it under this one.
        let held = lock(&self.cache)
            .remove(id)
            .filter(|c| c.version == record.version);
        if held.is_none() && Some(record.version) == cached {
            // The store left the snapshot out, but the machine is no longer held (evicted by
            // another workflow's step, or marked stuck, since): read the snapshot after all.
            record = self.store.load_workflow(id).await?;
        }
        let Some(workflow) = self.workflows.get(record.workflow_type.as_str()).cloned() else {
            let fault = WorkflowFault::UnknownWorkflowType {
                workflow_type: record.workflow_type.clone(),
                state: record.state_name.clone(),
            };
            self.mark_stuck(id, fault).await;
            return Ok(false);
        };
        if record.schema != workflow.schema() {
            let fault = WorkflowFault::SchemaMismatch {
                workflow_type: record.workflow_type.clone(),
                stored: record.schema,
                compiled: workflow.schema(),
                state: record.state_name.clone(),
            };
            self.mark_stuck(id, fault).await;
            return Ok(false);
        }
        let snapshot = std::mem::take(&mut record.snapshot);
        let (machine, instance) = match self.load_machine(&*workflow, &record, held, snapshot) {
            Ok(loaded) => loaded,
            Err(fault) => {
                self.mark_stuck(id, fault).await;
                return Ok(false);
            }
        };
        let now_ms = self.clock.now_ms();
        let events = local.in_arrival_order(&inbox);
        tracing::debug!(
            version = record.version,
            events = events.len(),
            state = %record.state_name,
            "stepping"
        );
        let mut ran = match catch_unwind(AssertUnwindSafe(|| {
            run_machine(id, machine, instance, events, now_ms, self.unhandled)
        })) {
            Ok(Ok(ran)) => ran,
            Ok(Err(message)) => {
                self.mark_stuck(id, WorkflowFault::Engine { message }).await;
                return Ok(false);
            }
            Err(payload) => {
                // R2.4: a panic is not a final status. Nothing is committed, the workflow
                // stays Running with its inbox, and `describe` shows the message.
                let fault = WorkflowFault::Panicked {
                    state: record.state_name.clone(),
                    message: panic_message(&*payload),
                };
                self.mark_stuck(id, fault).await;
                return Ok(false);
            }
        };

        let delivered: Vec<&Event> = local.events().collect();
        let mut commit = build_commit(id, &record, &inbox, &delivered, &mut ran, now_ms);
        commit.fence = Some(fence);
        let (children_rows, prepared) =
            self.prepare_children(id, &ran.commands, ran.close.is_some(), now_ms);
        commit.new_workflows = children_rows;
        if let (Some(parent), Some(close)) = (&record.parent, &ran.close) {
            let event = Event::ChildClosed {
                op: parent.op,
                outcome: super::children::child_outcome(close),
            };
            commit.outbox.push((parent.workflow_id.clone(), event));
        }
        let closed = ran.close.as_ref().map(WorkflowClose::status);
        match self.store.commit_step(commit).await {
            Ok(version) => {
                local.consumed();
                // A closed workflow is forgotten once its step's commands are dispatched.
                if closed.is_none() {
                    self.cache_machine(
                        id,
                        CachedMachine {
                            version,
                            machine: ran.machine,
                            instance: ran.instance,
                        },
                    );
                }
            }
            Err(StoreError::Conflict {
                expected, found, ..
            }) => {
                tracing::warn!(
                    workflow = id,
                    expected,
                    found,
                    "step conflicted with another writer; stepping again"
                );
                return Ok(true);
            }
            Err(StoreError::AlreadyClosed { .. }) | Err(StoreError::NotFound(_)) => {
                // Terminated while the step ran: its commands must not run.
                local.consumed();
                return Ok(false);
            }
            Err(e) if self.lease_lost(id, &e) => {
                // Another worker holds it now; nothing of this step happened.
                local.consumed();
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        if let (Some(parent), Some(_)) = (&record.parent, &ran.close) {
            // Its outcome is in the parent's inbox: step the parent if it is held here.
            self.notify(&parent.workflow_id);
        }
        let (children, others): (Vec<Command>, Vec<Command>) = ran
            .commands
            .into_iter()
            .partition(super::children::is_child_command);
        self.dispatch(id, others, closed.is_some());
        if let Some(status) = closed {
            // After the step's own cancel actions: a call its last step cancelled hears that
            // cancel and its reason, then the close reaches whatever still runs.
            tracing::info!(workflow = id, %status, "workflow closed");
            self.on_closed(id, Some(status));
        }
        // Awaited before the next step of this workflow, so that child commands take effect
        // in the order the steps emitted them (a cancel never overtakes its child's start).
        self.dispatch_children(id, children, closed.is_some(), prepared)
            .await;
        Ok(false)
    }

    /// Carries out a committed step's commands.
    fn dispatch(self: &Arc<Self>, id: &str, commands: Vec<Command>, closed: bool) {
        for command in commands {
            match command {
                Command::ScheduleActivity {
                    op,
                    activity,
                    input,
                    options,
                } if !closed => self.start_activity(ActivityJob {
                    workflow_id: id.to_string(),
                    op,
                    activity,
                    input,
                    options,
                    first_attempt: 1,
                    scheduled_at_ms: self.clock.now_ms(),
                    previous_details: None,
                    cancel: None,
                    fence: None,
                    local: None,
                }),
                Command::RunLocalActivity {
                    op,
                    activity,
                    input,
                    options,
                    attempt,
                    failures,
                } if !closed => self.run_local_activity(
                    id,
                    LocalCall {
                        op,
                        activity,
                        input,
                        options,
                        attempt,
                        failures,
                        stopped: false,
                    },
                ),
                Command::StartTimer { op, fire_at_ms } if !closed => {
                    self.start_timer(id, op, fire_at_ms)
                }
                Command::ScheduleActivity { .. }
                | Command::StartTimer { .. }
                | Command::RunLocalActivity { .. } => {}
                Command::CancelLocalActivity {
                    op,
                    notify_running,
                    reason,
                } => self.cancel_activity(id, op, notify_running, Some(reason)),
                Command::CancelActivity {
                    op,
                    notify_running,
                    reason,
                } => self.cancel_activity(id, op, notify_running, reason),
                Command::CancelTimer { op } => self.cancel_timer(id, op),
                // Carried out by `dispatch_children`.
                Command::StartChild { .. }
                | Command::CancelChild { .. }
                | Command::TerminateChild { .. }
                | Command::CancelExternal { .. } => {}
            }
        }
    }
}

/// Everything the step writes, in one commit.
fn build_commit(
    id: &str,
    record: &WorkflowRecord,
    inbox: &[crate::store::InboxEntry],
    local: &[&Event],
    ran: &mut Ran,
    now_ms: u64,
) -> StepCommit {
    let mut commit = StepCommit {
        workflow_id: id.to_string(),
        expected_version: record.version,
        snapshot: std::mem::take(&mut ran.snapshot),
        state_name: ran.state_name.to_string(),
        history: std::mem::take(&mut ran.history),
        at_ms: now_ms,
        consumed_inbox: inbox.iter().map(|e| e.seq).collect(),
        new_tasks: Vec::new(),
        cancelled_tasks: Vec::new(),
        removed_tasks: Vec::new(),
        new_timers: Vec::new(),
        removed_timers: Vec::new(),
        close: ran.close.clone(),
        fence: None,
        new_workflows: Vec::new(),
        outbox: Vec::new(),
    };
    for event in inbox.iter().map(|e| &e.event).chain(local.iter().copied()) {
        match event {
            Event::ActivityCompleted { op, .. } | Event::ActivityFailed { op, .. } => {
                commit.removed_tasks.push(*op)
            }
            Event::TimerFired { op } => commit.removed_timers.push(*op),
            // A local activity has no task record to remove (R6.7).
            Event::LocalActivityEnded { .. }
            | Event::LocalActivityBackoff { .. }
            | Event::CancelRequested { .. }
            | Event::ChildClosed { .. }
            | Event::ChildCancelRecorded { .. }
            | Event::ExternalCancelDone { .. } => {}
        }
    }
    for command in &ran.commands {
        match command {
            Command::ScheduleActivity {
                op,
                activity,
                input,
                options,
            } => commit.new_tasks.push(TaskRecord {
                workflow_id: id.to_string(),
                op: *op,
                activity: activity.clone(),
                input: input.clone(),
                options: options.clone(),
                // Dispatched right after this commit: the first attempt is recorded with the
                // task, so starting it costs a read, not a write (see the runner).
                attempt: 1,
                heartbeat_details: None,
                last_heartbeat_ms: None,
                scheduled_at_ms: now_ms,
                cancel_requested: false,
                notify_running: false,
            }),
            Command::CancelActivity {
                op, notify_running, ..
            } => commit.cancelled_tasks.push(TaskCancel {
                op: *op,
                notify_running: *notify_running,
            }),
            Command::StartTimer { op, fire_at_ms } => commit.new_timers.push(TimerRecord {
                workflow_id: id.to_string(),
                op: *op,
                fire_at_ms: *fire_at_ms,
            }),
            Command::CancelTimer { op } => commit.removed_timers.push(*op),
            // Children and other workflows are separate records, written on dispatch; a local
            // activity has none (R6.7).
            Command::RunLocalActivity { .. }
            | Command::CancelLocalActivity { .. }
            | Command::StartChild { .. }
            | Command::CancelChild { .. }
            | Command::TerminateChild { .. }
            | Command::CancelExternal { .. } => {}
        }
    }
    commit
}

/// What reached one workflow since its last step ([`Arrival`]s), taken for a step. Dropped
/// without [`consumed`](LocalEvents::consumed), it puts its events back in front of anything
/// that arrived meanwhile.
struct LocalEvents<'a> {
    engine: &'a EngineInner,
    id: &'a str,
    arrivals: Vec<Arrival>,
}

impl<'a> LocalEvents<'a> {
    fn take(engine: &'a EngineInner, id: &'a str) -> Self {
        let arrivals = lock(&engine.local).remove(id).unwrap_or_default();
        LocalEvents {
            engine,
            id,
            arrivals,
        }
    }

    /// The events delivered in memory.
    fn events(&self) -> impl Iterator<Item = &Event> {
        self.arrivals.iter().filter_map(|a| match a {
            Arrival::Event(e) => Some(e),
            Arrival::Inbox(_) | Arrival::Cancel => None,
        })
    }

    /// The events to apply, in arrival order: those delivered in memory, and the store's
    /// inbox entries at the place this engine noted writing them. Inbox entries without such
    /// a mark (written by another process, or noted after this step took its arrivals) come
    /// last: they reached this engine no earlier than the step began.
    fn in_arrival_order(&self, inbox: &[crate::store::InboxEntry]) -> Vec<Event> {
        let mut used = vec![false; inbox.len()];
        let mut events = Vec::with_capacity(inbox.len() + self.arrivals.len());
        for arrival in &self.arrivals {
            let found = match arrival {
                Arrival::Event(e) => {
                    events.push(e.clone());
                    continue;
                }
                Arrival::Inbox(seq) => inbox.iter().position(|e| e.seq == *seq),
                Arrival::Cancel => inbox
                    .iter()
                    .position(|e| matches!(e.event, Event::CancelRequested { .. })),
            };
            // A mark whose entry an earlier step already applied is passed over.
            if let Some(i) = found.filter(|&i| !used[i]) {
                used[i] = true;
                events.push(inbox[i].event.clone());
            }
        }
        events.extend(
            inbox
                .iter()
                .zip(&used)
                .filter(|(_, used)| !**used)
                .map(|(e, _)| e.event.clone()),
        );
        events
    }

    /// The step committed them (or the workflow is closed and needs them no more).
    fn consumed(&mut self) {
        self.arrivals.clear();
    }
}

impl Drop for LocalEvents<'_> {
    fn drop(&mut self) {
        // Marks alone need not go back: their entries stay in the inbox, in order.
        if self.events().next().is_none() || self.engine.shutdown.is_cancelled() {
            return;
        }
        let mut local = lock(&self.engine.local);
        let waiting = local.entry(self.id.to_string()).or_default();
        let newer = std::mem::take(waiting);
        waiting.append(&mut self.arrivals);
        waiting.extend(newer);
    }
}
