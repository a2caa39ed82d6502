use workflow_core::prelude::*;

#[activity]
async fn cleanup_activity(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    on_cancel!(|cleanup| {
        // Wrong context: the workflow's own context is already cancelled here.
        let _ = ctx.activity(cleanup_activity, ()).await;
        cleanup.log("done");
    });
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(())
}

fn main() {}
