use workflow_core::prelude::*;

struct Shop;

impl Shop {
    #[workflow]
    async fn checkout(&self, ctx: WorkflowContext) -> Result<(), WorkflowError> {
        let _ = ctx;
        Ok(())
    }
}

fn main() {}
