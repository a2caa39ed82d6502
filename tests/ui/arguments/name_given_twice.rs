use workflow_core::prelude::*;

#[workflow(name = "one", name = "two")]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let _ = ctx;
    Ok(())
}

fn main() {}
