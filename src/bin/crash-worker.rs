//! Test support for `tests/crash.rs`: a worker process for the crash workflows of
//! `durable_workflows::crash`, which the test kills with SIGKILL and restarts.
//!
//! `crash-worker DB SIDE_LOG INCARNATION` runs until killed.

use durable_workflows::crash;
use std::time::{SystemTime, UNIX_EPOCH};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, side_log, incarnation] = args.as_slice() else {
        return Err("usage: crash-worker DB SIDE_LOG INCARNATION".into());
    };
    let incarnation: u32 = incarnation.parse()?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(side_log)
        .and_then(|mut f| {
            use std::io::Write as _;
            f.write_all(format!("{incarnation} start {now_ms}\n").as_bytes())
        })?;
    crash::set_side_log(side_log.into(), incarnation);
    // One worker restarted in place: the same worker id takes the killed incarnation's
    // leases back at once instead of waiting for them to expire.
    let _engine = crash::builder()
        .worker_id("crash-worker")
        .store(workflow_core::SqliteStore::open(db)?)
        .build()
        .await?;
    std::future::pending::<()>().await;
    Ok(())
}
