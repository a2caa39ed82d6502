use workflow_core::prelude::*;

pub struct Card {
    pub number: String,
}

#[activity]
async fn charge(_ctx: ActivityContext, card: Card) -> Result<usize, ActivityError> {
    Ok(card.number.len())
}

fn main() {}
