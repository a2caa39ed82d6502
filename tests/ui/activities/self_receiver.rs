use workflow_core::prelude::*;

struct Payments;

impl Payments {
    #[activity]
    async fn charge(&self, _ctx: ActivityContext) -> Result<(), ActivityError> {
        Ok(())
    }
}

fn main() {}
