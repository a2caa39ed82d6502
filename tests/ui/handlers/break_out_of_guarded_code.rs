use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext, n: u32) -> Result<(), WorkflowError> {
    for _ in 0..n {
        on_cancel!(|cleanup| {
            cleanup.log("undo");
        });
        if ctx.is_cancel_requested() {
            break;
        }
        ctx.sleep(Duration::from_secs(60)).await?;
    }
    Ok(())
}

fn main() {}
