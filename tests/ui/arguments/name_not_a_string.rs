use workflow_core::prelude::*;

#[workflow(name = checkout)]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let _ = ctx;
    Ok(())
}

fn main() {}
