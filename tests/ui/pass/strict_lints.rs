//! The generated code compiles under strict lints in the user's crate.
#![deny(warnings, missing_docs, unsafe_code, unused_qualifications, rust_2018_idioms)]
//! Docs for the test crate.

use workflow_core::prelude::*;

/// Doubles its input.
#[activity]
pub async fn double(_ctx: ActivityContext, x: u64) -> Result<u64, ActivityError> {
    Ok(x * 2)
}

/// A documented public workflow.
#[workflow]
pub async fn documented(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let d = ctx.activity(double, n).await?;
    ctx.sleep(Duration::from_secs(d)).await?;
    Ok(d)
}

fn main() {}
