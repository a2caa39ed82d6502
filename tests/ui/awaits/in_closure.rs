use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let wait = || async move { ctx.sleep(Duration::from_secs(1)).await };
    let _ = wait;
    Ok(())
}

fn main() {}
