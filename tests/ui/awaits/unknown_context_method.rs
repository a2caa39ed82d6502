use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.wait_for_signal("go").await;
    Ok(())
}

fn main() {}
