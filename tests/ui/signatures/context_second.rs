use workflow_core::prelude::*;

#[workflow]
async fn wf(order: u64, ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let _ = ctx;
    Ok(order)
}

fn main() {}
