use workflow_core::prelude::*;

#[activity]
async fn charge<T>(_ctx: ActivityContext, input: T) -> Result<(), ActivityError> {
    let _ = input;
    Ok(())
}

fn main() {}
