use workflow_core::prelude::*;

#[activity]
async fn charge(ctx: WorkflowContext, cents: u64) -> Result<u64, ActivityError> {
    let _ = ctx;
    Ok(cents)
}

fn main() {}
