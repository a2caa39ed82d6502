use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    ctx.log("slept");
    Ok(())
}

fn main() {}
