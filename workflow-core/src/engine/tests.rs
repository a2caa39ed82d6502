//! Engine tests with a hand-written machine, all on virtual time.

use crate::__private::{poll, resumed_after_finish, root_context, start};
use crate::history::EventKind;
use crate::store::{MemoryStore, Store};
use crate::{
    Activity, ActivityCancellationType, ActivityContext, ActivityError, ActivityFailure,
    ActivityOptions, BoxFuture, ClientError, Engine, OpId, Outcome, RetryPolicy, StateGraph, Step,
    StepContext, TimeoutKind, Workflow, WorkflowError, WorkflowFault, WorkflowMachine,
    WorkflowStatus,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// A hand-written activity, configured by its input, counting its runs per workflow id.

static RUNS: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

fn runs(workflow_id: &str) -> usize {
    super::lock(&RUNS)
        .as_ref()
        .and_then(|m| m.get(workflow_id).copied())
        .unwrap_or(0)
}

fn count_run(workflow_id: &str) {
    *super::lock(&RUNS)
        .get_or_insert_with(HashMap::new)
        .entry(workflow_id.to_string())
        .or_insert(0) += 1;
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
enum Behaviour {
    /// Returns at once.
    #[default]
    Succeed,
    /// Fails (retryable) on the first `n` attempts.
    FailFirst(u32),
    /// Always fails (retryable).
    AlwaysFail,
    /// First attempt heartbeats once with details, then hangs without heartbeating.
    HangFirstAttempt,
    /// Heartbeats every second until cancelled; accepts the cancel.
    HeartbeatUntilCancelled,
    /// Never returns and never heartbeats; counts in `DROPPED_HANGS` when the engine drops it.
    Hang,
}

/// How many `Hang` attempts the engine dropped.
static DROPPED_HANGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

struct CountDrop;

impl Drop for CountDrop {
    fn drop(&mut self) {
        DROPPED_HANGS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Job {
    name: String,
    behaviour: Behaviour,
}

#[derive(Clone, Copy)]
struct Greet;

impl Activity for Greet {
    const NAME: &'static str = "greet";
    type Input = Job;
    type Output = String;
    fn run(self, ctx: ActivityContext, job: Job) -> BoxFuture<Result<String, ActivityError>> {
        Box::pin(async move {
            count_run(&ctx.info().workflow_id);
            let attempt = ctx.attempt();
            match job.behaviour {
                Behaviour::Succeed => {}
                Behaviour::FailFirst(n) if attempt <= n => {
                    return Err(ActivityError::retryable(format!(
                        "attempt {attempt} failed"
                    )))
                }
                Behaviour::FailFirst(_) => {}
                Behaviour::AlwaysFail => return Err(ActivityError::retryable("always fails")),
                Behaviour::HangFirstAttempt if attempt == 1 => {
                    ctx.heartbeat("progress-1")?;
                    std::future::pending::<()>().await;
                }
                Behaviour::HangFirstAttempt => {
                    let details: Option<String> = ctx.heartbeat_details();
                    return Ok(format!(
                        "hello {} (attempt {attempt}, resumed from {})",
                        job.name,
                        details.unwrap_or_default()
                    ));
                }
                Behaviour::Hang => {
                    let _counted = CountDrop;
                    std::future::pending::<()>().await;
                }
                Behaviour::HeartbeatUntilCancelled => loop {
                    ctx.heartbeat(attempt)?;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                },
            }
            Ok(format!("hello {} (attempt {attempt})", job.name))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// A hand-written workflow: call `greet`, sleep, return the greeting.

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Input {
    job: Job,
    options: ActivityOptions,
    sleep_ms: u64,
    /// Panic when the greeting arrives.
    panic_on_greeting: bool,
}

#[derive(Serialize, Deserialize)]
enum GreetState {
    Start { input: Input },
    Greeting { op: OpId, input: Input },
    Sleeping { op: OpId, greeting: String },
    Done,
}

impl WorkflowMachine for GreetState {
    type Output = Result<String, WorkflowError>;

    fn resume(&mut self, cx: &StepContext) -> Step<Self::Output> {
        loop {
            match std::mem::replace(self, GreetState::Done) {
                GreetState::Start { input } => {
                    let ctx = root_context(cx);
                    let op = start(
                        ctx.activity(Greet, input.job.clone())
                            .options(input.options.clone()),
                    );
                    *self = GreetState::Greeting { op, input };
                }
                GreetState::Greeting { op, input } => {
                    match poll::<Result<String, WorkflowError>>(cx, op) {
                        None => {
                            *self = GreetState::Greeting { op, input };
                            return Step::Pending;
                        }
                        Some(Err(e)) => return Step::Ready(Err(e)),
                        Some(Ok(greeting)) => {
                            if input.panic_on_greeting {
                                panic!("the greeting was not welcome");
                            }
                            let ctx = root_context(cx);
                            let op = start(ctx.sleep(Duration::from_millis(input.sleep_ms)));
                            *self = GreetState::Sleeping { op, greeting };
                        }
                    }
                }
                GreetState::Sleeping { op, greeting } => {
                    match poll::<Result<(), WorkflowError>>(cx, op) {
                        None => {
                            *self = GreetState::Sleeping { op, greeting };
                            return Step::Pending;
                        }
                        Some(Err(e)) => return Step::Ready(Err(e)),
                        Some(Ok(())) => return Step::Ready(Ok(greeting)),
                    }
                }
                GreetState::Done => return Step::Ready(Err(resumed_after_finish("greeter"))),
            }
        }
    }

    fn state_name(&self) -> &'static str {
        match self {
            GreetState::Start { .. } => "Start",
            GreetState::Greeting { .. } => "Greeting",
            GreetState::Sleeping { .. } => "Sleeping",
            GreetState::Done => "Done",
        }
    }
}

#[derive(Clone, Copy)]
struct Greeter;

impl Workflow for Greeter {
    const NAME: &'static str = "greeter";
    const SCHEMA: u64 = crate::__private::fingerprint("Start|Greeting|Sleeping|Done");
    type Input = Input;
    type Output = String;
    type Error = WorkflowError;
    type State = GreetState;
    fn start(input: Input) -> GreetState {
        GreetState::Start { input }
    }
    fn graph() -> StateGraph {
        StateGraph {
            workflow: Self::NAME.to_string(),
            states: Vec::new(),
            transitions: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

const HOUR_MS: u64 = 3_600_000;

fn input(name: &str, behaviour: Behaviour) -> Input {
    Input {
        job: Job {
            name: name.to_string(),
            behaviour,
        },
        options: ActivityOptions::default(),
        sleep_ms: HOUR_MS,
        panic_on_greeting: false,
    }
}

/// An engine on `store`. Every engine of these tests has the same worker id: one built on
/// the bytes of a store another left takes its workflows over at once, as a worker restarted
/// in place does.
async fn engine_on(store: Arc<dyn Store>) -> Engine {
    Engine::builder()
        .register(Greeter)
        .activity(Greet)
        .worker_id("engine-tests")
        .store_arc(store)
        .build()
        .await
        .unwrap()
}

async fn engine() -> Engine {
    engine_on(Arc::new(MemoryStore::new())).await
}

/// Advances virtual time in small steps until the workflow reaches `state` (or is stuck).
async fn wait_for_state(engine: &Engine, id: &str, state: &str) {
    for _ in 0..10_000 {
        let d = engine.client().describe(id).await.unwrap();
        if d.state == state || d.stuck.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("workflow {id} never reached state {state}");
}

fn history_has(history: &[crate::HistoryEvent], pred: impl Fn(&EventKind) -> bool) -> bool {
    history.iter().any(|e| pred(&e.kind))
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(start_paused = true)]
async fn start_runs_the_activity_and_the_sleep_then_completes() {
    let engine = engine().await;
    let client = engine.client();
    let run = client
        .start(Greeter, "complete-1", input("ada", Behaviour::Succeed))
        .await
        .unwrap();
    assert_eq!(run.id(), "complete-1");
    let outcome = run.outcome().await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Completed("hello ada (attempt 1)".to_string())
    );
    assert_eq!(runs("complete-1"), 1);
    let d = run.describe().await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Completed);
    assert!(d.pending.is_empty() && d.tasks.is_empty());
    let text = d.to_string();
    assert!(
        text.contains("completed") && text.contains("hello ada"),
        "{text}"
    );
    let history = client.history("complete-1").await.unwrap();
    assert!(history_has(&history, |k| matches!(
        k,
        EventKind::ActivityCompleted { .. }
    )));
    assert!(history_has(&history, |k| matches!(
        k,
        EventKind::TimerFired { .. }
    )));
    assert!(matches!(
        history.last().map(|e| &e.kind),
        Some(EventKind::WorkflowCompleted { .. })
    ));
    assert_eq!(
        client
            .list(Some(WorkflowStatus::Completed))
            .await
            .unwrap()
            .len(),
        1
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn duplicate_id_is_already_exists() {
    let engine = engine().await;
    let client = engine.client();
    client
        .start(Greeter, "dup-1", input("a", Behaviour::Succeed))
        .await
        .unwrap();
    let again = client
        .start(Greeter, "dup-1", input("b", Behaviour::Succeed))
        .await;
    assert!(matches!(again, Err(ClientError::AlreadyExists(id)) if id == "dup-1"));
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn unknown_workflow_and_bad_json_input_are_typed_errors() {
    let engine = Engine::builder().in_memory().build().await.unwrap();
    let client = engine.client();
    assert!(matches!(
        client.start(Greeter, "x", Input::default()).await,
        Err(ClientError::UnknownWorkflow(name)) if name == "greeter"
    ));
    let engine = self::engine().await;
    let client = engine.client();
    let bad = client
        .start_json("greeter", "bad-json", serde_json::json!({"nope": 1}))
        .await;
    assert!(matches!(bad, Err(ClientError::Codec { .. })), "{bad:?}");
    assert!(matches!(
        client.describe("bad-json").await,
        Err(ClientError::NotFound(_))
    ));
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn r1_2_cancel_unknown_id_is_not_found() {
    let engine = engine().await;
    let result = engine.client().cancel("no-such-workflow", "why").await;
    assert!(matches!(result, Err(ClientError::NotFound(id)) if id == "no-such-workflow"));
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn r1_2_cancel_closed_workflow_is_already_closed() {
    let engine = engine().await;
    let client = engine.client();
    let mut i = input("a", Behaviour::Succeed);
    i.sleep_ms = 0;
    let run = client.start(Greeter, "closed-1", i).await.unwrap();
    assert!(run.outcome().await.unwrap().is_completed());
    let result = run.cancel("too late").await;
    assert!(matches!(
        result,
        Err(ClientError::AlreadyClosed {
            status: WorkflowStatus::Completed,
            ..
        })
    ));
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn r2_2_cancel_during_sleep_resolves_it_with_a_cancellation_and_closes_canceled() {
    let engine = engine().await;
    let client = engine.client();
    let run = client
        .start(Greeter, "cancel-sleep", input("a", Behaviour::Succeed))
        .await
        .unwrap();
    wait_for_state(&engine, "cancel-sleep", "Sleeping").await;
    client
        .cancel("cancel-sleep", "customer asked")
        .await
        .unwrap();
    // R1.4: a second request is accepted and changes nothing.
    client.cancel("cancel-sleep", "again").await.unwrap();
    let outcome = run.outcome().await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Canceled(WorkflowError::cancelled("customer asked"))
    );
    let d = run.describe().await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Canceled);
    assert_eq!(d.cancel_reason.as_deref(), Some("customer asked"));
    let history = run.history().await.unwrap();
    let cancels = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::CancelRequested { .. }))
        .count();
    assert_eq!(cancels, 1);
    assert!(history_has(&history, |k| matches!(
        k,
        EventKind::TimerCancelled { .. }
    )));
    assert!(!history_has(&history, |k| matches!(
        k,
        EventKind::TimerFired { .. }
    )));
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn retries_with_back_off_then_succeeds() {
    let engine = engine().await;
    let mut i = input("bob", Behaviour::FailFirst(2));
    i.options.retry = RetryPolicy::default()
        .with_initial_interval(Duration::from_secs(1))
        .with_maximum_attempts(5);
    i.sleep_ms = 0;
    let run = engine.client().start(Greeter, "retry-1", i).await.unwrap();
    assert_eq!(
        run.outcome().await.unwrap(),
        Outcome::Completed("hello bob (attempt 3)".to_string())
    );
    assert_eq!(runs("retry-1"), 3);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn retries_exhausted_fail_the_workflow() {
    let engine = engine().await;
    let mut i = input("bob", Behaviour::AlwaysFail);
    i.options.retry = RetryPolicy::default().with_maximum_attempts(2);
    let run = engine.client().start(Greeter, "retry-2", i).await.unwrap();
    let outcome = run.outcome().await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Failed(WorkflowError::Activity {
            activity: "greet".to_string(),
            failure: ActivityFailure::Application {
                message: "always fails".to_string(),
                non_retryable: false
            }
        })
    );
    assert_eq!(runs("retry-2"), 2);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn r6_4_heartbeat_timeout_ends_the_attempt_and_it_is_retried_with_its_details() {
    let engine = engine().await;
    let mut i = input("cy", Behaviour::HangFirstAttempt);
    i.options.heartbeat_timeout = Some(Duration::from_secs(5));
    i.options.retry = RetryPolicy::default().with_maximum_attempts(3);
    i.sleep_ms = 0;
    let run = engine
        .client()
        .start(Greeter, "hb-timeout", i)
        .await
        .unwrap();
    assert_eq!(
        run.outcome().await.unwrap(),
        Outcome::Completed("hello cy (attempt 2, resumed from progress-1)".to_string())
    );
    assert_eq!(runs("hb-timeout"), 2);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn r6_4_heartbeat_timeout_without_retries_fails_with_a_timeout() {
    let engine = engine().await;
    let mut i = input("cy", Behaviour::HangFirstAttempt);
    i.options.heartbeat_timeout = Some(Duration::from_secs(5));
    i.options.retry = RetryPolicy::no_retries();
    let run = engine
        .client()
        .start(Greeter, "hb-timeout-2", i)
        .await
        .unwrap();
    assert_eq!(
        run.outcome().await.unwrap(),
        Outcome::Failed(WorkflowError::Activity {
            activity: "greet".to_string(),
            failure: ActivityFailure::Timeout {
                kind: TimeoutKind::Heartbeat
            }
        })
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn start_to_close_timeout_ends_the_attempt_and_it_is_retried() {
    let engine = engine().await;
    let mut i = input("cy", Behaviour::HangFirstAttempt);
    i.options.start_to_close_timeout = Some(Duration::from_secs(10));
    i.options.retry = RetryPolicy::default().with_maximum_attempts(2);
    i.sleep_ms = 0;
    let run = engine
        .client()
        .start(Greeter, "stc-timeout", i)
        .await
        .unwrap();
    assert_eq!(
        run.outcome().await.unwrap(),
        Outcome::Completed("hello cy (attempt 2, resumed from progress-1)".to_string())
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn r6_4_cancel_during_back_off_stops_the_retries() {
    let engine = engine().await;
    let client = engine.client();
    let mut i = input("dee", Behaviour::AlwaysFail);
    i.options.retry = RetryPolicy::default().with_initial_interval(Duration::from_secs(3600));
    i.options.cancellation = ActivityCancellationType::WaitCancellationCompleted;
    let run = client.start(Greeter, "backoff-cancel", i).await.unwrap();
    // Let the first attempt fail; the runner now waits an hour before the second.
    for _ in 0..100 {
        if runs("backoff-cancel") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(runs("backoff-cancel"), 1);
    client.cancel("backoff-cancel", "stop").await.unwrap();
    // WaitCancellationCompleted: the call resolves with what the runner reports, which is a
    // cancellation because the task was waiting in back-off.
    let outcome = run.outcome().await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Canceled(WorkflowError::Activity {
            activity: "greet".to_string(),
            failure: ActivityFailure::Cancelled
        })
    );
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    assert_eq!(runs("backoff-cancel"), 1);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn r6_2_a_running_activity_sees_the_cancel_at_its_heartbeat() {
    let engine = engine().await;
    let client = engine.client();
    let mut i = input("eve", Behaviour::HeartbeatUntilCancelled);
    i.options.cancellation = ActivityCancellationType::WaitCancellationCompleted;
    i.options.heartbeat_timeout = Some(Duration::from_secs(5));
    let run = client.start(Greeter, "hb-cancel", i).await.unwrap();
    // Let it heartbeat for a while.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let d = run.describe().await.unwrap();
    assert_eq!(d.tasks.len(), 1);
    assert_eq!(d.tasks[0].attempt, 1);
    assert!(d.tasks[0].last_heartbeat_ms.is_some());
    assert_eq!(d.tasks[0].heartbeat_details, Some(serde_json::json!(1)));
    assert!(d.to_string().contains("attempt 1, last heartbeat"), "{d}");
    client.cancel("hb-cancel", "enough").await.unwrap();
    let outcome = run.outcome().await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Canceled(WorkflowError::Activity {
            activity: "greet".to_string(),
            failure: ActivityFailure::Cancelled
        })
    );
    assert_eq!(runs("hb-cancel"), 1);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn r2_4_panic_in_resume_leaves_the_workflow_running_and_stuck() {
    let engine = engine().await;
    let client = engine.client();
    let mut i = input("fay", Behaviour::Succeed);
    i.panic_on_greeting = true;
    client.start(Greeter, "panics", i).await.unwrap();
    let mut stuck = None;
    for _ in 0..1000 {
        stuck = client.describe("panics").await.unwrap().stuck;
        if stuck.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stuck = stuck.expect("the workflow should be marked stuck");
    assert!(
        matches!(&stuck, WorkflowFault::Panicked { state, message }
            if state == "Greeting" && message.contains("the greeting was not welcome")),
        "{stuck:?}"
    );
    let d = client.describe("panics").await.unwrap();
    assert_eq!(d.status, WorkflowStatus::Running);
    assert_eq!(d.state, "Greeting");
    assert!(d.to_string().contains("STUCK"), "{d}");
    // Nothing was committed: the activity's task is still stored (a restart runs it again)
    // and the engine keeps its result for the next attempt at a step.
    assert_eq!(d.version, 1, "{d}");
    assert_eq!(engine.store().tasks("panics").await.unwrap().len(), 1);
    // It can still be terminated.
    client.terminate("panics", "giving up").await.unwrap();
    let outcome = client.outcome_json("panics").await.unwrap();
    assert_eq!(outcome, Outcome::Terminated("giving up".to_string()));
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn schema_mismatch_marks_the_workflow_stuck_and_keeps_it() {
    let store = Arc::new(MemoryStore::new());
    let engine = engine_on(store.clone()).await;
    engine
        .client()
        .start(Greeter, "schema-1", input("gus", Behaviour::Succeed))
        .await
        .unwrap();
    wait_for_state(&engine, "schema-1", "Sleeping").await;
    engine.shutdown().await;

    // Pretend the stored snapshot came from another build of the workflow.
    let mut tables: serde_json::Value = serde_json::from_slice(&store.to_bytes()).unwrap();
    tables["workflows"]["schema-1"]["schema"] = serde_json::json!(42);
    tables["inbox"]["schema-1"] = serde_json::json!([
        {"seq": 1000, "event": {"event": "CancelRequested", "reason": "r"}}
    ]);
    let store = MemoryStore::from_bytes(&serde_json::to_vec(&tables).unwrap()).unwrap();
    let engine = engine_on(Arc::new(store)).await;
    let client = engine.client();
    wait_for_state(&engine, "schema-1", "never").await;
    let d = client.describe("schema-1").await.unwrap();
    let stuck = d.stuck.expect("stuck");
    assert_eq!(
        stuck,
        WorkflowFault::SchemaMismatch {
            workflow_type: "greeter".to_string(),
            stored: 42,
            compiled: Greeter::SCHEMA,
            state: "Sleeping".to_string(),
        }
    );
    let text = stuck.to_string();
    assert!(
        text.contains("0x000000000000002a") && text.contains(&format!("{:#018x}", Greeter::SCHEMA)),
        "both fingerprints are named: {text}"
    );
    assert_eq!(d.status, WorkflowStatus::Running);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn resumes_from_store_bytes_in_a_new_engine_without_rerunning_the_activity() {
    let store = Arc::new(MemoryStore::new());
    let engine = engine_on(store.clone()).await;
    engine
        .client()
        .start(Greeter, "resume-1", input("hal", Behaviour::Succeed))
        .await
        .unwrap();
    wait_for_state(&engine, "resume-1", "Sleeping").await;
    assert_eq!(runs("resume-1"), 1);
    let bytes = store.to_bytes();
    engine.shutdown().await;
    assert!(matches!(
        engine.client().cancel("resume-1", "").await,
        Err(ClientError::Shutdown)
    ));

    let restored = Arc::new(MemoryStore::from_bytes(&bytes).unwrap());
    let engine = engine_on(restored).await;
    let run = engine.client().handle(Greeter, "resume-1");
    let d = run.describe().await.unwrap();
    assert_eq!(d.state, "Sleeping");
    assert_eq!(d.pending.len(), 1);
    assert_eq!(
        run.outcome().await.unwrap(),
        Outcome::Completed("hello hal (attempt 1)".to_string())
    );
    assert_eq!(runs("resume-1"), 1);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_activity_in_flight_at_shutdown_runs_again_in_the_new_engine() {
    let store = Arc::new(MemoryStore::new());
    let engine = engine_on(store.clone()).await;
    let mut i = input("ivy", Behaviour::HeartbeatUntilCancelled);
    i.options.heartbeat_timeout = Some(Duration::from_secs(5));
    engine
        .client()
        .start(Greeter, "inflight-1", i)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runs("inflight-1"), 1);
    let bytes = store.to_bytes();
    engine.shutdown().await;

    let engine = engine_on(Arc::new(MemoryStore::from_bytes(&bytes).unwrap())).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(runs("inflight-1"), 2);
    engine.client().cancel("inflight-1", "done").await.unwrap();
    assert!(engine
        .client()
        .outcome_json("inflight-1")
        .await
        .unwrap()
        .is_canceled());
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn unregistered_activity_fails_with_a_message_saying_how_to_register_it() {
    let engine = Engine::builder()
        .in_memory()
        .register(Greeter)
        .build()
        .await
        .unwrap();
    let run = engine
        .client()
        .start(Greeter, "no-activity", input("x", Behaviour::Succeed))
        .await
        .unwrap();
    match run.outcome().await.unwrap() {
        Outcome::Failed(WorkflowError::Activity {
            failure:
                ActivityFailure::Application {
                    message,
                    non_retryable: true,
                },
            ..
        }) => assert!(
            message.contains("not registered") && message.contains(".activity("),
            "{message}"
        ),
        other => panic!("unexpected outcome {other:?}"),
    }
    engine.shutdown().await;
}

/// A pending timer is an entry in the engine's timer queue (not a task of its own); a
/// terminated workflow's timers leave the queue, and a timer the step resolved is cancelled.
#[tokio::test(start_paused = true)]
async fn timers_leave_the_queue_when_their_workflow_closes() {
    let engine = engine().await;
    let client = engine.client();
    for id in ["timer-term", "timer-cancel"] {
        client
            .start(Greeter, id, input("a", Behaviour::Succeed))
            .await
            .unwrap();
        wait_for_state(&engine, id, "Sleeping").await;
    }
    assert_eq!(engine.inner.timers.len(), 2);
    client.terminate("timer-term", "stop").await.unwrap();
    assert_eq!(engine.inner.timers.len(), 1);
    // The cancel resolves the sleep in the step; its `CancelTimer` drops the entry.
    let run = client.handle(Greeter, "timer-cancel");
    run.cancel("stop").await.unwrap();
    assert!(run.outcome().await.unwrap().is_canceled());
    assert_eq!(engine.inner.timers.len(), 0);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_never_returns_after_a_try_cancel_close_is_released_at_the_default_timeout()
{
    let engine = engine().await;
    let client = engine.client();
    let dropped_before = DROPPED_HANGS.load(std::sync::atomic::Ordering::SeqCst);
    client
        .start(Greeter, "hang-1", input("hal", Behaviour::Hang))
        .await
        .unwrap();
    wait_for_state(&engine, "hang-1", "Greeting").await;
    // TryCancel: the workflow closes at once; the activity never heartbeats, so it never
    // hears of it.
    client.cancel("hang-1", "stop").await.unwrap();
    let outcome = client.outcome_json("hang-1").await.unwrap();
    assert!(matches!(outcome, Outcome::Canceled(_)), "{outcome:?}");
    let held = |engine: &Engine| super::lock(&engine.inner.tasks).len();
    assert_eq!(held(&engine), 1, "the attempt still runs");
    tokio::time::sleep(crate::options::DEFAULT_START_TO_CLOSE_TIMEOUT + Duration::from_secs(1))
        .await;
    assert_eq!(
        DROPPED_HANGS.load(std::sync::atomic::Ordering::SeqCst),
        dropped_before + 1,
        "the attempt was dropped at its default start-to-close timeout"
    );
    assert_eq!(held(&engine), 0, "the engine holds nothing of it");
    engine.shutdown().await;
}

/// The outcome's error text of a Failed greeter.
async fn failed_with(engine: &Engine, id: &str) -> String {
    match engine.client().outcome_json(id).await.unwrap() {
        Outcome::Failed(error) => error.message,
        other => panic!("{id}: expected Failed, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn schedule_to_close_ends_the_call_across_retries_and_back_off() {
    let engine = engine().await;
    let mut i = input("sid", Behaviour::AlwaysFail);
    i.options.schedule_to_close_timeout = Some(Duration::from_secs(10));
    engine
        .client()
        .start(Greeter, "s2c-retries", i)
        .await
        .unwrap();
    let error = failed_with(&engine, "s2c-retries").await;
    assert!(error.contains("schedule-to-close"), "{error}");
    // Attempts at 0, 1, 3 and 7 s (back-off 1, 2, 4 s); the one due at 15 s never starts.
    assert_eq!(runs("s2c-retries"), 4);
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn schedule_to_close_ends_a_running_attempt() {
    let engine = engine().await;
    let mut i = input("ike", Behaviour::Hang);
    i.options.schedule_to_close_timeout = Some(Duration::from_secs(30));
    engine
        .client()
        .start(Greeter, "s2c-running", i)
        .await
        .unwrap();
    let error = failed_with(&engine, "s2c-running").await;
    assert!(error.contains("schedule-to-close"), "{error}");
    assert_eq!(runs("s2c-running"), 1, "not retried");
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn schedule_to_start_fails_a_call_whose_first_attempt_started_too_late() {
    let store = Arc::new(MemoryStore::new());
    let engine = engine_on(store.clone()).await;
    let mut i = input("ada", Behaviour::HangFirstAttempt);
    i.options.schedule_to_start_timeout = Some(Duration::from_secs(60));
    engine.client().start(Greeter, "s2s", i).await.unwrap();
    wait_for_state(&engine, "s2s", "Greeting").await;
    engine.shutdown().await;
    // The worker was down for an hour after the call was scheduled.
    let mut tables: serde_json::Value = serde_json::from_slice(&store.to_bytes()).unwrap();
    let scheduled = &mut tables["tasks"]["s2s"][0]["scheduled_at_ms"];
    *scheduled = serde_json::json!(scheduled.as_u64().unwrap() - HOUR_MS);
    let store = MemoryStore::from_bytes(&serde_json::to_vec(&tables).unwrap()).unwrap();
    let engine = engine_on(Arc::new(store)).await;
    let error = failed_with(&engine, "s2s").await;
    assert!(error.contains("schedule-to-start"), "{error}");
    assert_eq!(runs("s2s"), 1, "the late attempt never ran");
    engine.shutdown().await;
}
