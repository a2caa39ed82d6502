use workflow_core::prelude::*;

#[activity]
async fn release(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let r = ctx
        .cancellable(async {
            on_cancel!(|cleanup| {
                let _ = cleanup.activity(release, ()).await;
            });
            ctx.sleep(Duration::from_secs(60)).await?;
            Ok::<(), WorkflowError>(())
        })
        .await;
    r
}

fn main() {}
