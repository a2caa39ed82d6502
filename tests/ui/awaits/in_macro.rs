use workflow_core::prelude::*;

#[activity]
async fn charge(_ctx: ActivityContext, cents: u64) -> Result<String, ActivityError> {
    Ok(format!("{cents}"))
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.log(format!("receipt: {:?}", ctx.activity(charge, 5).await));
    Ok(())
}

fn main() {}
