use workflow_core::prelude::*;

#[activity]
async fn price(_ctx: ActivityContext, item: String) -> Result<u64, ActivityError> {
    Ok(item.len() as u64)
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let lookups = [price];
    let p = ctx.local_activity(lookups[0], "pear".to_string()).await?;
    Ok(p)
}

fn main() {}
