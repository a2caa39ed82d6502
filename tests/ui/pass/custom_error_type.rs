//! A workflow may use its own error type: it says which errors are cancellations.
use serde::{Deserialize, Serialize};
use workflow_core::prelude::*;

#[derive(Debug, Serialize, Deserialize)]
enum CheckoutError {
    Cancelled(String),
    OutOfStock,
    Other(String),
}

impl std::fmt::Display for CheckoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl IsCancellation for CheckoutError {
    fn is_cancellation(&self) -> bool {
        matches!(self, CheckoutError::Cancelled(_))
    }
}

impl From<WorkflowError> for CheckoutError {
    fn from(e: WorkflowError) -> Self {
        if e.is_cancellation() {
            CheckoutError::Cancelled(e.to_string())
        } else {
            CheckoutError::Other(e.to_string())
        }
    }
}

#[workflow]
async fn checkout(ctx: WorkflowContext, items: u32) -> Result<u32, CheckoutError> {
    if items == 0 {
        return Err(CheckoutError::OutOfStock);
    }
    ctx.sleep(Duration::from_secs(5)).await?;
    Ok(items)
}

fn main() {}
