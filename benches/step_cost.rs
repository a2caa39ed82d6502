//! In-memory step cost (BENCHMARKS.md §1): one workflow of 1,000 sequential trivial
//! activities, against the same logic without a workflow engine.
//!
//! ```text
//! cargo bench --bench step_cost
//! ```
//!
//! Each benchmark runs the whole 1,000-step sequence once per iteration; divan reports the
//! time per iteration, so divide by 1,000 for the cost of one step. They run on one
//! multi-threaded tokio runtime (2 workers); the `_current_thread` variants run the same on a
//! single-threaded runtime, which shows the cost without cross-thread wake-ups.
//!
//! - `plain_async_fn`: a loop awaiting the activity's body (`add_one`) directly. The floor:
//!   no task, no channel, no state saved.
//! - `spawn_oneshot`: each step is `tokio::spawn` of `add_one` plus a `oneshot` reply, the
//!   least a runtime that runs steps as separate tasks pays. The issue's target is the engine
//!   within 2x of this.
//! - `machine_only`: the generated state machine driven by hand through `StepContext`, as the
//!   engine's step does but without the engine: resume, take the scheduled activity, feed its
//!   result back, serialize the snapshot each step (the engine stores one per step). What the
//!   macro's code and the step core cost.
//! - `engine_in_memory`: the real thing: `Engine` on a `MemoryStore`, `client.start`, then
//!   the outcome. Every step loads the record, applies the inbox, resumes the machine, commits
//!   the snapshot and history, dispatches the activity to its own task, which runs it and
//!   reports the result to the inbox.

use std::sync::OnceLock;
use workflow_core::prelude::*;
use workflow_core::{Command, Event, Instance, Step, StepContext, Workflow, WorkflowMachine};

/// Steps per sequence.
const STEPS: u64 = 1_000;

fn main() {
    divan::main();
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// A single-threaded runtime: the same work without cross-thread wake-ups, whose cost and
/// noise dominate the multi-threaded figures on two cores.
fn current_thread() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// The trivial unit of work every variant performs once per step.
async fn add_one(x: u64) -> u64 {
    std::hint::black_box(x) + 1
}

#[activity]
async fn increment(_ctx: ActivityContext, x: u64) -> Result<u64, ActivityError> {
    Ok(add_one(x).await)
}

#[workflow]
async fn sequence(ctx: WorkflowContext, steps: u64) -> Result<u64, WorkflowError> {
    let mut total: u64 = 0;
    for _ in 0..steps {
        total = ctx.activity(increment, total).await?;
    }
    Ok(total)
}

#[divan::bench]
fn plain_async_fn() -> u64 {
    runtime().block_on(async {
        let mut total = 0;
        for _ in 0..STEPS {
            total = add_one(total).await;
        }
        total
    })
}

#[divan::bench]
fn spawn_oneshot() -> u64 {
    spawn_oneshot_on(runtime())
}

#[divan::bench]
fn spawn_oneshot_current_thread() -> u64 {
    spawn_oneshot_on(current_thread())
}

fn spawn_oneshot_on(rt: &tokio::runtime::Runtime) -> u64 {
    // The loop itself runs on a runtime worker, as the engine's steppers do, so a spawned
    // step usually runs on the same worker right after the loop parks on its reply.
    rt.block_on(async {
        tokio::spawn(async {
            let mut total = 0;
            for _ in 0..STEPS {
                let (tx, rx) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    let _ = tx.send(add_one(total).await);
                });
                total = rx.await.expect("the step task replies");
            }
            total
        })
        .await
        .expect("the driving task ends")
    })
}

#[divan::bench]
fn machine_only() -> u64 {
    let mut machine = <sequence as Workflow>::start(STEPS);
    let mut instance = Instance::default();
    let mut event = None;
    let mut now_ms = 0;
    loop {
        let cx = StepContext::new("bench", instance, now_ms);
        if let Some(event) = event.take() {
            cx.apply(event);
        }
        let step = machine.resume(&cx);
        let output = cx.finish();
        instance = output.instance;
        // The engine stores a snapshot of every step.
        let snapshot = workflow_core::Snapshot::of(&machine).expect("the state serializes");
        std::hint::black_box(snapshot);
        match step {
            Step::Ready(result) => return result.expect("the sequence completes"),
            Step::Pending => {}
        }
        let Some(Command::ScheduleActivity { op, input, .. }) = output.commands.into_iter().next()
        else {
            panic!("each step schedules the next activity");
        };
        let x: u64 = serde_json::from_value(input).expect("the input is a number");
        event = Some(Event::ActivityCompleted {
            op,
            result: serde_json::json!(x + 1),
        });
        now_ms += 1;
    }
}

#[divan::bench]
fn engine_in_memory(bencher: divan::Bencher) {
    engine_on(bencher, runtime());
}

#[divan::bench]
fn engine_in_memory_current_thread(bencher: divan::Bencher) {
    engine_on(bencher, current_thread());
}

fn engine_on(bencher: divan::Bencher, rt: &'static tokio::runtime::Runtime) {
    // A fresh engine per iteration (built untimed), so that the store does not accumulate
    // the history of earlier iterations.
    bencher
        .with_inputs(|| {
            rt.block_on(async {
                Engine::builder()
                    .in_memory()
                    .register(sequence)
                    .activity(increment)
                    .build()
                    .await
                    .expect("the engine builds")
            })
        })
        .bench_local_refs(|engine| {
            rt.block_on(async {
                let run = engine
                    .client()
                    .start(sequence, "seq", STEPS)
                    .await
                    .expect("the workflow starts");
                match run.outcome().await.expect("the workflow closes") {
                    Outcome::Completed(total) => assert_eq!(total, STEPS),
                    other => panic!("the sequence did not complete: {other:?}"),
                }
            })
        });
}
