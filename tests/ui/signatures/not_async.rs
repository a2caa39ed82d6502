use workflow_core::prelude::*;

#[workflow]
fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let _ = ctx;
    Ok(())
}

fn main() {}
