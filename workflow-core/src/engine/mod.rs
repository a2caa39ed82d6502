//! The [`Engine`]: registered workflow and activity types, a store, a clock, and the tokio
//! tasks that step workflows, run activities and fire timers.
//!
//! One concern per file:
//! - `stepper.rs`: serialized steps per workflow, commit, then dispatch of the commands;
//! - `runner.rs`: one task per scheduled activity (attempts, timeouts, retries, cancel);
//! - `local.rs`: local activities, run by that runner without a task record (R6.7);
//! - `timers.rs`: durable timers;
//! - `lifecycle.rs`: creating, cancelling and terminating workflows;
//! - `children.rs`: child workflows and cancel requests to other workflows (R7);
//! - `leases.rs`: which workflows this engine steps (claims, renewal, fencing, hand-over).

mod children;
mod leases;
mod lifecycle;
mod local;
mod retention;
mod runner;
mod stepper;
mod timers;

#[cfg(test)]
mod tests;

pub(crate) use lifecycle::{prepare_start, prepare_start_of, terminate_in_store, StartAt};
pub(crate) use stepper::{
    decode_machine, encode_snapshot, panic_message, run_machine, stored_instance,
};

use crate::activity::{DynActivity, RegisteredActivity, StopReason, TaskControl};
use crate::store::{LeaseRequest, MemoryStore, Store, WorkflowRecord};
use crate::{
    Activity, Client, ClientError, Clock, DynMachine, DynWorkflow, Event, Instance, OpId,
    Registered, StoreError, Workflow, WorkflowStatus,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// Runs workflows. Build one with [`Engine::builder`]; talk to it through [`Engine::client`].
///
/// Cloning is cheap and gives another handle on the same engine. Call
/// [`shutdown`](Engine::shutdown) to stop every task it spawned (dropping the handles does
/// not stop them).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

/// Configures and builds an [`Engine`].
pub struct EngineBuilder {
    workflows: HashMap<&'static str, Arc<dyn DynWorkflow>>,
    activities: HashMap<&'static str, Arc<dyn DynActivity>>,
    store: Option<Arc<dyn Store>>,
    clock: Option<Clock>,
    unhandled: crate::UnhandledErrorAction,
    location: Option<String>,
    poll_interval: std::time::Duration,
    cached_machines: usize,
    worker_id: Option<String>,
    lease: std::time::Duration,
    drain: std::time::Duration,
    activity_grace: std::time::Duration,
    retention: Option<std::time::Duration>,
}

/// How long a worker shutting down gives its running activity attempts to end by default
/// ([`EngineBuilder::activity_grace`]).
pub const DEFAULT_ACTIVITY_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// How many decoded machines an engine keeps by default ([`EngineBuilder::cached_machines`]).
pub const DEFAULT_CACHED_MACHINES: usize = 10_000;

/// How long a worker's lease on a workflow lasts unless renewed, by default
/// ([`EngineBuilder::lease_duration`]): the longest a dead worker's workflows wait before
/// another worker takes them over.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(5);

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut workflows: Vec<_> = self.workflows.keys().collect();
        workflows.sort();
        let mut activities: Vec<_> = self.activities.keys().collect();
        activities.sort();
        f.debug_struct("EngineBuilder")
            .field("workflows", &workflows)
            .field("activities", &activities)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts configuring an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
            workflows: HashMap::new(),
            activities: HashMap::new(),
            store: None,
            clock: None,
            unhandled: crate::UnhandledErrorAction::Fail,
            location: None,
            poll_interval: std::time::Duration::from_secs(1),
            cached_machines: DEFAULT_CACHED_MACHINES,
            worker_id: None,
            lease: DEFAULT_LEASE,
            drain: std::time::Duration::from_secs(5),
            activity_grace: DEFAULT_ACTIVITY_GRACE,
            retention: None,
        }
    }

    /// A client to start, cancel, terminate and inspect workflows.
    pub fn client(&self) -> Client {
        Client::new(self.inner.clone())
    }

    /// The store this engine writes to.
    pub fn store(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }

    /// How many workflows this engine holds a lease on (steps, timers and activities run
    /// here for them).
    pub fn held_workflows(&self) -> usize {
        self.inner.holdings.count()
    }

    /// This engine's worker id: the owner named on the leases it holds.
    pub fn worker_id(&self) -> &str {
        &self.inner.holdings.request.owner
    }

    /// Stops the engine and hands its workflows over: it stops claiming and starting steps,
    /// lets the steps in flight commit (up to [`EngineBuilder::drain_timeout`]), tells the
    /// running activity attempts it is shutting down and gives them
    /// [`EngineBuilder::activity_grace`] to end, aborts every task it spawned (activity
    /// runners, timers), and releases its leases so that
    /// another worker continues the workflows at once. Stored data is otherwise untouched,
    /// so another engine on the same store resumes every Running workflow. Waiting
    /// `outcome` calls return [`ClientError::Shutdown`].
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.shutdown.cancel();
        let drained = tokio::time::timeout(inner.drain, async {
            while !lock(&inner.slots).is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("steps still running after the drain timeout are aborted");
        }
        inner.stop_activities().await;
        let mut set = {
            let mut spawner = lock(&inner.spawner);
            spawner.closed = true;
            std::mem::take(&mut spawner.set)
        };
        set.shutdown().await;
        inner.release_leases().await;
        lock(&inner.slots).clear();
        lock(&inner.cache).clear();
        lock(&inner.tasks).clear();
        inner.timers.clear();
        lock(&inner.local).clear();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("shut_down", &self.inner.shutdown.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// Registers a workflow type under [`Workflow::NAME`]. Registering the same name again
    /// replaces the earlier registration.
    pub fn register<W: Workflow>(mut self, workflow: W) -> Self {
        self.workflows
            .insert(W::NAME, Arc::new(Registered(workflow)));
        self
    }

    /// Registers an activity under [`Activity::NAME`].
    pub fn activity<A: Activity>(mut self, activity: A) -> Self {
        self.activities
            .insert(A::NAME, Arc::new(RegisteredActivity(activity)));
        self
    }

    /// The workflows registered so far, by name.
    #[cfg(feature = "cli")]
    pub(crate) fn registered(&self) -> &HashMap<&'static str, Arc<dyn DynWorkflow>> {
        &self.workflows
    }

    /// Keeps everything in memory, in a fresh [`MemoryStore`]: nothing survives the process.
    /// For tests and demos; without this or [`store`](Self::store), the engine uses a SQLite
    /// file (see [`build`](Self::build)).
    pub fn in_memory(mut self) -> Self {
        self.store = Some(Arc::new(MemoryStore::new()));
        self
    }

    /// Uses `store`.
    pub fn store(self, store: impl Store) -> Self {
        self.store_arc(Arc::new(store))
    }

    /// Uses a shared store.
    pub fn store_arc(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses the SQLite file at `path` (created if needed), opened at [`build`](Self::build).
    #[cfg(feature = "sqlite")]
    pub fn sqlite(self, path: impl AsRef<std::path::Path>) -> Self {
        self.location(path.as_ref().to_string_lossy())
    }

    /// Uses the PostgreSQL database at `url` (`postgres://user@host:port/db`; a schema with
    /// `?options=-c search_path=NAME`), connected at [`build`](Self::build). Any number of
    /// workers on any number of machines may use the same database.
    #[cfg(feature = "postgres")]
    pub fn postgres(self, url: impl Into<String>) -> Self {
        self.location(url.into())
    }

    /// Uses the store at `location`: a `postgres://` URL or a SQLite file path, as `WF_DB`
    /// and `--db` take them.
    pub fn location(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self.store = None;
        self
    }

    /// The id this worker's leases are held under (default: host name, process id and a
    /// random suffix, unique per process). Two live engines must never share an id. An
    /// engine started with the id of one that died takes its workflows over at once instead
    /// of waiting for the leases to expire, which suits a supervised worker restarted in place.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// How long a lease lasts unless renewed (default [`DEFAULT_LEASE`]). The engine renews
    /// every third of it; a worker that dies is taken over after at most this long, and a
    /// worker frozen for longer loses its workflows (its later writes are refused).
    pub fn lease_duration(mut self, lease: std::time::Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long [`Engine::shutdown`] waits for steps in flight to commit before aborting
    /// them (default 5 s).
    pub fn drain_timeout(mut self, drain: std::time::Duration) -> Self {
        self.drain = drain;
        self
    }

    /// What an error escaping a workflow does: `Fail` (the default) closes it Failed; `Cancel`
    /// cancels it instead, so that the cancellation handlers of the code the error leaves run and
    /// it closes Canceled (WF `OnUnhandledException`,
    /// [R13](crate::semantics#r13-unhandled-errors)).
    pub fn unhandled_errors(mut self, action: crate::UnhandledErrorAction) -> Self {
        self.unhandled = action;
        self
    }

    /// How often the engine looks at the store for work other processes added (events,
    /// new workflows, expired leases) even without a hint. Stores that send hints (SQLite's
    /// change counter, PostgreSQL's `LISTEN/NOTIFY`) wake it within milliseconds; this is the
    /// safety net behind them. Real time, not engine time. Default 1 s.
    pub fn poll_interval(mut self, interval: std::time::Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How many workflows' decoded machines to keep between steps (default
    /// [`DEFAULT_CACHED_MACHINES`]). A workflow whose machine is kept steps without reading
    /// and decoding its snapshot; past the limit, an arbitrary one is dropped and decoded
    /// from the store at its next step. Each kept machine costs about 2 KB of RAM, so a
    /// worker holding a million parked workflows keeps only the limit's worth in memory.
    /// `0` decodes the snapshot at every step.
    pub fn cached_machines(mut self, limit: usize) -> Self {
        self.cached_machines = limit;
        self
    }

    /// How long [`Engine::shutdown`] gives running activity attempts to end once they are told
    /// the worker is shutting down (at their next heartbeat, [`StopReason::WorkerShuttingDown`]),
    /// before it aborts them (default [`DEFAULT_ACTIVITY_GRACE`], 1 s). What an attempt
    /// returns meanwhile is not recorded: its task runs again on the worker that takes the
    /// workflow over (activities run at least once).
    pub fn activity_grace(mut self, grace: std::time::Duration) -> Self {
        self.activity_grace = grace;
        self
    }

    /// Purges every workflow that has been closed for longer than `period`, with its
    /// history (none by default: closed workflows are kept until purged with
    /// [`Client::purge`] or `wf purge`). The purge runs at build and then every quarter of
    /// the period; see the `retention` module for the details.
    pub fn retention(mut self, period: std::time::Duration) -> Self {
        self.retention = Some(period);
        self
    }

    /// Uses `clock` for engine time instead of a clock starting at `build`.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the engine and recovers the Running workflows found in the store: their timers
    /// are re-armed from the stored deadlines, the activity tasks that were in flight are
    /// dispatched again (activities run at least once), and workflows with waiting events or
    /// that never stepped are stepped.
    ///
    /// Without [`store`](Self::store) or [`in_memory`](Self::in_memory), the store is the
    /// SQLite file named by the `WF_DB` environment variable, or `workflows.db` in the
    /// current directory, created if needed: workflows are durable by default. (Built
    /// without the `sqlite` feature, the default is a [`MemoryStore`].)
    pub async fn build(self) -> Result<Engine, ClientError> {
        let store = match (self.store, self.location) {
            (Some(store), _) => store,
            (None, Some(location)) => crate::store::open_location(&location).await?,
            (None, None) => default_store().await?,
        };
        let owner = self.worker_id.unwrap_or_else(default_worker_id);
        let duration_ms = u64::try_from(self.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let inner = Arc::new(EngineInner {
            store,
            workflows: self.workflows,
            activities: self.activities,
            clock: self.clock.unwrap_or_default(),
            unhandled: self.unhandled,
            spawner: Mutex::new(Spawner::default()),
            slots: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            cache_limit: self.cached_machines,
            tasks: Mutex::new(HashMap::new()),
            timers: Arc::new(timers::TimerQueue::default()),
            waiters: Mutex::new(HashMap::new()),
            local: Mutex::new(HashMap::new()),
            holdings: leases::Holdings::new(LeaseRequest { owner, duration_ms }),
            drain: self.drain,
            activity_grace: self.activity_grace,
            shutdown: CancellationToken::new(),
        });
        inner.start_timer_driver();
        // Leases left by an earlier run under this id are ours to take back at once. A
        // store that fails here (a transient error, a deadlock victim) does not stop the
        // worker: the watcher claims again at its next look.
        inner.release_leases().await;
        match inner.claim_available().await {
            Ok(0) => {}
            Ok(claimed) => tracing::info!(workflows = claimed, "resuming running workflows"),
            Err(e) => tracing::warn!("claiming workflows at start-up failed; retrying: {e}"),
        }
        inner.watch_store(self.poll_interval);
        if let Some(period) = self.retention {
            inner.start_retention(period);
        }
        Ok(Engine { inner })
    }
}

/// Something that reached a workflow since its last step (see `EngineInner::local`).
#[derive(Debug, Clone)]
pub(crate) enum Arrival {
    /// An event delivered in memory; the step that applies it commits it.
    Event(Event),
    /// The store's inbox entry with this sequence number, written by this engine.
    Inbox(u64),
    /// The workflow's cancel request, written to the store's inbox by this engine (there is
    /// at most one).
    Cancel,
}

/// The file [`EngineBuilder::build`] uses when no store was chosen.
pub const DEFAULT_DATABASE: &str = "workflows.db";

#[cfg(feature = "sqlite")]
async fn default_store() -> Result<Arc<dyn Store>, ClientError> {
    let location = std::env::var("WF_DB").unwrap_or_else(|_| DEFAULT_DATABASE.into());
    Ok(crate::store::open_location(&location).await?)
}

#[cfg(not(feature = "sqlite"))]
async fn default_store() -> Result<Arc<dyn Store>, ClientError> {
    Ok(Arc::new(MemoryStore::new()))
}

/// A worker id unique per process: host name, process id, and a random suffix (so that a
/// restarted process with a recycled pid is not taken for the dead one).
fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let suffix = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{host}-{}-{suffix:04x}", std::process::id())
}

/// Recovers from a poisoned lock: the data behind our locks stays consistent because no code
/// path panics while holding one.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Spawner {
    set: JoinSet<()>,
    closed: bool,
}

/// A decoded machine kept between steps, valid for one stored version.
pub(crate) struct CachedMachine {
    pub(crate) version: u64,
    pub(crate) machine: Box<dyn DynMachine>,
    pub(crate) instance: Instance,
}

/// The engine's shared state.
pub(crate) struct EngineInner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) workflows: HashMap<&'static str, Arc<dyn DynWorkflow>>,
    pub(crate) activities: HashMap<&'static str, Arc<dyn DynActivity>>,
    pub(crate) clock: Clock,
    pub(crate) unhandled: crate::UnhandledErrorAction,
    spawner: Mutex<Spawner>,
    /// Workflows with a stepper running; the flag says "step again" (an event arrived
    /// while it was stepping).
    slots: Mutex<HashMap<String, bool>>,
    cache: Mutex<HashMap<String, CachedMachine>>,
    cache_limit: usize,
    tasks: Mutex<HashMap<String, HashMap<OpId, Arc<TaskControl>>>>,
    timers: Arc<timers::TimerQueue>,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    /// What reached each workflow since its last step, in arrival order: activity results
    /// and fired timers delivered in memory (the step commits them), and marks of the events
    /// this engine wrote to the store's inbox, so that the step applies everything in the
    /// order it arrived; see `stepper.rs`.
    local: Mutex<HashMap<String, Vec<Arrival>>>,
    /// The workflows this engine holds a lease on, with their fences.
    pub(crate) holdings: leases::Holdings,
    /// How long `shutdown` lets steps in flight commit.
    drain: std::time::Duration,
    activity_grace: std::time::Duration,
    pub(crate) shutdown: CancellationToken,
}

impl EngineInner {
    /// Spawns an engine task, unless the engine has shut down.
    pub(crate) fn spawn<F>(&self, fut: F) -> Option<AbortHandle>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut spawner = lock(&self.spawner);
        if spawner.closed {
            return None;
        }
        while spawner.set.try_join_next().is_some() {}
        Some(spawner.set.spawn(fut))
    }

    /// Delivers an event to a workflow's inbox and wakes its stepper. A workflow that closed
    /// (or vanished) meanwhile does not need it.
    /// Delivers an event to a workflow's inbox. A store failure is retried with back-off
    /// until it works, the workflow closes, or the engine shuts down: an activity's result or
    /// a timer is never dropped because the store hiccuped.
    pub(crate) async fn report(self: &Arc<Self>, id: &str, event: Event) {
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            match self.store.enqueue_event(id, event.clone()).await {
                Ok(seq) => {
                    self.arrived(id, Arrival::Inbox(seq));
                    return self.notify(id);
                }
                Err(StoreError::AlreadyClosed { .. }) | Err(StoreError::NotFound(_)) => {
                    tracing::debug!(workflow = id, "event dropped: the workflow is closed");
                    return;
                }
                Err(e) => {
                    tracing::warn!(
                        workflow = id,
                        "could not deliver an event, retrying in {delay:?}: {e}"
                    );
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => return,
            }
            delay = (delay * 2).min(std::time::Duration::from_secs(30));
        }
    }

    /// Delivers an activity's result or a fired timer of a workflow this engine runs, in
    /// memory: the workflow's next step applies it and commits it with the step, so it
    /// costs no write of its own. Events from elsewhere (cancels, children, other
    /// processes) go through the store's inbox with [`report`](Self::report).
    ///
    /// `epoch`, when given, is the lease under which the event was produced (an activity's
    /// runner): it is dropped unless the workflow is still held at that epoch, so that the
    /// result of a run stopped when the workflow was lost never reaches a later holding.
    pub(crate) fn deliver_local(self: &Arc<Self>, id: &str, event: Event, epoch: Option<u64>) {
        // A workflow lost to another worker: its new holder runs this again.
        let held = match epoch {
            Some(epoch) => self.fence(id).is_some_and(|f| f.epoch == epoch),
            None => self.holdings.holds(id),
        };
        if self.shutdown.is_cancelled() || !held {
            return;
        }
        self.arrived(id, Arrival::Event(event));
        self.notify(id);
    }

    /// Notes that something reached workflow `id`, in arrival order. Only for a workflow
    /// held here: another worker's step reads the store's inbox.
    pub(crate) fn arrived(&self, id: &str, arrival: Arrival) {
        if !self.holdings.holds(id) {
            return;
        }
        lock(&self.local)
            .entry(id.to_string())
            .or_default()
            .push(arrival);
    }

    /// Waits until workflow `id` is closed and returns its record.
    pub(crate) async fn wait_closed(&self, id: &str) -> Result<WorkflowRecord, ClientError> {
        loop {
            let notify = lock(&self.waiters)
                .entry(id.to_string())
                .or_default()
                .clone();
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let record = self.store.load_workflow(id).await?;
            if record.status != WorkflowStatus::Running {
                return Ok(record);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = self.shutdown.cancelled() => return Err(ClientError::Shutdown),
            }
        }
    }

    /// Runtime clean-up once a workflow closed (completed, failed, canceled or terminated):
    /// stops its timers, stops retries of its activities, and wakes outcome waiters.
    /// Forgets a workflow that closed (with `status`, when known), here or in another
    /// process: its timers stop, and its running activity attempts are told at their next
    /// heartbeat ([`StopReason::WorkflowClosed`]).
    pub(crate) fn on_closed(&self, id: &str, status: Option<WorkflowStatus>) {
        self.holdings.forget(id);
        lock(&self.cache).remove(id);
        lock(&self.local).remove(id);
        self.timers.remove_workflow(id);
        if let Some(tasks) = lock(&self.tasks).get(id) {
            for control in tasks.values() {
                control.workflow_closed(status);
            }
        }
        if let Some(notify) = lock(&self.waiters).remove(id) {
            notify.notify_waiters();
        }
    }

    pub(crate) fn ensure_running(&self) -> Result<(), ClientError> {
        if self.shutdown.is_cancelled() {
            Err(ClientError::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Keeps a workflow's machine for its next step, dropping another one if the cache is
    /// full (the dropped one is decoded from its snapshot when it next steps).
    pub(crate) fn cache_machine(&self, id: &str, cached: CachedMachine) {
        let mut cache = lock(&self.cache);
        if cache.len() >= self.cache_limit && !cache.contains_key(id) {
            let Some(victim) = cache.keys().next().cloned() else {
                return; // a limit of 0: nothing is kept
            };
            cache.remove(&victim);
        }
        cache.insert(id.to_string(), cached);
    }
}

impl EngineInner {
    /// Tells every running activity attempt the worker is shutting down (at its next
    /// heartbeat) and waits up to the grace period for them to end.
    async fn stop_activities(&self) {
        let running: Vec<Arc<TaskControl>> = lock(&self.tasks)
            .values()
            .flat_map(|tasks| tasks.values().cloned())
            .collect();
        if running.is_empty() {
            return;
        }
        for control in &running {
            control.stop_for(StopReason::WorkerShuttingDown, true);
        }
        let ended = tokio::time::timeout(self.activity_grace, async {
            while !lock(&self.tasks).is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await;
        if ended.is_err() {
            let left: usize = lock(&self.tasks).values().map(HashMap::len).sum();
            tracing::warn!(
                attempts = left,
                "activity attempts still running after the grace period are aborted; their \
                 tasks run again on the worker that takes their workflows over"
            );
        }
    }
}
