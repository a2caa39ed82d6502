use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext) -> u64 {
    let _ = ctx;
    7
}

fn main() {}
