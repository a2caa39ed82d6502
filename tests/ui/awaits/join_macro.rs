use workflow_core::prelude::*;

#[activity]
async fn charge(_ctx: ActivityContext, cents: u64) -> Result<String, ActivityError> {
    Ok(format!("{cents}"))
}

#[activity]
async fn ship(_ctx: ActivityContext, item: String) -> Result<(), ActivityError> {
    let _ = item;
    Ok(())
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let (receipt, shipped) = tokio::join!(
        ctx.activity(charge, 5),
        ctx.activity(ship, "book".to_string())
    );
    shipped?;
    receipt
}

fn main() {}
