//! Workflows for the multi-process benchmark (`benches/scale_out.rs`) and its worker
//! processes (`src/bin/bench-worker.rs`): the benchmark's client starts them by type, the
//! workers run them.

use std::time::{SystemTime, UNIX_EPOCH};
use workflow_core::prelude::*;

/// Microseconds since the Unix epoch: comparable across processes on one machine.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Adds one.
#[activity(name = "BenchIncrement")]
pub async fn bench_increment(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n + 1)
}

/// The moment it started, in µs since the Unix epoch.
#[activity(name = "BenchClock")]
pub async fn bench_clock(_ctx: ActivityContext) -> Result<u64, ActivityError> {
    Ok(now_us())
}

/// `activities` activities in a row: `activities + 1` committed steps (the first step, then
/// one per result).
#[workflow(name = "BenchChain")]
pub async fn bench_chain(ctx: WorkflowContext, activities: u32) -> Result<u32, WorkflowError> {
    let mut n: u32 = 0;
    while n < activities {
        let next: u32 = ctx.activity(bench_increment, n).await?;
        n = next;
    }
    Ok(n)
}

/// Returns the moment its first activity started: start latency as a client sees it.
#[workflow(name = "BenchFirstActivity")]
pub async fn bench_first_activity(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let started: u64 = ctx.activity(bench_clock, ()).await?;
    Ok(started)
}

/// Parks on an hour-long timer until cancelled: cancel latency as a client sees it.
#[workflow(name = "BenchParked")]
pub async fn bench_parked(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.sleep(Duration::from_secs(3600)).await?;
    Ok(())
}

/// An engine builder with the benchmark's workflows and activities.
pub fn builder() -> workflow_core::EngineBuilder {
    Engine::builder()
        .register(bench_chain)
        .register(bench_first_activity)
        .register(bench_parked)
        .activity(bench_increment)
        .activity(bench_clock)
}
