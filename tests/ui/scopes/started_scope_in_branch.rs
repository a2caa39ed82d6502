use workflow_core::prelude::*;

#[workflow]
async fn nested(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.parallel(
        |p| p.all_ended(),
        [async {
            let inner: ScopeHandle<()> = ctx
                .cancellable(async { ctx.sleep(Duration::from_secs(1)).await })
                .start();
            inner.await
        }],
    )
    .await?;
    Ok(())
}

fn main() {}
