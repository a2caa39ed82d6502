use workflow_core::prelude::*;

#[activity]
async fn charge(_ctx: ActivityContext, cents: u64) -> Result<String, ActivityError> {
    Ok(format!("{cents}"))
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let acts = [charge];
    let r = ctx.activity(acts[0], 5).await?;
    Ok(r)
}

fn main() {}
