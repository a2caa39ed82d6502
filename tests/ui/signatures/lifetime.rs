use workflow_core::prelude::*;

#[workflow]
async fn wf<'a>(ctx: WorkflowContext, input: &'a str) -> Result<(), WorkflowError> {
    let _ = (ctx, input);
    Ok(())
}

fn main() {}
