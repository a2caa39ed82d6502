//! Handlers may read the workflow's cancel state, derive more disconnected contexts, await
//! several times, and use contexts made before the handler.
use workflow_core::prelude::*;

#[activity]
async fn release(_ctx: ActivityContext, what: String) -> Result<(), ActivityError> {
    let _ = what;
    Ok(())
}

#[workflow]
async fn wf(ctx: WorkflowContext, hold: String) -> Result<(), WorkflowError> {
    let spare = ctx.disconnected();
    on_cancel!(|cleanup| {
        cleanup.log(format!("cancel reason: {:?}", ctx.cancel_reason()));
        if let Err(e) = cleanup.activity(release, hold.clone()).await {
            cleanup.log(format!("release failed: {e}"));
        }
        let more = cleanup.disconnected();
        let _ = more.sleep(Duration::from_secs(1)).await;
        let _ = spare.sleep(Duration::from_secs(1)).await;
    });
    ctx.cancelled().await;
    Ok(())
}

fn main() {}
