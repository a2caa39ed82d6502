use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext, check: bool) -> Result<(), WorkflowError> {
    if check && ctx.sleep(Duration::from_secs(1)).await.is_ok() {
        ctx.log("slept");
    }
    Ok(())
}

fn main() {}
