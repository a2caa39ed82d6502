use workflow_core::prelude::*;

#[activity]
async fn ship(_ctx: ActivityContext, item: String) -> Result<(), ActivityError> {
    let _ = item;
    Ok(())
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let shipped = futures::future::join_all(vec![
        ctx.activity(ship, "book".to_string()),
        ctx.activity(ship, "pen".to_string()),
    ])
    .await;
    let _ = shipped;
    Ok(())
}

fn main() {}
