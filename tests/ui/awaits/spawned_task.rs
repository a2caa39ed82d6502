use workflow_core::prelude::*;

#[workflow]
async fn wf(_ctx: WorkflowContext) -> Result<(), WorkflowError> {
    let _ = tokio::spawn(async {}).await;
    Ok(())
}

fn main() {}
