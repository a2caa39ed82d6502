//! `wf`: list, describe, cancel and terminate workflows stored in a SQLite file, from any
//! terminal. `wf --help` lists the commands; `--db PATH` (or `WF_DB`) picks the file.
//!
//! `worker`, `start` and `graph` need the workflow code, so they run from a binary that
//! registers it: see `examples/worker.rs`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    workflow_core::cli::run_store_only().await
}
