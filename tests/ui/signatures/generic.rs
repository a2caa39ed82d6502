use workflow_core::prelude::*;

#[workflow]
async fn wf<T: serde::Serialize>(ctx: WorkflowContext, input: T) -> Result<(), WorkflowError> {
    let _ = (ctx, input);
    Ok(())
}

fn main() {}
