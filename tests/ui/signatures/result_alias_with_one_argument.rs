use workflow_core::prelude::*;

type Result<T> = std::result::Result<T, WorkflowError>;

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<u64> {
    let _ = ctx;
    Ok(7)
}

fn main() {}
