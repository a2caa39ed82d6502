use workflow_core::prelude::*;

#[activity]
async fn charge(_ctx: ActivityContext, cents: u64) -> Result<String, ActivityError> {
    Ok(format!("{cents}"))
}

#[workflow]
async fn wf(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    match n {
        0 => Ok(0),
        m if ctx.activity(charge, m).await.is_ok() => Ok(m),
        m => Ok(m + 1),
    }
}

fn main() {}
