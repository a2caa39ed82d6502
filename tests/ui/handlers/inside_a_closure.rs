use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let register = || {
        on_cancel!(|cleanup| {
            cleanup.log("cleanup");
        });
    };
    register();
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(())
}

fn main() {}
