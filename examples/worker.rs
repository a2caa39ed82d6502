//! A worker binary for the seeds' Go sample: the whole `wf` command line, with
//! `YourWorkflow` and its activities registered, on a SQLite file.
//!
//! In one terminal:
//!
//! ```text
//! cargo run --example worker -- --db /tmp/wf.db start YourWorkflow your-workflow-1
//! cargo run --example worker -- --db /tmp/wf.db worker
//! ```
//!
//! In another, once `ActivityToBeCanceled` heartbeats, cancel it by id (the Go sample's
//! `-wid` flag) and look at what happened:
//!
//! ```text
//! cargo run --bin wf -- --db /tmp/wf.db cancel your-workflow-1
//! cargo run --bin wf -- --db /tmp/wf.db history your-workflow-1
//! ```

use durable_workflows::{go_sample, journal};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Print what the activities do, as they do it.
    journal::echo(true);
    workflow_core::cli::run(go_sample::builder()).await
}
