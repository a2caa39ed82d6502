use workflow_core::prelude::*;

#[workflow]
async fn wf(ctx: WorkflowContext, name: String) -> Result<usize, WorkflowError> {
    let borrowed: &String = &name;
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(borrowed.len())
}

fn main() {}
