use workflow_core::prelude::*;

#[activity]
fn charge(_ctx: ActivityContext, cents: u64) -> Result<u64, ActivityError> {
    Ok(cents)
}

fn main() {}
