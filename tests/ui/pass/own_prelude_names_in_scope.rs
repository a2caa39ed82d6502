//! A user's own `Result`, `Option`, `Box`, `Vec`, `String` and `serde` in scope do not change
//! what the generated code means: it uses absolute paths only.
#![allow(dead_code)]

use workflow_core::prelude::*;

type Result<T> = ::std::result::Result<T, ()>;
enum Option {
    Nothing,
}
struct Box;
struct Vec;
struct String;
mod serde {}
mod core {}
mod std {}

#[activity]
async fn double(_ctx: ActivityContext, x: u64) -> ::std::result::Result<u64, ActivityError> {
    Ok(x * 2)
}

#[workflow]
async fn wf(ctx: WorkflowContext, n: u64) -> ::std::result::Result<u64, WorkflowError> {
    on_cancel!(|cleanup| {
        cleanup.log("cancelled");
    });
    let mut total: u64 = 0;
    let items: ::std::vec::Vec<u64> = ::std::vec![1, 2, 3];
    for item in items {
        total += ctx.activity(double, item + n).await?;
    }
    if total > 10 {
        ctx.sleep(::std::time::Duration::from_secs(1)).await?;
    }
    Ok(total)
}

fn main() {}
