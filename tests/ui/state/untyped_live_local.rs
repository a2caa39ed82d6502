use workflow_core::prelude::*;

#[activity]
async fn charge(_ctx: ActivityContext, cents: u64) -> Result<String, ActivityError> {
    Ok(format!("{cents}"))
}

fn make_list() -> Vec<u64> {
    vec![1, 2]
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<usize, WorkflowError> {
    let list = make_list();
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(list.len())
}

fn main() {}
