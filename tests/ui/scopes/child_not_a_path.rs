use workflow_core::prelude::*;

#[workflow]
async fn child(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.sleep(Duration::from_secs(1)).await
}

#[workflow]
async fn parent(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let which = [child];
    ctx.child(which[0], "child-1", ()).await
}

fn main() {}
