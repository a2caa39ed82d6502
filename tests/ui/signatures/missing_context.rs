use workflow_core::prelude::*;

#[workflow]
async fn wf(order: u64) -> Result<u64, WorkflowError> {
    Ok(order)
}

fn main() {}
