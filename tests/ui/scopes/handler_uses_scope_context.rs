use workflow_core::prelude::*;

#[activity]
async fn release(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.cancellable(async {
        on_cancel!(|cleanup| {
            // `ctx` is the scope's context here, cancelled when the handler runs.
            let _ = ctx.activity(release, ()).await;
            cleanup.log("released");
        });
        ctx.sleep(Duration::from_secs(60)).await?;
        Ok(())
    })
    .await
}

fn main() {}
