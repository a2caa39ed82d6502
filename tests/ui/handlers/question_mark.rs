use workflow_core::prelude::*;

#[activity]
async fn cleanup_activity(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    on_cancel!(|cleanup| {
        cleanup.activity(cleanup_activity, ()).await?;
    });
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(())
}

fn main() {}
