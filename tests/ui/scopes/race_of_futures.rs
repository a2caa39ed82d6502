use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let first = ctx
        .race((ctx.sleep(Duration::from_secs(1)), ctx.sleep(Duration::from_secs(2))))
        .await?;
    let _ = first;
    Ok(())
}

fn main() {}
