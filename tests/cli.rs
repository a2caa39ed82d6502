//! The `wf` binary in its own process, against a database an engine in this process runs:
//! a cancel written by `wf` reaches the workflow, its cleanup runs, and `wf` reads back the
//! outcome, the history and clear errors.

use durable_workflows::journal;
use std::process::Command;
use workflow_core::prelude::*;
use workflow_core::SqliteStore;

#[activity]
async fn tidy(ctx: ActivityContext, what: String) -> Result<(), ActivityError> {
    journal::write(&ctx.info().workflow_id, format!("tidy {what}"));
    Ok(())
}

/// Waits a day for something, tidying up if it is cancelled meanwhile.
#[workflow]
async fn patient(ctx: WorkflowContext, what: String) -> Result<(), WorkflowError> {
    let label: String = what.clone();
    on_cancel!(|cleanup| {
        let _ = cleanup.activity(tidy, label).await;
    });
    ctx.sleep(Duration::from_secs(86_400)).await?;
    Ok(())
}

/// Logs its input, then waits a day.
#[workflow]
async fn chatty(ctx: WorkflowContext, line: String) -> Result<(), WorkflowError> {
    ctx.log(line);
    ctx.sleep(Duration::from_secs(86_400)).await?;
    Ok(())
}

fn wf(db: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wf"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("the wf binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_from_wf_in_another_process_reaches_the_workflow_and_its_cleanup_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workflows.db");
    let engine = Engine::builder()
        .register(patient)
        .activity(tidy)
        .store(SqliteStore::open(&db).unwrap())
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let run = engine
        .client()
        .start(patient, "cli-patient", "the garden".to_string())
        .await
        .unwrap();

    let (ok, out, err) = wf(&db, &["list"]);
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("STATUS"),
        "{out}"
    );
    assert!(
        out.contains("cli-patient") && out.contains("running"),
        "{out}"
    );

    let (ok, out, err) = wf(&db, &["cancel", "cli-patient", "--reason", "rain"]);
    assert!(ok, "{err}");
    assert!(out.contains("cancel requested"), "{out}");
    // A second request changes nothing (R1.4); the worker may already have closed the
    // workflow, which is also an answer that changes nothing.
    let (ok, out, err) = wf(&db, &["cancel", "cli-patient"]);
    assert!(
        (ok && out.contains("already requested")) || (!ok && err.contains("already closed")),
        "{out}{err}"
    );

    // A guard against hanging, not a timing assertion.
    let outcome = tokio::time::timeout(Duration::from_secs(60), run.outcome())
        .await
        .expect("the cancel reaches the workflow")
        .unwrap();
    assert!(outcome.is_canceled(), "{outcome:?}");
    assert_eq!(journal::lines("cli-patient"), ["tidy the garden"]);

    let (ok, out, err) = wf(&db, &["--json", "describe", "cli-patient"]);
    assert!(ok, "{err}");
    let description: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(description["status"], "canceled");
    assert_eq!(description["cancel_reason"], "rain");
    let (ok, out, _) = wf(&db, &["history", "cli-patient"]);
    assert!(ok);
    assert!(out.contains("cancel requested (reason: \"rain\")"), "{out}");
    assert!(out.contains("activity `tidy` completed"), "{out}");
    engine.shutdown().await;
}

#[test]
fn wf_reports_unknown_ids_bad_statuses_and_commands_that_need_workflow_code() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workflows.db");
    let (ok, _, err) = wf(&db, &["list"]);
    assert!(!ok && err.contains("no workflow database at"), "{err}");
    assert!(!db.exists(), "a read does not create a database");
    drop(SqliteStore::open(&db).unwrap());
    let (ok, _, err) = wf(&db, &["describe", "nobody"]);
    assert!(!ok);
    assert!(err.contains("no workflow with id `nobody`"), "{err}");
    let (ok, _, err) = wf(&db, &["cancel", "nobody"]);
    assert!(!ok && err.contains("nobody"), "{err}");
    let (ok, _, err) = wf(&db, &["list", "--status", "sleepy"]);
    assert!(!ok && err.contains("sleepy"), "{err}");
    let (ok, _, err) = wf(&db, &["start", "patient", "p1"]);
    assert!(!ok && err.contains("needs your workflow code"), "{err}");
    let (ok, out, _) = wf(&db, &["list"]);
    assert!(ok && out.contains("no workflows"), "{out}");

    let not_a_db = dir.path().join("notes.txt");
    std::fs::write(&not_a_db, "x".repeat(5000)).unwrap();
    let (ok, _, err) = wf(&not_a_db, &["list"]);
    assert!(!ok && err.contains("not a workflow database"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&not_a_db).unwrap(),
        "x".repeat(5000)
    );
}

fn command_line(
    db: &std::path::Path,
    command: workflow_core::cli::Command,
) -> workflow_core::cli::Cli {
    workflow_core::cli::Cli {
        db: db.to_string_lossy().into_owned(),
        json: false,
        command,
    }
}

#[tokio::test]
async fn start_and_graph_from_the_users_binary_check_names_and_inputs_and_store_nothing_bad() {
    use workflow_core::cli::{execute, Command as Wf, GraphFormat};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workflows.db");
    let builder = || Engine::builder().register(patient).activity(tidy);
    let start = |workflow: &str, input: &str| Wf::Start {
        workflow: workflow.to_string(),
        id: "p1".to_string(),
        input: input.to_string(),
        reuse_id: None,
        execution_timeout: None,
    };

    let err = execute(command_line(&db, start("patient", "42")), Some(builder()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("input of workflow `patient`"), "{err}");
    let err = execute(
        command_line(&db, start("patient", "{oops")),
        Some(builder()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("--input is not JSON"), "{err}");
    let err = execute(
        command_line(&db, start("impatient", "\"x\"")),
        Some(builder()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("registered: patient"), "{err}");
    let store = SqliteStore::open(&db).unwrap();
    assert!(workflow_core::Store::list_workflows(&store, None)
        .await
        .unwrap()
        .is_empty());

    let out = execute(
        command_line(&db, start("patient", "\"the shed\"")),
        Some(builder()),
    )
    .await
    .unwrap();
    assert!(out.contains("started `p1`"), "{out}");
    let record = workflow_core::Store::load_workflow(&store, "p1")
        .await
        .unwrap();
    assert_eq!(record.version, 0, "started, waiting for a worker");

    // R5.3: `--execution-timeout` is parsed, checked, stored with the workflow and described.
    let parsed = <workflow_core::cli::Cli as clap::Parser>::try_parse_from([
        "wf",
        "start",
        "patient",
        "p2",
        "--execution-timeout",
        "30m",
    ])
    .unwrap();
    assert!(
        matches!(parsed.command, Wf::Start { execution_timeout: Some(d), .. }
            if d == Duration::from_secs(1800)),
        "{parsed:?}"
    );
    let timed = |after: Duration| Wf::Start {
        workflow: "patient".to_string(),
        id: "p2".to_string(),
        input: "\"the attic\"".to_string(),
        reuse_id: None,
        execution_timeout: Some(after),
    };
    let err = execute(command_line(&db, timed(Duration::ZERO)), Some(builder()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid execution timeout of workflow `patient`: 0ns is too short"),
        "{err}"
    );
    let out = execute(
        command_line(&db, timed(Duration::from_secs(1800))),
        Some(builder()),
    )
    .await
    .unwrap();
    assert!(out.contains("(execution timeout 30m)"), "{out}");
    let describe = Wf::Describe {
        id: "p2".to_string(),
    };
    let out = execute(command_line(&db, describe), Some(builder()))
        .await
        .unwrap();
    assert!(
        out.lines()
            .any(|l| l.starts_with("deadline  ") && l.ends_with("(execution timeout 30m)")),
        "{out}"
    );

    let graph = Wf::Graph {
        workflow: "patient".to_string(),
        format: GraphFormat::Mermaid,
    };
    let out = execute(command_line(&db, graph), Some(builder()))
        .await
        .unwrap();
    assert!(out.contains("stateDiagram"), "{out}");
    assert!(
        out.contains("Sleep --> OnCancelTidy: on cancel"),
        "the cancel branch is drawn: {out}"
    );
}

/// No character a terminal acts on (C0 and C1 controls, DEL, bidi overrides) reaches it raw.
fn assert_inert(out: &str) {
    let active = out
        .chars()
        .find(|&c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c));
    assert_eq!(active, None, "{out:?}");
}

/// Ids, reasons and log lines come from whoever wrote to the database: `wf` shows their
/// control characters as escapes (an id cannot clear the screen or forge a table row), and
/// `--json` keeps them exact for scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wf_shows_control_characters_from_the_database_escaped_and_json_keeps_them_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("workflows.db");
    let engine = Engine::builder()
        .register(chatty)
        .store(SqliteStore::open(&db).unwrap())
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let id = "evil\u{1b}[2J\nforged  chatty  completed";
    let line = "title \u{1b}]0;pwned\u{7} and \u{202e}txt.exe";
    engine
        .client()
        .start(chatty, id, line.to_string())
        .await
        .unwrap();
    // A guard against hanging, not a timing assertion.
    let logged = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let history = engine.client().history(id).await.unwrap();
            if history
                .iter()
                .any(|e| matches!(&e.kind, workflow_core::EventKind::Log { .. }))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(logged.is_ok(), "the workflow logged its line");
    let shown_id = r"evil\x1b[2J\nforged  chatty  completed";

    let (ok, out, err) = wf(&db, &["list"]);
    assert!(ok, "{err}");
    assert_inert(&out);
    assert_eq!(out.lines().count(), 2, "a header and one row: {out}");
    assert!(out.lines().nth(1).unwrap().starts_with(shown_id), "{out}");
    let (ok, out, err) = wf(&db, &["--json", "list"]);
    assert!(ok, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["id"], id);

    let (ok, out, err) = wf(&db, &["history", id]);
    assert!(ok, "{err}");
    assert_inert(&out);
    assert!(
        out.contains(r"log: title \x1b]0;pwned\x07 and \u{202e}txt.exe"),
        "{out}"
    );
    let (ok, out, err) = wf(&db, &["--json", "history", id]);
    assert!(ok, "{err}");
    assert!(out.contains(&serde_json::to_string(line).unwrap()), "{out}");

    let (ok, out, err) = wf(&db, &["describe", id]);
    assert!(ok, "{err}");
    assert_inert(&out);
    assert_eq!(out.lines().next(), Some(&*format!("workflow  {shown_id}")));
    let (ok, out, err) = wf(&db, &["--json", "describe", id]);
    assert!(ok, "{err}");
    let description: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(description["id"], id);

    let (ok, out, err) = wf(&db, &["cancel", id, "--reason", "done \u{1b}[31mred"]);
    assert!(ok, "{err}");
    assert_inert(&out);
    assert!(
        out.contains(shown_id) && out.contains(r"(done \x1b[31mred)"),
        "{out}"
    );

    let (ok, _, err) = wf(&db, &["describe", "nobody\u{1b}[2J\u{9b}1m"]);
    assert!(!ok);
    assert_inert(&err);
    assert!(err.contains(r"nobody\x1b[2J\u{9b}1m"), "{err}");
    engine.shutdown().await;
}
