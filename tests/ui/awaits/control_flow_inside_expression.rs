use workflow_core::prelude::*;

#[activity]
async fn charge(_ctx: ActivityContext, cents: u64) -> Result<String, ActivityError> {
    Ok(format!("{cents}"))
}

fn len(s: String) -> usize {
    s.len()
}

#[workflow]
async fn wf(ctx: WorkflowContext, n: u64) -> Result<usize, WorkflowError> {
    let l = len(if n > 0 { ctx.activity(charge, n).await? } else { String::new() });
    Ok(l)
}

fn main() {}
