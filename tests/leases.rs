//! Several workers on one store (the store's "Leases and fencing" protocol), in one process
//! on a `MemoryStore`: a worker frozen past its lease cannot commit and drops the workflow,
//! a graceful shutdown hands workflows over at once, and a client that is not a worker starts,
//! cancels and awaits workflows that workers run.
//!
//! Leases run on real time (the store's clock), so these tests use tokio's real clock, short
//! leases, and bounded waits. The process tests with SIGKILL and SIGSTOP on SQLite and
//! PostgreSQL are in `tests/failover.rs`.

use durable_workflows::journal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workflow_core::prelude::*;
use workflow_core::{
    ClientError, Event, EventKind, Fence, InboxEntry, LeaseRequest, MemoryStore, NewWorkflow, OpId,
    RunningWorkflow, StepCommit, Store, StoreError, WorkflowFault, WorkflowRecord,
};

const LEASE: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(20);

/// Records its run in the journal and adds one.
#[activity]
async fn count_up(ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    journal::write(&ctx.info().workflow_id, format!("count_up {n}"));
    Ok(n + 1)
}

/// Records its run; the cleanup of a cancelled workflow.
#[activity]
async fn clean_up(ctx: ActivityContext) -> Result<(), ActivityError> {
    journal::write(&ctx.info().workflow_id, "clean_up");
    Ok(())
}

#[workflow]
async fn two_counts(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
    let once: u32 = ctx.activity(count_up, n).await?;
    let twice: u32 = ctx.activity(count_up, once).await?;
    Ok(twice)
}

#[workflow]
async fn parked(ctx: WorkflowContext, secs: u64) -> Result<String, WorkflowError> {
    on_cancel!(|cleanup| {
        if let Err(e) = cleanup.activity(clean_up, ()).await {
            cleanup.log(format!("cleanup failed: {e}"));
        }
    });
    ctx.sleep(Duration::from_secs(secs)).await?;
    Ok("woke".to_string())
}

async fn worker(store: Arc<dyn Store>, id: &str) -> Engine {
    Engine::builder()
        .register(two_counts)
        .register(parked)
        .activity(count_up)
        .activity(clean_up)
        .store_arc(store)
        .worker_id(id)
        .lease_duration(LEASE)
        .poll_interval(POLL)
        .build()
        .await
        .expect("build a worker")
}

/// Waits (at most 10 s) until `ready` holds.
async fn eventually(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn holder(store: &dyn Store, id: &str) -> Option<String> {
    store
        .load_workflow(id)
        .await
        .ok()
        .and_then(|w| w.lease)
        .map(|l| l.owner)
}

/// A store whose calls, once frozen, wait until thawed, as a worker stopped with SIGSTOP
/// makes none; the freeze can be set to fall on a workflow's next step commit.
struct Freezable {
    inner: Arc<dyn Store>,
    frozen: AtomicBool,
    freeze_at_commit_of: Mutex<Option<String>>,
    thawed: tokio::sync::Notify,
    /// What the commit held during the freeze returned once thawed.
    held_commit: Mutex<Option<Result<u64, String>>>,
}

impl Freezable {
    fn new(inner: Arc<dyn Store>) -> Arc<Freezable> {
        Arc::new(Freezable {
            inner,
            frozen: AtomicBool::new(false),
            freeze_at_commit_of: Mutex::new(None),
            thawed: tokio::sync::Notify::new(),
            held_commit: Mutex::new(None),
        })
    }

    async fn gate(&self) {
        loop {
            let thawed = self.thawed.notified();
            if !self.frozen.load(Ordering::SeqCst) {
                return;
            }
            thawed.await;
        }
    }

    fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
        self.thawed.notify_waiters();
    }
}

#[async_trait::async_trait]
impl Store for Freezable {
    async fn create_workflow(&self, workflow: NewWorkflow) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.create_workflow(workflow).await
    }
    async fn load_workflow(&self, id: &str) -> Result<WorkflowRecord, StoreError> {
        self.gate().await;
        self.inner.load_workflow(id).await
    }
    async fn list_workflows(
        &self,
        status: Option<WorkflowStatus>,
    ) -> Result<Vec<WorkflowRecord>, StoreError> {
        self.gate().await;
        self.inner.list_workflows(status).await
    }
    async fn enqueue_event(&self, id: &str, event: Event) -> Result<u64, StoreError> {
        self.gate().await;
        self.inner.enqueue_event(id, event).await
    }
    async fn read_inbox(&self, id: &str) -> Result<Vec<InboxEntry>, StoreError> {
        self.gate().await;
        self.inner.read_inbox(id).await
    }
    async fn request_cancel(&self, id: &str, reason: &str) -> Result<bool, StoreError> {
        self.gate().await;
        self.inner.request_cancel(id, reason).await
    }
    async fn commit_step(&self, commit: StepCommit) -> Result<u64, StoreError> {
        let freeze_here = {
            let mut at = self.freeze_at_commit_of.lock().unwrap();
            let hit = at.as_deref() == Some(commit.workflow_id.as_str());
            if hit {
                *at = None;
                self.frozen.store(true, Ordering::SeqCst);
            }
            hit
        };
        self.gate().await;
        let result = self.inner.commit_step(commit).await;
        if freeze_here {
            *self.held_commit.lock().unwrap() =
                Some(result.as_ref().map(|v| *v).map_err(|e| e.to_string()));
        }
        result
    }
    async fn record_task_attempt(
        &self,
        workflow_id: &str,
        op: OpId,
        attempt: u32,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.gate().await;
        self.inner
            .record_task_attempt(workflow_id, op, attempt, fence)
            .await
    }
    async fn record_heartbeat(
        &self,
        workflow_id: &str,
        op: OpId,
        details: Option<serde_json::Value>,
        at_ms: u64,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.gate().await;
        self.inner
            .record_heartbeat(workflow_id, op, details, at_ms, fence)
            .await
    }
    async fn set_stuck(
        &self,
        id: &str,
        fault: Option<WorkflowFault>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.set_stuck(id, fault, fence).await
    }
    async fn terminate(&self, id: &str, reason: &str, at_ms: u64) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.terminate(id, reason, at_ms).await
    }
    async fn release_lease(&self, id: &str, fence: &Fence) -> Result<bool, StoreError> {
        self.gate().await;
        self.inner.release_lease(id, fence).await
    }
    async fn purge_closed(&self, purge: &workflow_core::Purge) -> Result<Vec<String>, StoreError> {
        self.gate().await;
        self.inner.purge_closed(purge).await
    }
    async fn running_workflows(&self) -> Result<Vec<RunningWorkflow>, StoreError> {
        self.gate().await;
        self.inner.running_workflows().await
    }
    async fn tasks(&self, id: &str) -> Result<Vec<workflow_core::TaskRecord>, StoreError> {
        self.gate().await;
        self.inner.tasks(id).await
    }
    async fn history(&self, id: &str) -> Result<Vec<workflow_core::HistoryEvent>, StoreError> {
        self.gate().await;
        self.inner.history(id).await
    }
    async fn workflows_to_step(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        self.gate().await;
        self.inner.workflows_to_step(owner).await
    }
    async fn claim_workflows(
        &self,
        lease: &LeaseRequest,
        limit: usize,
    ) -> Result<Vec<RunningWorkflow>, StoreError> {
        self.gate().await;
        self.inner.claim_workflows(lease, limit).await
    }
    async fn renew_leases(&self, lease: &LeaseRequest) -> Result<Vec<(String, u64)>, StoreError> {
        self.gate().await;
        self.inner.renew_leases(lease).await
    }
    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        self.gate().await;
        self.inner.release_leases(owner).await
    }
}

/// A worker frozen in the middle of a step's commit for longer than its lease: another worker
/// takes the workflow over and finishes it; when the frozen one wakes, its commit is refused
/// (`LeaseLost`), it drops the workflow, and the history holds every step once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_a_worker_frozen_past_its_lease_cannot_commit_and_drops_the_workflow() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let frozen = Freezable::new(store.clone());
    let a = worker(frozen.clone(), "worker-a").await;
    // A's first step schedules `count_up`; the step that applies its result freezes A.
    *frozen.freeze_at_commit_of.lock().unwrap() = Some("fenced-1".to_string());
    let client = a.client();
    let run = client.start(two_counts, "fenced-1", 1).await.unwrap();
    eventually("worker-a is frozen in a commit", async || {
        frozen.frozen.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(
        holder(&*store, "fenced-1").await.as_deref(),
        Some("worker-a")
    );

    // Worker B claims the workflow once A's lease expired, runs the activity whose result A
    // never committed again (at least once), and finishes the workflow.
    let b = worker(store.clone(), "worker-b").await;
    let other = b.client();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        other.handle(two_counts, "fenced-1").outcome(),
    )
    .await
    .expect("worker-b finishes the workflow")
    .unwrap();
    assert_eq!(outcome, Outcome::Completed(3));

    frozen.thaw();
    eventually("worker-a's held commit returned", async || {
        frozen.held_commit.lock().unwrap().is_some()
    })
    .await;
    let refused = frozen.held_commit.lock().unwrap().clone().unwrap();
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("no longer held by worker `worker-a`")),
        "the frozen worker's commit must be refused, got {refused:?}"
    );
    eventually("worker-a dropped the workflow", async || {
        a.held_workflows() == 0
    })
    .await;

    let history = run.history().await.unwrap();
    let completions = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ActivityCompleted { .. }))
        .count();
    assert_eq!(
        completions, 2,
        "each activity result committed once: {history:#?}"
    );
    let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=history.len() as u64).collect::<Vec<_>>());
    // The first activity ran on A, and again on B after the takeover: at least once.
    let runs = journal::count("fenced-1", "count_up 1");
    assert!((1..=2).contains(&runs), "count_up 1 ran {runs} times");
    assert_eq!(journal::count("fenced-1", "count_up 2"), 1);
    a.shutdown().await;
    b.shutdown().await;
}

/// A graceful shutdown releases the leases: another worker continues the workflows at once,
/// without waiting for them to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_releases_leases_so_another_worker_continues_at_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = worker(store.clone(), "worker-a").await;
    a.client().start(parked, "handover-1", 1).await.unwrap();
    assert_eq!(
        holder(&*store, "handover-1").await.as_deref(),
        Some("worker-a")
    );
    a.shutdown().await;
    assert_eq!(holder(&*store, "handover-1").await, None, "released");

    // B claims it at build, before any lease could have expired.
    let b = Engine::builder()
        .register(parked)
        .activity(clean_up)
        .store_arc(store.clone())
        .worker_id("worker-b")
        .lease_duration(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    assert_eq!(b.held_workflows(), 1);
    assert_eq!(
        holder(&*store, "handover-1").await.as_deref(),
        Some("worker-b")
    );
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        b.client().handle(parked, "handover-1").outcome(),
    )
    .await
    .expect("worker-b wakes the workflow")
    .unwrap();
    assert_eq!(outcome, Outcome::Completed("woke".to_string()));
    b.shutdown().await;
}

/// A client that is not a worker (`Client::connect`/`Client::of_store`) starts workflows, which
/// a worker claims and runs, cancels one (its cleanup handler runs on the worker), and awaits
/// both outcomes; it cannot start a workflow by name, as it has no workflow code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_is_not_a_worker_starts_cancels_and_awaits() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let w = worker(store.clone(), "worker-w").await;
    let client = Client::of_store(store.clone());

    let run = client.start(two_counts, "remote-1", 10).await.unwrap();
    let parked_run = client.start(parked, "remote-2", 3600).await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(10), run.outcome())
        .await
        .expect("a worker ran the workflow the client started")
        .unwrap();
    assert_eq!(done, Outcome::Completed(12));
    eventually("the worker claimed the parked workflow", async || {
        holder(&*store, "remote-2").await.as_deref() == Some("worker-w")
    })
    .await;
    client.cancel("remote-2", "no longer needed").await.unwrap();
    let cancelled = tokio::time::timeout(Duration::from_secs(10), parked_run.outcome())
        .await
        .expect("the worker delivered the cancel")
        .unwrap();
    assert!(cancelled.is_canceled(), "{cancelled:?}");
    assert_eq!(journal::count("remote-2", "clean_up"), 1);
    assert!(matches!(
        client
            .start_json("TwoCounts", "remote-3", serde_json::json!(1))
            .await,
        Err(ClientError::StartByName(_))
    ));
    w.shutdown().await;
}

/// A row the store says a worker owns, but that the worker does not hold in memory (a child
/// whose creating step's worker lost track of it, say), is renewed by that worker's renewals
/// but never stepped; the worker must give it back so that it is claimed and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_the_worker_owns_but_does_not_hold_is_given_back_and_the_workflow_runs() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engine = worker(store.clone(), "w-owner").await;
    let snapshot = workflow_core::dry_run::start_snapshot(two_counts, 40).unwrap();
    store
        .create_workflow(NewWorkflow {
            id: "orphan".to_string(),
            workflow_type: "two_counts".to_string(),
            schema: <two_counts as workflow_core::Workflow>::SCHEMA,
            snapshot,
            state_name: "Start".to_string(),
            input: serde_json::json!(40),
            at_ms: 0,
            parent: None,
            // Leased to the worker, behind its back.
            lease: Some(LeaseRequest {
                owner: "w-owner".to_string(),
                duration_ms: LEASE.as_millis() as u64,
            }),
        })
        .await
        .unwrap();
    let client = engine.client();
    eventually("the orphan completes", async || {
        client
            .describe("orphan")
            .await
            .is_ok_and(|d| d.status == WorkflowStatus::Completed)
    })
    .await;
    assert_eq!(journal::lines("orphan"), ["count_up 40", "count_up 41"]);
    engine.shutdown().await;
}
