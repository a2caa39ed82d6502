//! A worker process for `benches/scale_out.rs`: `bench-worker LOCATION WORKER_ID` runs the
//! benchmark's workflows on the store at LOCATION (a `postgres://` URL or a SQLite path),
//! prints `ready` once it holds its share, and stops gracefully on SIGTERM.

use durable_workflows::bench;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, location, worker_id] = args.as_slice() else {
        return Err("usage: bench-worker LOCATION WORKER_ID".into());
    };
    let engine = bench::builder()
        .location(location.clone())
        .worker_id(worker_id.clone())
        .build()
        .await?;
    println!("ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    engine.shutdown().await;
    Ok(())
}
