//! The [`Client`]: start, cancel, terminate, wait for and inspect workflows.

use crate::engine::{terminate_in_store, EngineInner, StartAt};
use crate::history::HistoryEvent;
use crate::options::{IdReusePolicy, StartOptions};
use crate::store::{Purge, Store, StoreChange, TaskRecord, WorkflowClose, WorkflowRecord};
use crate::time::Clock;
use crate::workflow::Registered;
use crate::{
    ClientError, ErrorRecord, Event, ExecutionTimeout, Instance, PendingOperation, Workflow,
    WorkflowError,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// Where a workflow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkflowStatus {
    /// Still running (possibly stuck: see [`Description::stuck`]).
    Running,
    /// The workflow function returned `Ok` (R2.1).
    Completed,
    /// A cancel was requested and the function returned a cancellation error (R2.2).
    Canceled,
    /// The function returned any other error (R2.3).
    Failed,
    /// Closed by [`Client::terminate`]; no workflow code ran.
    Terminated,
}

impl WorkflowStatus {
    /// True for every status but Running.
    pub fn is_closed(self) -> bool {
        self != WorkflowStatus::Running
    }

    /// The lowercase name, as `Display` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Running => "running",
            WorkflowStatus::Completed => "completed",
            WorkflowStatus::Canceled => "canceled",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Terminated => "terminated",
        }
    }
}

impl fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WorkflowStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "running" => Ok(WorkflowStatus::Running),
            "completed" => Ok(WorkflowStatus::Completed),
            "canceled" | "cancelled" => Ok(WorkflowStatus::Canceled),
            "failed" => Ok(WorkflowStatus::Failed),
            "terminated" => Ok(WorkflowStatus::Terminated),
            other => Err(format!(
                "unknown workflow status `{other}`; expected running, completed, canceled, \
                 failed or terminated"
            )),
        }
    }
}

/// How a workflow closed, with its typed result or error.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<O, E> {
    /// The workflow returned `Ok` (R2.1).
    Completed(O),
    /// A cancel was requested and the workflow returned a cancellation error (R2.2).
    Canceled(E),
    /// The workflow returned another error (R2.3).
    Failed(E),
    /// The workflow was terminated with this reason.
    Terminated(String),
}

impl<O, E> Outcome<O, E> {
    /// True for [`Outcome::Completed`].
    pub fn is_completed(&self) -> bool {
        matches!(self, Outcome::Completed(_))
    }

    /// True for [`Outcome::Canceled`].
    pub fn is_canceled(&self) -> bool {
        matches!(self, Outcome::Canceled(_))
    }

    /// True for [`Outcome::Failed`].
    pub fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }

    /// True for [`Outcome::Terminated`].
    pub fn is_terminated(&self) -> bool {
        matches!(self, Outcome::Terminated(_))
    }

    /// The final status this outcome corresponds to.
    pub fn status(&self) -> WorkflowStatus {
        match self {
            Outcome::Completed(_) => WorkflowStatus::Completed,
            Outcome::Canceled(_) => WorkflowStatus::Canceled,
            Outcome::Failed(_) => WorkflowStatus::Failed,
            Outcome::Terminated(_) => WorkflowStatus::Terminated,
        }
    }
}

/// How a workflow closed ([`Outcome`]), with the failures of its cleanup: what
/// [`WorkflowRun::outcome_with_cleanup`] returns.
///
/// A workflow can complete, or close Canceled as asked, while part of its cleanup failed: a
/// compensation or confirmation handler that failed (R12), an operation awaited in an
/// `on_cancel!` handler that resolved with an error (R4.3). The outcome alone does not say
/// so; `cleanup_failures` does, one sentence each, in the order they happened (the same
/// sentences as [`Description::handler_failures`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OutcomeWithCleanup<O, E> {
    /// How the workflow closed.
    pub outcome: Outcome<O, E>,
    /// What failed in its cleanup; empty when nothing did.
    pub cleanup_failures: Vec<String>,
}

/// What `describe` reports about a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Description {
    /// The workflow id.
    pub id: String,
    /// The registered workflow type.
    pub workflow_type: String,
    /// Where it stands.
    pub status: WorkflowStatus,
    /// Name of the machine's current state.
    pub state: String,
    /// Number of committed steps.
    pub version: u64,
    /// The reason of the cancel request, if one was recorded (R1.5).
    pub cancel_reason: Option<String>,
    /// Operations that have not resolved, and what each waits for.
    pub pending: Vec<PendingOperation>,
    /// Activity tasks not yet consumed by a step: attempt and last heartbeat.
    pub tasks: Vec<TaskRecord>,
    /// Why the workflow cannot make progress, if it cannot (R2.4).
    pub stuck: Option<crate::WorkflowFault>,
    /// The result, once Completed.
    pub result: Option<serde_json::Value>,
    /// The error message once Canceled or Failed, the reason once Terminated.
    pub error: Option<String>,
    /// Engine time of creation, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Engine time of the last change, ms since the Unix epoch.
    pub updated_at_ms: u64,
    /// The worker holding the workflow's lease, while one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<crate::store::Lease>,
    /// Failures of the workflow's cleanup, in order, each as a sentence: compensation and
    /// confirmation handlers that failed (R12), and operations awaited in a cancellation
    /// handler (`on_cancel!`) that resolved with an error (R4.3); kept after it closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handler_failures: Vec<String>,
    /// The execution timeout it was started with, and its deadline (R5.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_timeout: Option<ExecutionTimeout>,
}

impl Description {
    /// Reads the description of workflow `id` from a store (what [`Client::describe`]
    /// returns; tools that read a store without an engine use this).
    pub async fn load(store: &dyn crate::Store, id: &str) -> Result<Self, crate::StoreError> {
        let mut record = store.load_workflow(id).await?;
        let tasks = described_tasks(store, &mut record).await?;
        let mut description = Description::new(record, tasks);
        description.note_arrivals(store).await;
        Ok(description)
    }

    /// Says, of each pending operation whose result already waits in the inbox, that it has
    /// arrived and when it is applied: at the next step, or, for a stuck workflow, once the
    /// fault is mended. (The snapshot is only rewritten by a step, so without this a stuck
    /// parent would still show "waiting for child" after its child completed.)
    async fn note_arrivals(&mut self, store: &dyn crate::Store) {
        if self.pending.is_empty() || self.status.is_closed() {
            return;
        }
        // The description stands without the inbox if it cannot be read.
        let Ok(inbox) = store.read_inbox(&self.id).await else {
            return;
        };
        let when = if self.stuck.is_some() {
            "applied once the workflow's fault is mended (it is stuck)"
        } else {
            "applied at the workflow's next step"
        };
        for entry in &inbox {
            let (op, what) = match &entry.event {
                Event::ActivityCompleted { op, .. } => (*op, "the activity completed".to_string()),
                Event::ActivityFailed { op, failure } => {
                    (*op, format!("the activity failed ({failure})"))
                }
                Event::TimerFired { op } => (*op, "the timer fired".to_string()),
                Event::ChildClosed { op, outcome } => (*op, format!("the child {outcome}")),
                Event::ChildCancelRecorded { op } => {
                    (*op, "the child recorded the cancel request".to_string())
                }
                Event::ExternalCancelDone { op, .. } => {
                    (*op, "the cancel request was answered".to_string())
                }
                // Delivered in memory by the worker that ran it, never through the inbox.
                Event::LocalActivityEnded { .. } | Event::LocalActivityBackoff { .. } => continue,
                Event::CancelRequested { .. } => continue,
            };
            if let Some(pending) = self.pending.iter_mut().find(|p| p.op == op) {
                pending.waiting_for = format!("nothing: {what}; {when}");
            }
        }
    }

    /// Reads the descriptions of all workflows, or of those with `status`, ordered by id
    /// (what [`Client::list`] returns).
    pub async fn load_all(
        store: &dyn crate::Store,
        status: Option<WorkflowStatus>,
    ) -> Result<Vec<Self>, crate::StoreError> {
        let records = store.list_workflows(status).await?;
        let mut out = Vec::with_capacity(records.len());
        for mut record in records {
            let tasks = if record.status == WorkflowStatus::Running {
                described_tasks(store, &mut record).await?
            } else {
                Vec::new()
            };
            let mut description = Description::new(record, tasks);
            // Only a stuck workflow's snapshot lags behind its inbox for long.
            if description.stuck.is_some() {
                description.note_arrivals(store).await;
            }
            out.push(description);
        }
        Ok(out)
    }

    /// The description of a stored workflow row and its activity tasks.
    pub fn new(record: WorkflowRecord, tasks: Vec<TaskRecord>) -> Self {
        let instance: Option<Instance> = crate::engine::stored_instance(&record.snapshot);
        // A closed workflow waits for nothing, whatever its last snapshot held (a terminate
        // does not run the step that would empty it).
        let pending = match &instance {
            Some(instance) if !record.status.is_closed() => instance.pending(),
            _ => Vec::new(),
        };
        let handler_failures = instance
            .as_ref()
            .map(|i| i.handler_failures().to_vec())
            .unwrap_or_default();
        let execution_timeout = instance
            .as_ref()
            .and_then(|i| i.execution_timeout().copied());
        // A cancel request the workflow made itself (its execution timeout, R5.3) is in its
        // snapshot, not in the column a client's request writes.
        let cancel_reason = record.cancel_reason.or_else(|| {
            instance
                .as_ref()
                .and_then(|i| i.cancel_reason().map(str::to_string))
        });
        let (result, error) = match record.close {
            Some(WorkflowClose::Completed { result }) => (Some(result), None),
            Some(WorkflowClose::Canceled { error }) | Some(WorkflowClose::Failed { error }) => {
                (None, Some(error.message))
            }
            Some(WorkflowClose::Terminated { reason }) => {
                (None, Some(format!("terminated: {reason}")))
            }
            None => (None, None),
        };
        Description {
            id: record.id,
            workflow_type: record.workflow_type,
            status: record.status,
            state: record.state_name,
            version: record.version,
            cancel_reason,
            pending,
            tasks,
            stuck: record.stuck,
            result,
            error,
            created_at_ms: record.created_at_ms,
            updated_at_ms: record.updated_at_ms,
            handler_failures,
            execution_timeout,
            lease: record.lease,
        }
    }
}

/// The activity tasks of `record`'s workflow, for its description. When one does not read
/// ([`StoreError::Damaged`](crate::StoreError::Damaged)), the list is left empty and the
/// fault is shown as the workflow's `stuck`, unless it already has a mark (a worker records
/// this one too once it claims the workflow).
async fn described_tasks(
    store: &dyn crate::Store,
    record: &mut WorkflowRecord,
) -> Result<Vec<TaskRecord>, crate::StoreError> {
    match store.tasks(&record.id).await {
        Err(crate::StoreError::Damaged { fault, .. }) => {
            record.stuck.get_or_insert(fault);
            Ok(Vec::new())
        }
        answer => answer,
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const W: usize = 10;
        writeln!(f, "{:<W$}{}", "workflow", self.id)?;
        writeln!(f, "{:<W$}{}", "type", self.workflow_type)?;
        writeln!(f, "{:<W$}{}", "status", self.status)?;
        if let Some(stuck) = &self.stuck {
            writeln!(f, "{:<W$}{}", "STUCK", stuck)?;
        }
        writeln!(f, "{:<W$}{}", "state", self.state)?;
        writeln!(f, "{:<W$}{}", "steps", self.version)?;
        writeln!(
            f,
            "{:<W$}{}",
            "started",
            crate::time::format_ms(self.created_at_ms)
        )?;
        writeln!(
            f,
            "{:<W$}{}",
            "updated",
            crate::time::format_ms(self.updated_at_ms)
        )?;
        if let Some(lease) = &self.lease {
            writeln!(
                f,
                "{:<W$}{} (lease #{}, until {})",
                "worker",
                lease.owner,
                lease.epoch,
                crate::time::format_ms(lease.until_ms)
            )?;
        } else if self.status == crate::WorkflowStatus::Running {
            writeln!(f, "{:<W$}none yet (a worker claims it)", "worker")?;
        }
        if let Some(timeout) = &self.execution_timeout {
            writeln!(
                f,
                "{:<W$}{} (execution timeout {})",
                "deadline",
                crate::time::format_date_ms(timeout.deadline_ms),
                crate::time::format_duration_ms(timeout.after_ms)
            )?;
        }
        match &self.cancel_reason {
            Some(reason) => writeln!(f, "{:<W$}requested (reason: {reason:?})", "cancel")?,
            None => writeln!(f, "{:<W$}not requested", "cancel")?,
        }
        let mut label = "pending";
        if self.pending.is_empty() && self.status == crate::WorkflowStatus::Running {
            writeln!(f, "{label:<W$}nothing")?;
        }
        for p in &self.pending {
            writeln!(f, "{label:<W$}{} waiting for {}", p.op, p.waiting_for)?;
            label = "";
        }
        let mut label = "tasks";
        for t in &self.tasks {
            write!(
                f,
                "{label:<W$}{} activity `{}`: attempt {}",
                t.op, t.activity, t.attempt
            )?;
            match t.last_heartbeat_ms {
                Some(ms) => write!(f, ", last heartbeat {}", crate::time::format_ms(ms))?,
                None => write!(f, ", no heartbeat yet")?,
            }
            if t.cancel_requested {
                write!(
                    f,
                    ", cancel {}",
                    if t.notify_running {
                        "sent"
                    } else {
                        "(abandoned)"
                    }
                )?;
            }
            writeln!(f)?;
            label = "";
        }
        if let Some(result) = &self.result {
            writeln!(f, "{:<W$}{result}", "result")?;
        }
        if let Some(error) = &self.error {
            writeln!(f, "{:<W$}{error}", "error")?;
        }
        for failure in &self.handler_failures {
            writeln!(f, "{:<W$}{failure}", "CLEANUP")?;
        }
        Ok(())
    }
}

/// Starts, cancels, terminates, waits for and inspects workflows. Cheap to clone.
///
/// Two kinds: [`Engine::client`](crate::Engine::client) gives the client of a worker (the
/// workflows it starts are stepped by that worker at once), and [`Client::connect`] a client
/// that runs no workflow itself and only talks to the store: what a web server or a script
/// embeds, in another process or on another machine than the workers. Both wait for
/// outcomes on the store's change hints, not by polling.
///
/// ```no_run
/// # use workflow_core::prelude::*;
/// # #[workflow] async fn checkout(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> { Ok(n) }
/// # async fn demo() -> Result<(), workflow_core::ClientError> {
/// let client = Client::connect("postgres://postgres@127.0.0.1/shop").await?;
/// let run = client.start(checkout, "order-42", 42).await?;   // a worker claims it
/// client.cancel("order-42", "customer asked").await?;
/// println!("{:?}", run.outcome().await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    /// The client of a worker engine.
    Engine(Arc<EngineInner>),
    /// A client of the store alone.
    Store(Arc<StoreClient>),
}

struct StoreClient {
    store: Arc<dyn Store>,
    clock: Clock,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.backend {
            Backend::Engine(_) => "engine",
            Backend::Store(_) => "store",
        };
        f.debug_struct("Client")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

pub(crate) fn codec(what: impl Into<String>, e: impl fmt::Display) -> ClientError {
    ClientError::Codec {
        what: what.into(),
        message: e.to_string(),
    }
}

/// How often a client waiting for an outcome re-reads the workflow without a hint.
const OUTCOME_POLL: std::time::Duration = std::time::Duration::from_secs(1);

impl Client {
    pub(crate) fn new(engine: Arc<EngineInner>) -> Self {
        Client {
            backend: Backend::Engine(engine),
        }
    }

    /// A client that is not a worker, on the store at `location`: a `postgres://` URL or the
    /// path of a SQLite file, as `WF_DB` takes them. It starts, cancels, terminates,
    /// inspects and awaits workflows; workers on the same store run them.
    pub async fn connect(location: &str) -> Result<Client, ClientError> {
        Ok(Client::of_store(
            crate::store::open_location(location).await?,
        ))
    }

    /// A client that is not a worker, on `store`.
    pub fn of_store(store: Arc<dyn Store>) -> Client {
        Client {
            backend: Backend::Store(Arc::new(StoreClient {
                store,
                clock: Clock::default(),
            })),
        }
    }

    /// The store this client talks to.
    pub fn store(&self) -> Arc<dyn Store> {
        match &self.backend {
            Backend::Engine(engine) => engine.store.clone(),
            Backend::Store(remote) => remote.store.clone(),
        }
    }

    fn store_ref(&self) -> &dyn Store {
        match &self.backend {
            Backend::Engine(engine) => &*engine.store,
            Backend::Store(remote) => &*remote.store,
        }
    }

    /// Starts workflow `workflow` under `id` and triggers its first step.
    ///
    /// Errors: [`ClientError::UnknownWorkflow`] if `W` is not registered with this client's
    /// engine, [`ClientError::AlreadyExists`] if `id` is taken.
    pub async fn start<W: Workflow>(
        &self,
        workflow: W,
        id: impl Into<String>,
        input: W::Input,
    ) -> Result<WorkflowRun<W>, ClientError> {
        self.start_with(workflow, id, input, StartOptions::default())
            .await
    }

    /// [`start`](Self::start) with options: with an [`IdReusePolicy`] other than `Reject`, a
    /// closed workflow holding the id is deleted (with its history) to make way, while a
    /// Running one still makes the start fail with [`ClientError::AlreadyExists`].
    pub async fn start_with<W: Workflow>(
        &self,
        workflow: W,
        id: impl Into<String>,
        input: W::Input,
        options: StartOptions,
    ) -> Result<WorkflowRun<W>, ClientError> {
        let id = id.into();
        let input = serde_json::to_value(&input)
            .map_err(|e| codec(format!("the input of workflow `{}`", W::NAME), e))?;
        let timeout = options.execution_timeout;
        match self.create(workflow, &id, input.clone(), timeout).await {
            Err(ClientError::AlreadyExists(_)) if self.make_way(&id, options.id_reuse).await? => {
                self.create(workflow, &id, input, timeout).await?
            }
            other => other?,
        }
        Ok(self.handle(workflow, id))
    }

    /// Deletes the closed workflow `id` if `policy` lets a new one take its id; whether it
    /// did.
    async fn make_way(&self, id: &str, policy: IdReusePolicy) -> Result<bool, ClientError> {
        let Some(purge) = Purge::to_reuse(id, policy) else {
            return Ok(false);
        };
        let purged = self.store_ref().purge_closed(&purge).await?;
        if !purged.is_empty() {
            tracing::info!(
                workflow = id,
                "a closed workflow made way for a new one with its id"
            );
        }
        Ok(!purged.is_empty())
    }

    /// Deletes the closed workflows `purge` selects, with their history (see
    /// [`Store::purge_closed`]); returns their ids. Running workflows are never deleted.
    pub async fn purge(&self, purge: &Purge) -> Result<Vec<String>, ClientError> {
        Ok(self.store_ref().purge_closed(purge).await?)
    }

    /// Stores a new workflow `workflow` with `input` (and its execution timeout, R5.3) and
    /// has it stepped.
    async fn create<W: Workflow>(
        &self,
        workflow: W,
        id: &str,
        input: serde_json::Value,
        execution_timeout: Option<std::time::Duration>,
    ) -> Result<(), ClientError> {
        match &self.backend {
            Backend::Engine(engine) => {
                engine.ensure_running()?;
                engine
                    .create_workflow(W::NAME, id, input, execution_timeout)
                    .await
            }
            Backend::Store(remote) => {
                let start = StartAt {
                    execution_timeout,
                    ..StartAt::at(remote.clock.now_ms())
                };
                let (new, _, _) =
                    crate::engine::prepare_start_of(&Registered(workflow), id, input, start)?;
                Ok(remote.store.create_workflow(new).await?)
            }
        }
    }

    /// Starts a workflow by registered name with a JSON input (for tools). An input that does
    /// not match the workflow's input type is a [`ClientError::Codec`] and nothing is stored.
    /// Needs the workflow code: on a client from [`Client::connect`], use
    /// [`start`](Client::start) with the workflow type.
    pub async fn start_json(
        &self,
        workflow_name: &str,
        id: impl Into<String>,
        input: serde_json::Value,
    ) -> Result<(), ClientError> {
        let Backend::Engine(engine) = &self.backend else {
            return Err(ClientError::StartByName(workflow_name.to_string()));
        };
        engine.ensure_running()?;
        let id = id.into();
        engine
            .create_workflow(workflow_name, &id, input, None)
            .await
    }

    /// Requests cancellation of workflow `id` with a reason (R1). Returns as soon as the
    /// request is recorded; the workflow sees it at its next step, on whichever worker holds
    /// it. A second request changes nothing (R1.4).
    ///
    /// Errors: [`ClientError::NotFound`] for an unknown id, [`ClientError::AlreadyClosed`]
    /// for a closed workflow (R1.2).
    pub async fn cancel(&self, id: &str, reason: impl Into<String>) -> Result<(), ClientError> {
        let reason = reason.into();
        match &self.backend {
            Backend::Engine(engine) => {
                engine.ensure_running()?;
                Ok(engine.request_cancel(id, &reason).await?)
            }
            Backend::Store(remote) => {
                remote.store.request_cancel(id, &reason).await?;
                Ok(())
            }
        }
    }

    /// Closes workflow `id` as Terminated without running any more of its code. Its timers
    /// stop and its activities are not retried; running activity attempts are left to end on
    /// their own and their results are dropped. A child workflow's parent is told; the
    /// workflow's own running children get their parent close policy (R7).
    pub async fn terminate(&self, id: &str, reason: impl Into<String>) -> Result<(), ClientError> {
        let reason = reason.into();
        match &self.backend {
            Backend::Engine(engine) => Ok(engine.terminate_workflow(id, &reason).await?),
            Backend::Store(remote) => {
                let at_ms = remote.clock.now_ms();
                terminate_in_store(&*remote.store, id, &reason, at_ms).await?;
                Ok(())
            }
        }
    }

    /// Status, current state, cancel request, pending operations, activity attempts, stuck
    /// message and result of workflow `id`.
    pub async fn describe(&self, id: &str) -> Result<Description, ClientError> {
        Ok(Description::load(self.store_ref(), id).await?)
    }

    /// The history of workflow `id`.
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryEvent>, ClientError> {
        Ok(self.store_ref().history(id).await?)
    }

    /// Descriptions of all workflows, or of those with `status`, ordered by id.
    pub async fn list(
        &self,
        status: Option<WorkflowStatus>,
    ) -> Result<Vec<Description>, ClientError> {
        Ok(Description::load_all(self.store_ref(), status).await?)
    }

    /// A typed handle on workflow `id`, started earlier (possibly by another process).
    pub fn handle<W: Workflow>(&self, workflow: W, id: impl Into<String>) -> WorkflowRun<W> {
        let _ = workflow;
        WorkflowRun {
            client: self.clone(),
            id: id.into(),
            _workflow: PhantomData,
        }
    }

    /// Waits until workflow `id` is closed and returns its record.
    async fn wait_closed(&self, id: &str) -> Result<WorkflowRecord, ClientError> {
        let remote = match &self.backend {
            Backend::Engine(engine) => return engine.wait_closed(id).await,
            Backend::Store(remote) => remote,
        };
        // Subscribed before the first read, so that a close in between is not missed.
        let mut changes = remote.store.changes();
        loop {
            let record = remote.store.load_workflow(id).await?;
            if record.status != WorkflowStatus::Running {
                return Ok(record);
            }
            let Some(changes) = changes.as_mut() else {
                tokio::time::sleep(OUTCOME_POLL).await;
                continue;
            };
            let _ = tokio::time::timeout(OUTCOME_POLL, async {
                loop {
                    match changes.recv().await {
                        Ok(StoreChange::Closed(closed)) if closed == id => return,
                        Ok(StoreChange::Any)
                        | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                        Ok(_) => continue,
                        // The hints stopped: the poll alone remains.
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    }
                }
            })
            .await;
        }
    }

    /// Waits until workflow `id` closes and returns its outcome as JSON (result) and
    /// [`ErrorRecord`] (error).
    pub async fn outcome_json(
        &self,
        id: &str,
    ) -> Result<Outcome<serde_json::Value, ErrorRecord>, ClientError> {
        let record = self.wait_closed(id).await?;
        match record.close {
            Some(WorkflowClose::Completed { result }) => Ok(Outcome::Completed(result)),
            Some(WorkflowClose::Canceled { error }) => Ok(Outcome::Canceled(error)),
            Some(WorkflowClose::Failed { error }) => Ok(Outcome::Failed(error)),
            Some(WorkflowClose::Terminated { reason }) => Ok(Outcome::Terminated(reason)),
            None => Err(missing_close(id, record.status)),
        }
    }
}

fn missing_close(id: &str, status: WorkflowStatus) -> ClientError {
    codec(
        format!("the outcome of workflow `{id}`"),
        format!("the store says it is {status} but holds no outcome"),
    )
}

/// A typed handle on one workflow run.
pub struct WorkflowRun<W: Workflow> {
    client: Client,
    id: String,
    _workflow: PhantomData<W>,
}

impl<W: Workflow> Clone for WorkflowRun<W> {
    fn clone(&self) -> Self {
        WorkflowRun {
            client: self.client.clone(),
            id: self.id.clone(),
            _workflow: PhantomData,
        }
    }
}

impl<W: Workflow> fmt::Debug for WorkflowRun<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowRun")
            .field("workflow", &W::NAME)
            .field("id", &self.id)
            .finish()
    }
}

fn decode_error<E: DeserializeOwned + From<WorkflowError>>(
    id: &str,
    error: ErrorRecord,
) -> Result<E, ClientError> {
    match serde_json::from_value::<E>(error.error.clone()) {
        Ok(e) => Ok(e),
        // Errors raised by the engine itself (e.g. an output that did not encode) are
        // `WorkflowError`s; every workflow error type converts from it.
        Err(first) => serde_json::from_value::<WorkflowError>(error.error)
            .map(E::from)
            .map_err(|_| codec(format!("the error of workflow `{id}`"), first)),
    }
}

impl<W: Workflow> WorkflowRun<W> {
    /// The workflow id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits until the workflow closes and returns its typed outcome.
    ///
    /// Errors: [`ClientError::WrongType`] if the stored workflow is not a `W`,
    /// [`ClientError::Codec`] if the stored result does not decode as `W`'s types,
    /// [`ClientError::Shutdown`] if the engine shuts down while waiting.
    pub async fn outcome(&self) -> Result<Outcome<W::Output, W::Error>, ClientError> {
        let record = self.client.wait_closed(&self.id).await?;
        self.typed_outcome(record)
    }

    /// Waits until the workflow closes and returns its typed outcome with the failures of
    /// its cleanup (see [`OutcomeWithCleanup`]); the errors are those of
    /// [`outcome`](Self::outcome).
    ///
    /// ```
    /// use workflow_core::prelude::*;
    ///
    /// #[activity]
    /// async fn release(_ctx: ActivityContext, seat: u32) -> Result<(), ActivityError> {
    ///     Err(ActivityError::non_retryable(format!("seat {seat} is not held")))
    /// }
    ///
    /// #[workflow]
    /// async fn hold(ctx: WorkflowContext, seat: u32) -> Result<(), WorkflowError> {
    ///     on_cancel!(|cleanup| {
    ///         // A handler cannot fail; what it awaits can, and is recorded if it does.
    ///         let _ = cleanup.activity(release, seat).await;
    ///     });
    ///     ctx.sleep(Duration::from_secs(3600)).await?;
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::builder()
    ///     .register(hold)
    ///     .activity(release)
    ///     .in_memory()
    ///     .build()
    ///     .await?;
    /// let run = engine.client().start(hold, "hold-7", 7).await?;
    /// tokio::time::sleep(Duration::from_secs(1)).await;
    /// run.cancel("the customer left").await?;
    /// let closed = run.outcome_with_cleanup().await?;
    /// assert!(closed.outcome.is_canceled());
    /// assert_eq!(closed.cleanup_failures.len(), 1);
    /// assert!(closed.cleanup_failures[0].contains("seat 7 is not held"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn outcome_with_cleanup(
        &self,
    ) -> Result<OutcomeWithCleanup<W::Output, W::Error>, ClientError> {
        let record = self.client.wait_closed(&self.id).await?;
        let cleanup_failures = crate::engine::stored_instance(&record.snapshot)
            .map(|i| i.handler_failures().to_vec())
            .unwrap_or_default();
        Ok(OutcomeWithCleanup {
            outcome: self.typed_outcome(record)?,
            cleanup_failures,
        })
    }

    /// The typed outcome of the closed workflow `record`.
    fn typed_outcome(
        &self,
        record: WorkflowRecord,
    ) -> Result<Outcome<W::Output, W::Error>, ClientError> {
        if record.workflow_type != W::NAME {
            return Err(ClientError::WrongType {
                id: self.id.clone(),
                expected: W::NAME.to_string(),
                actual: record.workflow_type,
            });
        }
        match record.close {
            Some(WorkflowClose::Completed { result }) => serde_json::from_value(result)
                .map(Outcome::Completed)
                .map_err(|e| codec(format!("the result of workflow `{}`", self.id), e)),
            Some(WorkflowClose::Canceled { error }) => {
                decode_error(&self.id, error).map(Outcome::Canceled)
            }
            Some(WorkflowClose::Failed { error }) => {
                decode_error(&self.id, error).map(Outcome::Failed)
            }
            Some(WorkflowClose::Terminated { reason }) => Ok(Outcome::Terminated(reason)),
            None => Err(missing_close(&self.id, record.status)),
        }
    }

    /// See [`Client::describe`].
    pub async fn describe(&self) -> Result<Description, ClientError> {
        self.client.describe(&self.id).await
    }

    /// See [`Client::cancel`].
    pub async fn cancel(&self, reason: impl Into<String>) -> Result<(), ClientError> {
        self.client.cancel(&self.id, reason).await
    }

    /// See [`Client::terminate`].
    pub async fn terminate(&self, reason: impl Into<String>) -> Result<(), ClientError> {
        self.client.terminate(&self.id, reason).await
    }

    /// See [`Client::history`].
    pub async fn history(&self) -> Result<Vec<HistoryEvent>, ClientError> {
        self.client.history(&self.id).await
    }
}
