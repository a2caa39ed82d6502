use workflow_core::prelude::*;

#[activity]
async fn charge(_ctx: ActivityContext, cents: u64) -> Result<String, ActivityError> {
    Ok(format!("{cents}"))
}

fn prefix() -> String {
    "receipt".to_string()
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let s = format!("{}{}", prefix(), 1) + &ctx.activity(charge, 5).await?;
    Ok(s)
}

fn main() {}
