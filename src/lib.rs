//! Shared code for the examples and integration tests of `workflow-core`.
//!
//! [`go_sample`] is the seeds' Go sample (Temporal's `samples-go/cancellation`) written with
//! this library; `examples/cancellation.rs` runs it and `tests/go_sample.rs` checks it.
//! [`journal`] is a process-wide log that activities write to, so that a test or an example
//! can see what ran, in which order, per workflow id. [`testing`] holds the small helpers the
//! integration tests share.

pub mod bench;

pub mod failover;

pub mod fuzz;

pub mod journal {
    //! A process-wide, per-workflow log of what activities did.
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    static LINES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    static ECHO: AtomicBool = AtomicBool::new(false);

    /// Also print every line as it is written (for examples).
    pub fn echo(on: bool) {
        ECHO.store(on, Ordering::SeqCst);
    }

    /// Appends a line for workflow `id`.
    pub fn write(id: &str, line: impl Into<String>) {
        let line = line.into();
        if ECHO.load(Ordering::SeqCst) {
            println!("  [{id}] {line}");
        }
        LINES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id.to_string(), line));
    }

    /// Every line written for workflow `id`, in order.
    pub fn lines(id: &str) -> Vec<String> {
        LINES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// How many lines for `id` start with `prefix`.
    pub fn count(id: &str, prefix: &str) -> usize {
        lines(id).iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// Waits (in tokio time, virtual in tests) until a line for `id` starts with `prefix`.
    /// Gives up after `max` of waiting and returns false.
    pub async fn wait_for(id: &str, prefix: &str, max: std::time::Duration) -> bool {
        // A thousand looks over the allowed wait, at least 1 ms apart.
        let step = (max / 1000).max(std::time::Duration::from_millis(1));
        let mut waited = std::time::Duration::ZERO;
        while waited <= max {
            if count(id, prefix) > 0 {
                return true;
            }
            tokio::time::sleep(step).await;
            waited += step;
        }
        false
    }
}

pub mod go_sample {
    //! The seeds' Go sample: `YourWorkflow` runs `ActivityToBeCanceled` (heartbeating, waiting
    //! for its cancellation to complete), then `ActivityToBeSkipped`; when it is cancelled, a
    //! deferred cleanup runs `CleanupActivity` on a disconnected context.
    //!
    //! In Go the cleanup is a `defer` that checks `ctx.Err()` and builds a
    //! `NewDisconnectedContext`; here it is `on_cancel!`, which the macro compiles into the
    //! branches of the state machine that run when the workflow's scope ends cancelled.
    use crate::journal;
    use workflow_core::prelude::*;

    /// Heartbeats every second until it is cancelled (it learns of the cancel at a heartbeat).
    #[activity(name = "ActivityToBeCanceled")]
    pub async fn activity_to_be_canceled(ctx: ActivityContext) -> Result<String, ActivityError> {
        let id = ctx.info().workflow_id.clone();
        for i in 0u64.. {
            tokio::time::sleep(Duration::from_secs(1)).await;
            journal::write(&id, format!("ActivityToBeCanceled heartbeating ({i})"));
            if let Err(e) = ctx.heartbeat(i) {
                journal::write(&id, "ActivityToBeCanceled received the cancel and stops");
                return Err(e);
            }
        }
        Ok("never reached".to_string())
    }

    /// Must be skipped: the workflow calls it on the cancelled context.
    #[activity(name = "ActivityToBeSkipped")]
    pub async fn activity_to_be_skipped(ctx: ActivityContext) -> Result<(), ActivityError> {
        journal::write(
            &ctx.info().workflow_id,
            "ActivityToBeSkipped ran (it should not have)",
        );
        Ok(())
    }

    /// The cleanup the cancellation handler runs.
    #[activity(name = "CleanupActivity")]
    pub async fn cleanup_activity(ctx: ActivityContext) -> Result<(), ActivityError> {
        journal::write(&ctx.info().workflow_id, "CleanupActivity ran");
        Ok(())
    }

    /// `YourWorkflow` from the Go sample.
    #[workflow(name = "YourWorkflow")]
    pub async fn your_workflow(ctx: WorkflowContext) -> Result<(), WorkflowError> {
        ctx.log("cancel workflow started");
        on_cancel!(|cleanup| {
            // Runs only if the workflow's scope ends cancelled, on a disconnected context:
            // the cleanup activity is not cancelled with the workflow.
            if let Err(e) = cleanup.activity(cleanup_activity, ()).await {
                cleanup.log(format!("CleanupActivity failed: {e}"));
            }
        });
        let result = ctx
            .activity(activity_to_be_canceled, ())
            .start_to_close_timeout(Duration::from_secs(30 * 60))
            .heartbeat_timeout(Duration::from_secs(5))
            .cancellation(ActivityCancellationType::WaitCancellationCompleted)
            .await;
        ctx.log(format!("ActivityToBeCanceled returns {result:?}"));
        // Expected to fail at once with a cancellation error, without running.
        let skipped = ctx.activity(activity_to_be_skipped, ()).await;
        ctx.log(format!("Error from ActivityToBeSkipped: {skipped:?}"));
        ctx.log("Workflow Execution complete.");
        Ok(())
    }

    /// An engine builder with the sample's workflow and activities registered.
    pub fn builder() -> workflow_core::EngineBuilder {
        Engine::builder()
            .register(your_workflow)
            .activity(activity_to_be_canceled)
            .activity(activity_to_be_skipped)
            .activity(cleanup_activity)
    }

    /// An engine with the sample's workflow and activities registered, in memory.
    pub async fn engine() -> Result<Engine, workflow_core::ClientError> {
        builder().in_memory().build().await
    }
}

pub mod testing {
    //! Helpers shared by the integration tests.
    use std::time::Duration;
    use workflow_core::{Client, Engine, EventKind, HistoryEvent, Outcome, Workflow};

    /// Starts `workflow` as `id` and waits for its outcome.
    pub async fn run<W: Workflow>(
        engine: &Engine,
        workflow: W,
        id: &str,
        input: W::Input,
    ) -> Outcome<W::Output, W::Error> {
        let run = match engine.client().start(workflow, id, input).await {
            Ok(run) => run,
            Err(e) => panic!("could not start {id}: {e}"),
        };
        match run.outcome().await {
            Ok(outcome) => outcome,
            Err(e) => panic!("no outcome for {id}: {e}"),
        }
    }

    /// The value of a Completed outcome; panics with the outcome otherwise.
    pub fn completed<O: std::fmt::Debug, E: std::fmt::Debug>(outcome: Outcome<O, E>) -> O {
        match outcome {
            Outcome::Completed(v) => v,
            other => panic!("expected Completed, got {other:?}"),
        }
    }

    /// The lines the workflow logged with `ctx.log(..)`, in order.
    pub fn logs(history: &[HistoryEvent]) -> Vec<String> {
        history
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Log { message } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// How many history entries match `pred`.
    pub fn count(history: &[HistoryEvent], pred: impl Fn(&EventKind) -> bool) -> usize {
        history.iter().filter(|e| pred(&e.kind)).count()
    }

    /// Lets the engine run (in tokio time) until `id` is suspended in `state`.
    pub async fn until_state(client: &Client, id: &str, state: &str) {
        for _ in 0..1000 {
            if client.describe(id).await.is_ok_and(|d| d.state == state) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("{id} never reached state {state}");
    }
}

pub mod crash {
    //! Workflows for the crash test (`tests/crash.rs`), run by the `crash-worker` binary in
    //! processes that the test kills with SIGKILL. Every activity execution appends a line
    //! `<incarnation> <workflow id> <op> <label>` to a side log, so that the test can tell
    //! which process ran what.
    use std::io::Write as _;
    use std::path::PathBuf;
    use std::sync::OnceLock;
    use workflow_core::prelude::*;

    static SIDE_LOG: OnceLock<(PathBuf, u32)> = OnceLock::new();

    /// Sets the side log file and this process's incarnation number (once per process).
    pub fn set_side_log(path: PathBuf, incarnation: u32) {
        let _ = SIDE_LOG.set((path, incarnation));
    }

    fn side_log(line: &str) {
        if let Some((path, incarnation)) = SIDE_LOG.get() {
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                // One write per line: concurrent appends (O_APPEND) do not interleave.
                let _ = file.write_all(format!("{incarnation} {line}\n").as_bytes());
            }
        }
    }

    /// A unit of work with a visible side effect.
    #[activity]
    pub async fn record(ctx: ActivityContext, label: String) -> Result<u32, ActivityError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let info = ctx.info();
        side_log(&format!("{} {} {label}", info.workflow_id, info.op.0));
        Ok(1)
    }

    /// `n` steps with a short durable timer after each; returns `n`.
    #[workflow]
    pub async fn steps(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
        let mut done: u32 = 0;
        for i in 0..n {
            done += ctx.activity(record, format!("step-{i}")).await?;
            ctx.sleep(Duration::from_millis(40)).await?;
        }
        Ok(done)
    }

    /// Works until cancelled, then cleans up on a disconnected context.
    #[workflow]
    pub async fn guarded(ctx: WorkflowContext) -> Result<(), WorkflowError> {
        on_cancel!(|cleanup| {
            let _ = cleanup.activity(record, "cleanup".to_string()).await;
        });
        let mut round: u32 = 0;
        loop {
            ctx.activity(record, format!("round-{round}")).await?;
            ctx.sleep(Duration::from_millis(50)).await?;
            round += 1;
        }
    }

    /// Runs `n` children (`steps` of 3 each, ids `<id>-child-<i>`) one after the other;
    /// returns the sum of their results.
    #[workflow]
    pub async fn parent_of(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> {
        let mut total: u32 = 0;
        for i in 0..n {
            let id = format!("{}-child-{i}", ctx.workflow_id());
            total += ctx.child(steps, id, 3).await?;
        }
        Ok(total)
    }

    /// The crash workflows and their activity, registered.
    pub fn builder() -> workflow_core::EngineBuilder {
        Engine::builder()
            .register(steps)
            .register(guarded)
            .register(parent_of)
            .activity(record)
            .poll_interval(Duration::from_millis(20))
    }
}
