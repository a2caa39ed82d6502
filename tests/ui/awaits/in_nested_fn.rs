use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    async fn helper() {
        std::future::ready(()).await;
    }
    ctx.log("start");
    Ok(())
}

fn main() {}
