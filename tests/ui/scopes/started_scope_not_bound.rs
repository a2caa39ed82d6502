use workflow_core::prelude::*;

#[workflow]
async fn unbound(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.non_cancellable(async { ctx.sleep(Duration::from_secs(1)).await })
        .start();
    Ok(())
}

fn main() {}
