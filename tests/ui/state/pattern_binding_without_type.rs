use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext, pair: Option<u64>) -> Result<u64, WorkflowError> {
    if let Some(n) = pair {
        ctx.sleep(Duration::from_secs(1)).await?;
        return Ok(n);
    }
    Ok(0)
}

fn main() {}
