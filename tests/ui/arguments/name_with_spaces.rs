use workflow_core::prelude::*;

#[activity(name = "charge card")]
async fn charge(_ctx: ActivityContext) -> Result<(), ActivityError> {
    Ok(())
}

fn main() {}
