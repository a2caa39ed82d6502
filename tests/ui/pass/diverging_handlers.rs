//! A handler may end by diverging, like any workflow code: `panic!` and its kin, `exit`, a
//! `loop`, as a statement or as its last expression, before or after an await. Its panic is
//! reported like a panic of the workflow's own code (the step is not committed).
#![deny(warnings)]

use workflow_core::prelude::*;

#[workflow]
async fn panics_as_a_statement(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    on_cancel!(|_cleanup| {
        panic!("cannot clean up");
    });
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(())
}

#[workflow]
async fn panics_as_its_value(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    on_cancel!(|_cleanup| panic!("cannot clean up"));
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(())
}

#[workflow]
async fn diverges_after_an_await(ctx: WorkflowContext, n: u32) -> Result<(), WorkflowError> {
    on_cancel!(|cleanup| {
        cleanup.sleep(Duration::from_secs(1)).await.ok();
        match n {
            0 => todo!(),
            1 => unimplemented!("one"),
            2 => std::process::exit(2),
            _ => unreachable!("{n}"),
        }
    });
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(())
}

#[workflow]
async fn loops_forever(ctx: WorkflowContext, stop: bool) -> Result<(), WorkflowError> {
    on_cancel!(|cleanup| {
        cleanup.log("giving up");
        if stop {
            std::process::abort()
        } else {
            loop {}
        }
    });
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(())
}

#[workflow]
async fn compensation_panics(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ctx.compensable(async {
        ctx.sleep(Duration::from_secs(1)).await?;
        Ok(())
    })
    .compensate(async { panic!("cannot compensate") })
    .confirm(async {
        ctx.sleep(Duration::from_secs(1)).await?;
        todo!()
    })
    .await?;
    Ok(())
}

fn main() {}
