use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<u64, String> {
    let _ = ctx;
    Ok(7)
}

fn main() {}
