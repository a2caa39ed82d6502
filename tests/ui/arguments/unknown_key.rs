use workflow_core::prelude::*;

#[workflow(queue = "fast")]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let _ = ctx;
    Ok(())
}

fn main() {}
