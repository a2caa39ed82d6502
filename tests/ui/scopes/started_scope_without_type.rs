use workflow_core::prelude::*;

#[workflow]
async fn untyped(ctx: WorkflowContext) -> Result<u64, WorkflowError> {
    let handle = ctx
        .cancellable(async { ctx.sleep(Duration::from_secs(1)).await.map(|()| 1) })
        .start();
    handle.await
}

fn main() {}
