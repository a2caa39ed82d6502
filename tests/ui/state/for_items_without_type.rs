use workflow_core::prelude::*;

fn items() -> Vec<u64> {
    vec![1, 2, 3]
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    for i in items() {
        ctx.sleep(Duration::from_secs(i)).await?;
    }
    Ok(())
}

fn main() {}
