use workflow_core::prelude::*;

#[activity]
async fn charge(_ctx: ActivityContext, cents: u64) -> Result<String, ActivityError> {
    Ok(format!("{cents}"))
}

#[workflow]
async fn wf(ctx: WorkflowContext, n: u64) -> Result<String, WorkflowError> {
    let receipt: String = if n > 0 {
        on_cancel!(|cleanup| {
            cleanup.log("undo");
        });
        ctx.activity(charge, n).await?
    } else {
        String::new()
    };
    Ok(receipt)
}

fn main() {}
