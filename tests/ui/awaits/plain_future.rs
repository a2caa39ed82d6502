use workflow_core::prelude::*;

async fn fetch() -> u32 {
    7
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    let n = fetch().await;
    ctx.log("fetched");
    Ok(n)
}

fn main() {}
