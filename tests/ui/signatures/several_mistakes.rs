use workflow_core::prelude::*;

#[workflow]
fn wf<T>(ctx: WorkflowContext, a: T, b: u64) -> u64 {
    tokio::time::sleep(Duration::from_secs(1)).await;
    b
}

fn main() {}
