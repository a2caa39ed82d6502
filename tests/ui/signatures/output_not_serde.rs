use workflow_core::prelude::*;

pub struct Receipt;

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<Receipt, WorkflowError> {
    let _ = ctx;
    Ok(Receipt)
}

fn main() {}
