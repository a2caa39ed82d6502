use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext, a: u64, b: u64) -> Result<u64, WorkflowError> {
    let _ = ctx;
    Ok(a + b)
}

fn main() {}
