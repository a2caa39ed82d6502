use workflow_core::prelude::*;

#[activity]
async fn charge(_ctx: ActivityContext, cents: u64) -> Result<String, ActivityError> {
    Ok(format!("{cents}"))
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    tokio::select! {
        receipt = ctx.activity(charge, 5) => receipt,
        _ = ctx.sleep(Duration::from_secs(60)) => Err(WorkflowError::application("timed out")),
    }
}

fn main() {}
