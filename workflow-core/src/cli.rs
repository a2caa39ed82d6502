//! The `wf` command line, over a SQLite database file or a PostgreSQL database.
//!
//! Two ways in:
//!
//! - [`run_store_only`] is the standalone `wf` binary: `list`, `describe`, `history`,
//!   `cancel` and `terminate` need nothing but the database (they use a
//!   [`Client::connect`](crate::Client::connect) client), so they work from any terminal
//!   while workers run the workflows in other processes. A cancel written here wakes the
//!   worker holding the workflow through the store's change hint.
//! - [`run`] adds the commands that need your workflow code — `worker`, `start` and
//!   `graph` — from your own binary:
//!
//! ```no_run
//! # use workflow_core::prelude::*;
//! # #[workflow] async fn checkout(ctx: WorkflowContext, n: u32) -> Result<u32, WorkflowError> { Ok(n) }
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     workflow_core::cli::run(Engine::builder().register(checkout)).await
//! }
//! ```
//!
//! Every command takes `--db PATH_OR_URL` (or `WF_DB`; default `workflows.db`): a SQLite
//! file, or a `postgres://` URL. `--json` prints output a script can read, every string as
//! stored; tables, descriptions, messages and errors show the control characters of stored
//! text (ids, reasons, log lines, faults) as escapes such as `\x1b`, so that the text cannot
//! act on the terminal.

use crate::client::{Client, Description, WorkflowStatus};
use crate::engine::{prepare_start, terminate_in_store, Engine, EngineBuilder, StartAt};
use crate::error::StoreError;
use crate::history::HistoryEvent;
use crate::options::IdReusePolicy;
use crate::store::{is_postgres_url, Purge};
use crate::terminal::{printable, printable_json};
use clap::{Parser, Subcommand, ValueEnum};
use std::fmt::Write as _;
use std::process::ExitCode;

/// The command line: global options and one command.
#[derive(Debug, Parser)]
#[command(
    name = "wf",
    about = "Inspect, start, cancel and run durable workflows stored in SQLite or PostgreSQL",
    version
)]
pub struct Cli {
    /// The workflow database: a SQLite file path, or a postgres://user@host:port/db URL.
    #[arg(long, env = "WF_DB", default_value = "workflows.db", global = true)]
    pub db: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// One `wf` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List workflows: id, type, status, current state, steps, last change.
    List {
        /// Only workflows with this status (running, completed, canceled, failed,
        /// terminated).
        #[arg(long, value_parser = parse_status)]
        status: Option<WorkflowStatus>,
    },
    /// Show one workflow: status, current state, what it waits for, activity attempts.
    Describe {
        /// The workflow id.
        id: String,
    },
    /// Show the history of one workflow.
    History {
        /// The workflow id.
        id: String,
    },
    /// Request cancellation of a workflow; its cancellation handlers run in the worker.
    Cancel {
        /// The workflow id.
        id: String,
        /// Why, recorded on the workflow.
        #[arg(long, default_value = "cancelled with wf")]
        reason: String,
    },
    /// Close a workflow as Terminated without running any more of its code.
    Terminate {
        /// The workflow id.
        id: String,
        /// Why, recorded on the workflow.
        #[arg(long, default_value = "terminated with wf")]
        reason: String,
    },
    /// Run the registered workflows and activities until Ctrl-C or SIGTERM (needs your
    /// binary). Any number of workers may run on one database.
    Worker {
        /// This worker's id on its leases (default: host, pid and a random suffix). Give a
        /// restarted worker the id of the one it replaces to take its workflows over at
        /// once; never give two live workers the same id.
        #[arg(long, env = "WF_WORKER_ID")]
        worker_id: Option<String>,
        /// How long a lease lasts unless renewed, in milliseconds: the longest a dead
        /// worker's workflows wait for another worker.
        #[arg(long, env = "WF_LEASE_MS")]
        lease_ms: Option<u64>,
    },
    /// Start a workflow; a worker on the same database runs it (needs your binary).
    Start {
        /// The registered workflow name.
        workflow: String,
        /// The new workflow's id.
        id: String,
        /// Its input, as JSON.
        #[arg(long, default_value = "null")]
        input: String,
        /// When a closed workflow has the id: `closed` deletes it (with its history) to make
        /// way, `not-completed` only if it did not complete. A running one is never replaced.
        #[arg(long, value_enum)]
        reuse_id: Option<ReuseId>,
        /// How long it may run, counted from now, before it is cancelled (its cleanup runs):
        /// a number and a unit, e.g. 30m, 12h, 90s. None by default.
        #[arg(long, value_parser = parse_age)]
        execution_timeout: Option<std::time::Duration>,
    },
    /// Delete closed workflows, with their history, that closed longer ago than --older-than.
    /// Running workflows are never deleted.
    Purge {
        /// How long ago they closed, at least: a number and a unit, e.g. 30d, 12h, 45m, 90s.
        #[arg(long, value_parser = parse_age)]
        older_than: std::time::Duration,
        /// Only those closed with this status (completed, canceled, failed, terminated).
        #[arg(long, value_parser = parse_status)]
        status: Option<WorkflowStatus>,
        /// Only count them; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a workflow's compiled state machine, cancellation branches included (needs
    /// your binary).
    Graph {
        /// The registered workflow name.
        workflow: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
}

/// How `wf graph` prints a state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// A Mermaid `stateDiagram-v2`.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

/// Which closed workflow `wf start --reuse-id` may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReuseId {
    /// Any closed one ([`IdReusePolicy::AllowIfClosed`]).
    Closed,
    /// One that failed, was cancelled or terminated ([`IdReusePolicy::AllowIfNotCompleted`]).
    NotCompleted,
}

impl From<ReuseId> for IdReusePolicy {
    fn from(reuse: ReuseId) -> Self {
        match reuse {
            ReuseId::Closed => IdReusePolicy::AllowIfClosed,
            ReuseId::NotCompleted => IdReusePolicy::AllowIfNotCompleted,
        }
    }
}

fn parse_status(s: &str) -> Result<WorkflowStatus, String> {
    s.parse()
}

/// A duration written as a number and a unit: `30d`, `12h`, `45m`, `90s`, `250ms`.
fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let usage = || {
        format!("`{s}` is not a duration; write a number and a unit: 30d, 12h, 45m, 90s or 250ms")
    };
    let n: u64 = number.parse().map_err(|_| usage())?;
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(usage()),
    };
    n.checked_mul(ms_per_unit)
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is too long a duration"))
}

/// What went wrong with a command; printed as `wf: <message>` with exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine or client refused.
    #[error(transparent)]
    Client(#[from] crate::ClientError),
    /// Anything else, with a message that says what to do.
    #[error("{0}")]
    Usage(String),
}

/// The standalone `wf` binary: parses the process arguments and runs a command that needs
/// only the database. Returns the process exit code.
pub async fn run_store_only() -> ExitCode {
    finish(execute(Cli::parse(), None).await)
}

/// `wf` inside your own binary: parses the process arguments and runs any command,
/// `worker`, `start` and `graph` with the workflows and activities registered on `builder`
/// (its store is replaced by the `--db` file). Returns the process exit code.
pub async fn run(builder: EngineBuilder) -> ExitCode {
    finish(execute(Cli::parse(), Some(builder)).await)
}

fn finish(result: Result<String, CliError>) -> ExitCode {
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wf: {}", printable(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command and returns what it prints. `builder` carries the user's
/// workflows; without it, `worker`, `start` and `graph` are refused with a hint.
pub async fn execute(cli: Cli, builder: Option<EngineBuilder>) -> Result<String, CliError> {
    let needs_code = |what: &str| {
        CliError::Usage(format!(
            "`wf {what}` needs your workflow code: call `workflow_core::cli::run(Engine::builder()\
             .register(..))` from your own binary and run that (see examples/worker.rs)"
        ))
    };
    match cli.command {
        Command::Graph { workflow, format } => {
            let builder = builder.ok_or_else(|| needs_code("graph"))?;
            let registered = builder.registered();
            let found = registered.get(workflow.as_str()).ok_or_else(|| {
                CliError::Usage(unknown_workflow(&workflow, registered.keys().copied()))
            })?;
            let graph = found.graph();
            return Ok(match format {
                GraphFormat::Mermaid => graph.to_mermaid(),
                GraphFormat::Dot => graph.to_dot(),
            });
        }
        Command::Worker {
            worker_id,
            lease_ms,
        } => {
            let builder = builder.ok_or_else(|| needs_code("worker"))?;
            let mut builder = builder.location(cli.db.clone());
            if let Some(id) = worker_id {
                builder = builder.worker_id(id);
            }
            if let Some(ms) = lease_ms {
                builder = builder.lease_duration(std::time::Duration::from_millis(ms));
            }
            return worker(builder, &cli.db).await;
        }
        _ => {}
    }
    if !matches!(cli.command, Command::Start { .. })
        && !is_postgres_url(&cli.db)
        && !std::path::Path::new(&cli.db).exists()
    {
        return Err(CliError::Usage(format!(
            "there is no workflow database at `{}`; pass the worker's file or postgres:// URL \
             with --db (or set WF_DB)",
            cli.db
        )));
    }
    let client = Client::connect(&cli.db).await?;
    let store = client.store();
    match cli.command {
        Command::List { status } => {
            let rows = client.list(status).await?;
            if cli.json {
                return to_json(&rows);
            }
            Ok(list_table(&rows))
        }
        Command::Describe { id } => {
            let description = client.describe(&id).await?;
            if cli.json {
                return to_json(&description);
            }
            Ok(printable_description(&description)?.to_string())
        }
        Command::History { id } => {
            let history = client.history(&id).await?;
            if cli.json {
                return to_json(&history);
            }
            Ok(history_table(&history))
        }
        Command::Cancel { id, reason } => {
            let first = store.request_cancel(&id, &reason).await?;
            // A stuck workflow takes no step, so the cancel waits with it.
            let stuck = store.load_workflow(&id).await.ok().and_then(|r| r.stuck);
            if cli.json {
                return to_json(&serde_json::json!({
                    "id": id,
                    "first_request": first,
                    "stuck": stuck.as_ref().map(ToString::to_string),
                }));
            }
            let (id, reason) = (printable(&id), printable(&reason));
            let mut out = if first {
                format!("cancel requested for `{id}` ({reason})")
            } else {
                format!("cancel was already requested for `{id}`; nothing changed")
            };
            match stuck {
                Some(fault) => {
                    let _ = writeln!(
                        out,
                        "; but the workflow is stuck, so the cancel is not delivered until its \
                         fault is mended (or `wf terminate {id}` closes it now): {}",
                        printable(&fault.to_string())
                    );
                }
                None if first => out.push_str("; the worker holding it delivers it\n"),
                None => out.push('\n'),
            }
            Ok(out)
        }
        Command::Terminate { id, reason } => {
            let at_ms = crate::Clock::default().now_ms();
            let touched = terminate_in_store(&*store, &id, &reason, at_ms).await?;
            if cli.json {
                return to_json(&serde_json::json!({
                    "id": id,
                    "terminated": touched.closed,
                    "notified": touched.to_step,
                }));
            }
            let mut out = format!("`{}` terminated ({})\n", printable(&id), printable(&reason));
            for child in touched.closed.iter().skip(1) {
                let child = printable(child);
                let _ = writeln!(out, "`{child}` terminated by its parent close policy");
            }
            for other in &touched.to_step {
                let other = printable(other);
                let _ = writeln!(out, "`{other}` told; the worker holding it steps it");
            }
            Ok(out)
        }
        Command::Purge {
            older_than,
            status,
            dry_run,
        } => purge(&client, older_than, status, dry_run, cli.json).await,
        Command::Start {
            workflow,
            id,
            input,
            reuse_id,
            execution_timeout,
        } => {
            let builder = builder.ok_or_else(|| needs_code("start"))?;
            let input: serde_json::Value = serde_json::from_str(&input).map_err(|e| {
                CliError::Usage(format!(
                    "--input is not JSON ({e}); pass the workflow's input as JSON, e.g. \
                     --input '{{\"order\": 7}}' or --input '\"text\"'"
                ))
            })?;
            let registered = builder.registered();
            if !registered.contains_key(workflow.as_str()) {
                return Err(CliError::Usage(unknown_workflow(
                    &workflow,
                    registered.keys().copied(),
                )));
            }
            let start = StartAt {
                execution_timeout,
                ..StartAt::at(crate::Clock::default().now_ms())
            };
            let (new, _, instance) = prepare_start(registered, &workflow, &id, input, start)?;
            let deadline = instance.execution_timeout().copied();
            let state = new.state_name.clone();
            let mut replaced = false;
            match store.create_workflow(new.clone()).await {
                Err(StoreError::AlreadyExists(_)) if reuse_id.is_some() => {
                    let policy = IdReusePolicy::from(reuse_id.unwrap_or(ReuseId::Closed));
                    let purge = Purge::to_reuse(&id, policy);
                    if let Some(purge) = purge {
                        replaced = !store.purge_closed(&purge).await?.is_empty();
                    }
                    if !replaced {
                        return Err(CliError::Usage(format!(
                            "a workflow with id `{id}` exists and --reuse-id does not let it \
                             be replaced (it is running{}); pick another id",
                            if policy == IdReusePolicy::AllowIfNotCompleted {
                                ", or it completed"
                            } else {
                                ""
                            }
                        )));
                    }
                    store.create_workflow(new).await?;
                }
                other => other?,
            }
            if cli.json {
                return to_json(&serde_json::json!({
                    "id": id,
                    "workflow": workflow,
                    "execution_timeout": deadline,
                }));
            }
            let deadline = deadline.map_or_else(String::new, |t| {
                format!(
                    ", cancelled if still running at {} (execution timeout {})",
                    crate::time::format_date_ms(t.deadline_ms),
                    crate::time::format_duration_ms(t.after_ms)
                )
            });
            Ok(format!(
                "started `{}` ({}, state {}){}{deadline}; a worker on this database runs it\n",
                printable(&id),
                printable(&workflow),
                printable(&state),
                if replaced {
                    ", replacing the closed workflow that had the id"
                } else {
                    ""
                }
            ))
        }
        Command::Graph { .. } | Command::Worker { .. } => unreachable!("handled above"),
    }
}

/// `wf purge`: deletes (or counts, with `dry_run`) the closed workflows that closed more
/// than `older_than` ago, a batch at a time.
async fn purge(
    client: &Client,
    older_than: std::time::Duration,
    status: Option<WorkflowStatus>,
    dry_run: bool,
    json: bool,
) -> Result<String, CliError> {
    if status == Some(WorkflowStatus::Running) {
        return Err(CliError::Usage(
            "running workflows are never purged; terminate them first (`wf terminate ID`)".into(),
        ));
    }
    let older_ms = u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX);
    let cutoff = crate::Clock::default().now_ms().saturating_sub(older_ms);
    let mut request = Purge::closed_before(cutoff);
    request.statuses = status.into_iter().collect();
    request.dry_run = dry_run;
    if dry_run {
        request.limit = usize::MAX;
    }
    let mut ids = Vec::new();
    loop {
        let batch = client.purge(&request).await?;
        let full = batch.len() == request.limit;
        ids.extend(batch);
        if dry_run || !full {
            break;
        }
    }
    let before = crate::time::format_date_ms(cutoff);
    if json {
        return to_json(&serde_json::json!({
            "closed_before": before,
            "dry_run": dry_run,
            "workflows": ids,
        }));
    }
    let which = match status {
        Some(s) => format!("{s} workflow(s)"),
        None => "closed workflow(s)".to_string(),
    };
    Ok(match (ids.len(), dry_run) {
        (0, _) => format!("no {which} closed before {before}; nothing was deleted\n"),
        (n, true) => format!(
            "would purge {n} {which} closed before {before} (dry run: nothing was deleted)\n"
        ),
        (n, false) => format!("purged {n} {which} closed before {before}, with their history\n"),
    })
}

async fn worker(builder: EngineBuilder, db: &str) -> Result<String, CliError> {
    let mut names: Vec<_> = builder.registered().keys().copied().collect();
    names.sort_unstable();
    let engine: Engine = builder.build().await?;
    println!(
        "worker {} on {}: workflows {}; holding {} running workflow(s). Ctrl-C or SIGTERM \
         stops it and hands its workflows over.",
        printable(engine.worker_id()),
        printable(&redact(db)),
        printable(&names.join(", ")),
        engine.held_workflows()
    );
    let signal = stop_signal().await?;
    let held = engine.held_workflows();
    engine.shutdown().await;
    Ok(format!(
        "{signal}: worker {} stopped and released {held} workflow(s) for other workers\n",
        printable(engine.worker_id())
    ))
}

/// Waits for Ctrl-C or (on Unix) SIGTERM, what systemd and Kubernetes send; says which.
async fn stop_signal() -> Result<&'static str, CliError> {
    let failed = |e: std::io::Error| CliError::Usage(format!("could not wait for a signal: {e}"));
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(failed)?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "interrupted").map_err(failed),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .map(|()| "interrupted")
            .map_err(failed)
    }
}

/// A database location fit to print: a URL's password is replaced by `***`.
fn redact(location: &str) -> String {
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return location.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => location.to_string(),
    }
}

fn unknown_workflow<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    let mut known: Vec<_> = known.collect();
    known.sort_unstable();
    format!(
        "no workflow named `{name}` is registered in this binary (registered: {})",
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| CliError::Usage(format!("could not encode the output as JSON: {e}")))
}

/// `description` with every text in it [`printable`], so that its multi-line form keeps one
/// field per line whatever the stored strings hold.
fn printable_description(description: &Description) -> Result<Description, CliError> {
    let unprintable = |e: serde_json::Error| {
        CliError::Usage(format!(
            "could not prepare the description for the terminal ({e}); use --json"
        ))
    };
    let mut value = serde_json::to_value(description).map_err(unprintable)?;
    printable_json(&mut value);
    let mut shown: Description = serde_json::from_value(value).map_err(unprintable)?;
    // A `null` result would read back as no result at all.
    shown.result = description.result.clone().map(|mut result| {
        printable_json(&mut result);
        result
    });
    Ok(shown)
}

/// Lays out rows as aligned columns under a header; every cell is made [`printable`], so
/// stored text can neither act on the terminal nor start a row of its own.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| printable(cell).into_owned())
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn list_table(rows: &[Description]) -> String {
    if rows.is_empty() {
        return "no workflows\n".to_string();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|d| {
            let note = match (&d.stuck, &d.cancel_reason, &d.error) {
                (Some(stuck), _, _) => format!("STUCK: {stuck}"),
                (None, _, Some(error)) => error.clone(),
                (None, Some(reason), None) => format!("cancel requested: {reason}"),
                (None, None, None) => d
                    .pending
                    .iter()
                    .map(|p| format!("waiting for {}", p.waiting_for))
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            let note = match d.handler_failures.as_slice() {
                [] => note,
                [one] if note.is_empty() => format!("CLEANUP FAILED: {one}"),
                [one] => format!("CLEANUP FAILED: {one}; {note}"),
                many => format!(
                    "CLEANUP FAILED ({} handlers): {}; {note}",
                    many.len(),
                    many[0]
                ),
            };
            vec![
                d.id.clone(),
                d.workflow_type.clone(),
                d.status.to_string(),
                d.state.clone(),
                d.version.to_string(),
                d.lease
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |l| l.owner.clone()),
                crate::time::format_ms(d.updated_at_ms),
                note,
            ]
        })
        .collect();
    table(
        &[
            "ID", "TYPE", "STATUS", "STATE", "STEPS", "WORKER", "UPDATED", "NOTE",
        ],
        &cells,
    )
}

fn history_table(history: &[HistoryEvent]) -> String {
    let start = history.first().map_or(0, |e| e.at_ms);
    let cells: Vec<Vec<String>> = history
        .iter()
        .map(|e| {
            let offset = e.at_ms.saturating_sub(start);
            vec![
                e.seq.to_string(),
                format!("+{}.{:03}s", offset / 1000, offset % 1000),
                e.kind.to_string(),
            ]
        })
        .collect();
    table(&["SEQ", "AT", "EVENT"], &cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::WorkflowFault;

    fn description(id: &str, message: &str) -> Description {
        Description {
            id: id.to_string(),
            workflow_type: "order".to_string(),
            status: WorkflowStatus::Completed,
            state: "End".to_string(),
            version: 3,
            cancel_reason: Some(message.to_string()),
            pending: Vec::new(),
            tasks: Vec::new(),
            stuck: Some(WorkflowFault::Engine {
                message: message.to_string(),
            }),
            result: Some(serde_json::Value::Null),
            error: Some(message.to_string()),
            created_at_ms: 1,
            updated_at_ms: 2,
            lease: None,
            handler_failures: vec![message.to_string()],
            execution_timeout: None,
        }
    }

    #[test]
    fn a_stored_newline_cannot_start_a_table_row_of_its_own() {
        let rows = [description("a\nb  order  completed", "x\r\ny")];
        let out = list_table(&rows);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(
            out.lines()
                .nth(1)
                .unwrap()
                .starts_with(r"a\nb  order  completed"),
            "{out}"
        );
        assert!(out.contains(r"x\r\ny") && !out.contains('\r'), "{out}");
    }

    #[test]
    fn a_description_shows_every_stored_text_escaped_and_keeps_a_null_result() {
        let clean = description("plain", "fine").to_string();
        let raw = description("a\u{1b}[2J\nb", "bad\n\u{9b}31m").to_string();
        assert!(
            raw.lines().count() > clean.lines().count(),
            "stored newlines would forge lines"
        );
        let shown = printable_description(&description("a\u{1b}[2J\nb", "bad\n\u{9b}31m"))
            .unwrap()
            .to_string();
        assert_eq!(shown.lines().count(), clean.lines().count(), "{shown}");
        assert!(shown.starts_with("workflow  a\\x1b[2J\\nb\n"), "{shown}");
        assert!(shown.contains(r"bad\n\u{9b}31m"), "{shown}");
        assert!(shown.contains("result    null\n"), "{shown}");
        assert!(!shown.chars().any(|c| c.is_control() && c != '\n'));
    }
}
