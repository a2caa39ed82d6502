use workflow_core::prelude::*;

fn start() -> u64 {
    3
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    for i in start() - 1..start() + 5 {
        ctx.sleep(Duration::from_secs(i)).await?;
    }
    Ok(())
}

fn main() {}
