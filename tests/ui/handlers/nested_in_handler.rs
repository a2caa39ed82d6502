use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    on_cancel!(|cleanup| {
        on_cancel!(|again| {
            again.log("twice");
        });
        cleanup.log("once");
    });
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(())
}

fn main() {}
