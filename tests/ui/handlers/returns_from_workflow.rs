use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    on_cancel!(|cleanup| {
        cleanup.log("leaving");
        return Ok(0);
    });
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(1)
}

fn main() {}
