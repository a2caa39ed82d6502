//! One damaged row fails only its own workflow, on SQLite and on PostgreSQL: a task input,
//! options or heartbeat details, an inbox event, a timer deadline, a status or a close that
//! does not read (not JSON, not UTF-8, not a number, not a known status). A worker still
//! starts on the file or schema, every other workflow resumes and completes, the damaged one
//! is kept Running and marked stuck with [`WorkflowFault::DamagedRecord`] naming the row, and
//! `list`, `describe`, `history` and `terminate` still work for every workflow.
//!
//! The rows are made by a first worker (a gated activity in flight, a long timer, an event
//! left in the inbox), damaged with SQL behind the store's back while no worker runs, and
//! read by a second worker. Real time, bounded waits.

use durable_workflows::journal;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use workflow_core::prelude::*;
use workflow_core::{EventKind, WorkflowFault};

/// The tags whose gate is open (one per test, so that tests in parallel do not interfere).
static OPENED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn open_gate(tag: &str) {
    OPENED.lock().unwrap().push(tag.to_string());
}

/// Waits until the test opens the gate of `tag`: in flight while the first worker stops, so
/// its task row stays stored.
#[activity]
async fn gate(ctx: ActivityContext, tag: String) -> Result<String, ActivityError> {
    while !OPENED.lock().unwrap().contains(&tag) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    journal::write(&ctx.info().workflow_id, "passed the gate");
    Ok(tag)
}

#[workflow]
async fn gated(ctx: WorkflowContext, tag: String) -> Result<String, WorkflowError> {
    let passed: String = ctx.activity(gate, tag).await?;
    Ok(passed)
}

#[workflow]
async fn sleeper(ctx: WorkflowContext, secs: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(Duration::from_secs(secs)).await?;
    Ok(secs)
}

async fn worker(location: &str, id: &str) -> Engine {
    Engine::builder()
        .register(gated)
        .register(sleeper)
        .activity(gate)
        .location(location)
        .worker_id(id)
        .lease_duration(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .expect("a worker starts on a store with damaged rows")
}

/// Waits (at most 15 s) until `ready` holds.
async fn eventually(what: &str, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ready().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Where the rows live, to damage them behind the store's back.
enum Db {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Db {
    fn location(&self) -> String {
        match self {
            Db::Sqlite(path) => path.display().to_string(),
            Db::Postgres(url) => url.clone(),
        }
    }

    async fn exec(&self, sql: &str) {
        match self {
            Db::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                conn.execute_batch(sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Db::Postgres(url) => workflow_core::postgres_testing::batch_execute(url, sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }
}

/// The fault a worker recorded on `id` (the stored mark), once there is one.
async fn fault_of(client: &Client, id: &str) -> (String, String, WorkflowFault) {
    let mut found = None;
    eventually(&format!("`{id}` is marked stuck"), async || {
        found = client.store().load_workflow(id).await.unwrap().stuck;
        found.is_some()
    })
    .await;
    let fault = found.unwrap();
    match &fault {
        WorkflowFault::DamagedRecord { what, message } => {
            (what.clone(), message.clone(), fault.clone())
        }
        other => panic!("`{id}`: expected a damaged record, got {other:?}"),
    }
}

/// What one store can hold beyond the damage common to all: the sleepers it starts, the
/// SQL that damages them (and `bad-task`'s input), and the faults expected, each as
/// (workflow, `what` starts with, `what` ends with, the message contains).
struct StoreDamage<'a> {
    sleepers: &'a [&'a str],
    sql: &'a [String],
    stuck: &'a [(&'a str, &'a str, &'a str, &'a str)],
}

/// The scenario on one store; `p` prefixes the workflow ids and names the gate. Returns
/// the second worker, still running, for the store's own checks.
async fn scenario(db: &Db, p: &str, own: StoreDamage<'_>) -> Engine {
    let location = db.location();
    let id = |name: &str| format!("{p}-{name}");

    // A first worker makes the rows: tasks in flight, timers, a closed workflow.
    let first = worker(&location, &id("w1")).await;
    let client = first.client();
    let gated_ones = [
        "ok",
        "bad-task",
        "bad-options",
        "bad-details",
        "bad-history",
    ];
    let sleepers: Vec<&str> = ["bad-inbox", "bad-status", "late-inbox"]
        .into_iter()
        .chain(own.sleepers.iter().copied())
        .collect();
    for name in gated_ones {
        client.start(gated, id(name), p.to_string()).await.unwrap();
    }
    for name in &sleepers {
        client.start(sleeper, id(name), 3_600).await.unwrap();
    }
    client.start(sleeper, id("done-close"), 0).await.unwrap();
    let running: Vec<String> = gated_ones
        .iter()
        .chain(&sleepers)
        .map(|name| id(name))
        .collect();
    for w in &running {
        eventually(&format!("`{w}` took its first step"), async || {
            client.describe(w).await.unwrap().version >= 1
        })
        .await;
    }
    eventually("done-close closed", async || {
        client.describe(&id("done-close")).await.unwrap().status == WorkflowStatus::Completed
    })
    .await;
    first.shutdown().await;
    drop(first);

    // An event waits in an inbox; then rows are damaged while no worker runs.
    let operator = Client::connect(&location).await.unwrap();
    operator
        .cancel(&id("bad-inbox"), "the customer asked")
        .await
        .unwrap();
    let common = [
        format!("UPDATE tasks SET options = 'not json' WHERE workflow_id = '{p}-bad-options'"),
        format!(
            "UPDATE tasks SET heartbeat_details = 'not json' \
             WHERE workflow_id = '{p}-bad-details'"
        ),
        format!("UPDATE inbox SET event = 'not json' WHERE workflow_id = '{p}-bad-inbox'"),
        format!("UPDATE workflows SET status = 'bogus' WHERE id = '{p}-bad-status'"),
        format!("UPDATE workflows SET close = '{{oops' WHERE id = '{p}-done-close'"),
        format!(
            "UPDATE history SET event = 'not json' WHERE workflow_id = '{p}-bad-history' \
             AND seq = 1"
        ),
    ];
    for sql in common.iter().chain(own.sql) {
        db.exec(sql).await;
    }
    // With no worker yet, a client lists every workflow and describes a damaged task as
    // such.
    assert_eq!(operator.list(None).await.unwrap().len(), running.len() + 1);
    let task = operator.describe(&id("bad-task")).await.unwrap();
    assert!(
        matches!(&task.stuck, Some(WorkflowFault::DamagedRecord { what, .. })
            if what.ends_with(" input")),
        "{:?}",
        task.stuck
    );

    // A second worker starts, and everything that can go on does.
    let second = worker(&location, &id("w2")).await;
    let client = second.client();
    open_gate(p);
    for name in ["ok", "bad-history"] {
        let run = client.handle(gated, id(name));
        let out = tokio::time::timeout(Duration::from_secs(15), run.outcome())
            .await
            .unwrap_or_else(|_| panic!("`{p}-{name}` did not complete within 15 s"))
            .unwrap();
        assert!(
            matches!(&out, Outcome::Completed(tag) if tag == p),
            "{out:?}"
        );
    }

    // Each damaged one is stuck, naming what is damaged, and ran nothing.
    let common_stuck = [
        ("bad-task", "activity task op#", " input", ""),
        ("bad-options", "activity task op#", " options", ""),
        ("bad-details", "activity task op#", " heartbeat details", ""),
        ("bad-inbox", "inbox event ", "", ""),
    ];
    for (name, starts, ends, says) in common_stuck.iter().chain(own.stuck) {
        let w = id(name);
        let (what, message, fault) = fault_of(&client, &w).await;
        assert!(
            what.starts_with(starts) && what.ends_with(ends) && message.contains(says),
            "`{w}`: {what:?} ({message})"
        );
        let shown = fault.to_string();
        assert!(shown.contains("terminate"), "says what to do: {shown}");
        let described = client.describe(&w).await.unwrap();
        assert_eq!(described.status, WorkflowStatus::Running, "{w}");
        assert!(
            !journal::lines(&w).iter().any(|l| l == "passed the gate"),
            "`{w}` ran its activity: {:?}",
            journal::lines(&w)
        );
    }

    // A status this build does not know: kept Running for the operator, claimed by nobody.
    let bogus = client.describe(&id("bad-status")).await.unwrap();
    assert_eq!(bogus.status, WorkflowStatus::Running);
    assert!(
        matches!(&bogus.stuck, Some(WorkflowFault::DamagedRecord { what, message })
            if what == "status" && message.contains("bogus")),
        "{:?}",
        bogus.stuck
    );
    assert!(
        bogus.lease.is_none(),
        "no worker claims it: {:?}",
        bogus.lease
    );
    // A close that is not JSON: the workflow is still listed, closed, with the fault.
    let closed = client.describe(&id("done-close")).await.unwrap();
    assert_eq!(closed.status, WorkflowStatus::Completed);
    assert!(
        matches!(&closed.stuck, Some(WorkflowFault::DamagedRecord { what, .. }) if what == "close"),
        "{:?}",
        closed.stuck
    );
    assert_eq!(closed.result, None);

    // An event damaged while the worker holds the workflow: stuck, and not stepped again
    // until the next event.
    let late = id("late-inbox");
    db.exec(&format!(
        "INSERT INTO inbox (workflow_id, event) VALUES ('{late}', 'not json')"
    ))
    .await;
    let (what, _, _) = fault_of(&client, &late).await;
    assert!(what.starts_with("inbox event "), "{what}");
    let to_step = second.store().workflows_to_step(&id("w2")).await.unwrap();
    assert!(!to_step.contains(&late), "{to_step:?}");

    // list, describe and history work for every workflow.
    let listed = client.list(None).await.unwrap();
    let listed: HashSet<&str> = listed.iter().map(|d| d.id.as_str()).collect();
    for w in running.iter().chain([&id("done-close")]) {
        assert!(listed.contains(w.as_str()), "{w} is listed");
        client.describe(w).await.unwrap();
        let history = client.history(w).await.unwrap();
        assert!(!history.is_empty(), "{w}");
    }
    let history = client.history(&id("bad-history")).await.unwrap();
    assert!(
        matches!(&history[0].kind, EventKind::Damaged { message } if message.contains("\"not json\"")),
        "{:?}",
        history[0]
    );
    assert!(
        matches!(
            history.last().map(|e| &e.kind),
            Some(EventKind::WorkflowCompleted { .. })
        ),
        "{history:?}"
    );

    // The operator's way out: terminate, from a client that is not a worker, and from the
    // worker's own.
    operator
        .terminate(&id("bad-status"), "status damaged")
        .await
        .unwrap();
    assert_eq!(
        client.describe(&id("bad-status")).await.unwrap().status,
        WorkflowStatus::Terminated
    );
    client
        .terminate(&id("bad-task"), "input damaged")
        .await
        .unwrap();
    assert_eq!(
        client.describe(&id("bad-task")).await.unwrap().status,
        WorkflowStatus::Terminated
    );
    second
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_row_on_sqlite_fails_only_its_own_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::Sqlite(dir.path().join("workflows.db"));
    let sql = [
        // Not UTF-8: read as text with the bytes replaced it would be the JSON string "\u{fffd}",
        // another input than the one stored.
        "UPDATE tasks SET input = CAST(X'22FF22' AS TEXT) WHERE workflow_id = 'sq-bad-task'"
            .to_string(),
        "UPDATE timers SET fire_at_ms = 'soon' WHERE workflow_id = 'sq-bad-timer'".to_string(),
        "UPDATE workflows SET state_name = CAST(X'FF53' AS TEXT) WHERE id = 'sq-bad-state'"
            .to_string(),
    ];
    let engine = scenario(
        &db,
        "sq",
        StoreDamage {
            sleepers: &["bad-timer", "bad-state"],
            sql: &sql,
            stuck: &[
                ("bad-task", "activity task op#", " input", "UTF-8"),
                ("bad-timer", "timer op#", " deadline", "soon"),
            ],
        },
    )
    .await;
    // A state name that is not UTF-8 is read with the bytes replaced: it is only shown.
    let state = engine.client().describe("sq-bad-state").await.unwrap();
    assert_eq!(state.stuck, None);
    assert_eq!(state.state, "\u{fffd}S");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_row_on_postgres_fails_only_its_own_workflow() {
    let Some(url) = workflow_core::postgres_testing::fresh_schema_url("damaged_rows").await else {
        return;
    };
    let db = Db::Postgres(url);
    let sql = ["UPDATE tasks SET input = 'not json' WHERE workflow_id = 'pg-bad-task'".to_string()];
    let engine = scenario(
        &db,
        "pg",
        StoreDamage {
            sleepers: &[],
            sql: &sql,
            stuck: &[],
        },
    )
    .await;
    engine.shutdown().await;
}
