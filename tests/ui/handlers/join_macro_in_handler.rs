use workflow_core::prelude::*;

#[activity]
async fn release(_ctx: ActivityContext, what: String) -> Result<(), ActivityError> {
    let _ = what;
    Ok(())
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    on_cancel!(|cleanup| {
        let _ = futures::join!(
            cleanup.activity(release, "seat".to_string()),
            cleanup.activity(release, "card".to_string())
        );
    });
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(())
}

fn main() {}
