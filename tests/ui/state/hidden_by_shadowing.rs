use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let total: u64 = n;
    for _ in 0..3u64 {
        let total: u64 = total + 1;
        ctx.log(format!("{total}"));
        ctx.sleep(Duration::from_secs(1)).await?;
    }
    Ok(total)
}

fn main() {}
