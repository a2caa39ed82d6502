use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    on_cancel!(|cleanup, reason| {
        cleanup.log(reason);
    });
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(())
}

fn main() {}
