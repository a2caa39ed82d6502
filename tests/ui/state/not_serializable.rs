use workflow_core::prelude::*;

struct Connection {
    port: u16,
}

#[workflow]
async fn wf(ctx: WorkflowContext) -> Result<u16, WorkflowError> {
    let conn: Connection = Connection { port: 5432 };
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(conn.port)
}

fn main() {}
