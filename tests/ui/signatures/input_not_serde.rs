use workflow_core::prelude::*;

pub struct Order {
    pub cents: u64,
}

#[workflow]
async fn wf(ctx: WorkflowContext, order: Order) -> Result<u64, WorkflowError> {
    let _ = ctx;
    Ok(order.cents)
}

fn main() {}
