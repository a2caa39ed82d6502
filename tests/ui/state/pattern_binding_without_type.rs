use workflow_core::prelude::*;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Pair(u64, u64);

#[workflow]
async fn wf(ctx: WorkflowContext, pair: Pair) -> Result<u64, WorkflowError> {
    let Pair(a, b) = pair;
    ctx.sleep(Duration::from_secs(1)).await?;
    Ok(a + b)
}

fn main() {}
