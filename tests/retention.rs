//! Retention and id reuse (issue 11.9): closed workflows are purged after the period the
//! user chose (`EngineBuilder::retention`, `wf purge --older-than`), a running workflow never
//! is, and a closed workflow's id can be taken by a new one when the caller asks for it.

use std::path::Path;
use workflow_core::cli::{self, Cli};
use workflow_core::prelude::*;
use workflow_core::{ClientError, EngineBuilder, IdReusePolicy, SqliteStore, StartOptions};

#[activity]
async fn work(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
    Ok(n)
}

/// Sleeps `secs`, then completes with `n`, or fails when `n` is 0.
#[workflow]
async fn job(ctx: WorkflowContext, input: (u32, u64)) -> Result<u32, WorkflowError> {
    let (n, secs) = input;
    ctx.sleep(Duration::from_secs(secs)).await?;
    let done = ctx.activity(work, n).await?;
    if done == 0 {
        return Err(WorkflowError::application("nothing to do"));
    }
    Ok(done)
}

fn builder() -> EngineBuilder {
    Engine::builder().register(job).activity(work)
}

#[tokio::test(start_paused = true)]
async fn workflows_closed_longer_than_the_retention_are_purged_and_running_ones_never() {
    let engine = builder()
        .in_memory()
        .retention(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let client = engine.client();
    for id in ["done-1", "done-2"] {
        let run = client.start(job, id, (1, 0)).await.unwrap();
        assert!(matches!(
            run.outcome().await.unwrap(),
            Outcome::Completed(1)
        ));
    }
    // Parked for two days: running all along.
    client.start(job, "parked", (1, 2 * 86_400)).await.unwrap();
    // Half the period later, nothing is purged.
    tokio::time::sleep(Duration::from_secs(1800)).await;
    assert_eq!(client.list(None).await.unwrap().len(), 3);
    // Past the period (and the next purge, a quarter period later), the closed ones are gone.
    tokio::time::sleep(Duration::from_secs(1800 + 900 + 1)).await;
    for id in ["done-1", "done-2"] {
        assert!(
            matches!(client.describe(id).await, Err(ClientError::NotFound(_))),
            "{id} was purged"
        );
    }
    let parked = client.describe("parked").await.unwrap();
    assert_eq!(parked.status, WorkflowStatus::Running);
    assert!(!client.history("parked").await.unwrap().is_empty());
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_closed_workflows_id_is_reused_only_when_the_caller_asks() {
    let engine = builder().in_memory().build().await.unwrap();
    let client = engine.client();
    let completed = client.start(job, "nightly", (5, 0)).await.unwrap();
    assert!(matches!(
        completed.outcome().await.unwrap(),
        Outcome::Completed(5)
    ));

    // By default an id is never reused.
    let again = client.start(job, "nightly", (6, 0)).await;
    assert!(
        matches!(again, Err(ClientError::AlreadyExists(_))),
        "{:?}",
        again.err()
    );
    // A completed job is kept under `AllowIfNotCompleted`.
    let options = StartOptions::default().id_reuse(IdReusePolicy::AllowIfNotCompleted);
    let again = client
        .start_with(job, "nightly", (6, 0), options.clone())
        .await;
    assert!(
        matches!(again, Err(ClientError::AlreadyExists(_))),
        "{:?}",
        again.err()
    );
    // `AllowIfClosed` replaces it: a new run, with a fresh history.
    let any = StartOptions::default().id_reuse(IdReusePolicy::AllowIfClosed);
    let second = client
        .start_with(job, "nightly", (0, 0), any.clone())
        .await
        .unwrap();
    assert!(matches!(
        second.outcome().await.unwrap(),
        Outcome::Failed(_)
    ));
    let history = client.history("nightly").await.unwrap();
    let started = history
        .iter()
        .filter(|e| matches!(e.kind, workflow_core::EventKind::WorkflowStarted { .. }))
        .count();
    assert_eq!(started, 1, "the old history went with the old workflow");
    // A failed job makes way under `AllowIfNotCompleted`.
    let third = client
        .start_with(job, "nightly", (7, 0), options)
        .await
        .unwrap();
    assert!(matches!(
        third.outcome().await.unwrap(),
        Outcome::Completed(7)
    ));
    // A running workflow's id is never reused.
    client.start(job, "running", (1, 3600)).await.unwrap();
    let taken = client.start_with(job, "running", (2, 0), any).await;
    assert!(
        matches!(taken, Err(ClientError::AlreadyExists(_))),
        "{:?}",
        taken.err()
    );
    assert_eq!(
        client.describe("running").await.unwrap().status,
        WorkflowStatus::Running
    );
    engine.shutdown().await;
}

/// Runs `wf ARGS` on `db` (with this file's workflows); the error is what `wf` would print.
async fn wf(db: &Path, args: &[&str]) -> Result<String, String> {
    use clap::Parser as _;
    let mut argv = vec!["wf", "--db", db.to_str().unwrap()];
    argv.extend_from_slice(args);
    let parsed = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    cli::execute(parsed, Some(builder()))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wf_purge_deletes_what_closed_before_the_cutoff_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workflows.db");
    let engine = builder()
        .store(SqliteStore::open(&db).unwrap())
        .build()
        .await
        .unwrap();
    let client = engine.client();
    for id in ["a", "b"] {
        client
            .start(job, id, (1, 0))
            .await
            .unwrap()
            .outcome()
            .await
            .unwrap();
    }
    client.start(job, "parked", (1, 86_400)).await.unwrap();

    let out = wf(&db, &["purge", "--older-than", "1d"]).await.unwrap();
    assert!(
        out.starts_with("no closed workflow(s) closed before 20"),
        "{out}"
    );
    let out = wf(&db, &["purge", "--older-than", "0s", "--dry-run"])
        .await
        .unwrap();
    assert!(out.starts_with("would purge 2 closed workflow(s)"), "{out}");
    assert!(out.contains("dry run: nothing was deleted"), "{out}");
    assert_eq!(
        client.list(None).await.unwrap().len(),
        3,
        "a dry run deletes nothing"
    );
    let out = wf(&db, &["purge", "--older-than", "0s", "--status", "failed"])
        .await
        .unwrap();
    assert!(out.starts_with("no failed workflow(s)"), "{out}");
    let out = wf(&db, &["purge", "--older-than", "0s"]).await.unwrap();
    assert!(out.starts_with("purged 2 closed workflow(s)"), "{out}");
    let left: Vec<String> = client
        .list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(left, ["parked"]);

    let err = wf(&db, &["purge", "--older-than", "soon"])
        .await
        .unwrap_err();
    assert!(err.contains("`soon` is not a duration"), "{err}");
    let err = wf(&db, &["purge", "--older-than", "1d", "--status", "running"])
        .await
        .unwrap_err();
    assert!(err.contains("never purged"), "{err}");

    // `wf start --reuse-id`: a running workflow is never replaced; a closed one is.
    let err = wf(
        &db,
        &[
            "start",
            "job",
            "parked",
            "--input",
            "[1, 0]",
            "--reuse-id",
            "closed",
        ],
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("exists and --reuse-id does not let it be replaced"),
        "{err}"
    );
    client
        .start(job, "again", (1, 0))
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    let out = wf(
        &db,
        &[
            "start",
            "job",
            "again",
            "--input",
            "[2, 0]",
            "--reuse-id",
            "closed",
        ],
    )
    .await
    .unwrap();
    assert!(
        out.contains("replacing the closed workflow that had the id"),
        "{out}"
    );
    engine.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_purged_sqlite_file_reuses_its_pages_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workflows.db");
    let engine = builder()
        .store(SqliteStore::open(&db).unwrap())
        .build()
        .await
        .unwrap();
    let client = engine.client();
    let size = || {
        // The WAL is checkpointed into the file as it goes; count both.
        let wal = db.with_extension("db-wal");
        std::fs::metadata(&db).unwrap().len() + std::fs::metadata(&wal).map_or(0, |m| m.len())
    };
    let mut sizes = Vec::new();
    for round in 0..3 {
        for i in 0..150 {
            let id = format!("r{round}-{i}");
            client.start(job, id.as_str(), (1, 0)).await.unwrap();
        }
        for i in 0..150 {
            let id = format!("r{round}-{i}");
            client.handle(job, id).outcome().await.unwrap();
        }
        let purged = client
            .purge(&workflow_core::Purge::closed_before(u64::MAX))
            .await
            .unwrap();
        assert_eq!(purged.len(), 150);
        sizes.push(size());
    }
    // The second and third rounds fit in the pages the first one freed.
    assert!(
        sizes[2] <= sizes[0] + sizes[0] / 5,
        "sizes after each round: {sizes:?}"
    );
    engine.shutdown().await;
}
