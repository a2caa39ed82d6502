use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let later = async { ctx.sleep(Duration::from_secs(1)).await };
    drop(later);
    Ok(())
}

fn main() {}
