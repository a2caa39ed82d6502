//! Expansion snapshots: what `#[workflow]` and `#[activity]` generate for a few representative
//! inputs, pretty-printed with `prettyplease` and compared with the checked-in files
//! `tests/expand/<name>.expanded.rs` (in the style of pin-project and dtolnay's crates).
//!
//! They are documentation as much as tests: reading a snapshot shows the state enum, the
//! trampoline and the `Workflow` impl for one input, and a change to the macros shows up as a
//! reviewable diff of these files. The output is not compiled here, so the inputs may refer
//! to names that exist nowhere; `tests/control_flow.rs` and friends at the workspace root
//! check that the generated code compiles and runs.
//!
//! When the generated code changes on purpose, re-bless the files and review the diff:
//!
//! ```text
//! UPDATE_EXPANSIONS=1 cargo test -p workflow-macros snapshots
//! ```
//!
//! The files are exactly the printed output (no header) so that they can always be
//! regenerated; each case is described on its test below. They live in a subdirectory of
//! `tests/`, so cargo does not take them for integration tests.

use crate::args::Args;
use proc_macro2::TokenStream;
use std::path::PathBuf;

/// How many lines of each side to show after the first difference.
const CONTEXT_LINES: usize = 8;

fn parse_fn(src: &str) -> syn::ItemFn {
    syn::parse_str(src).unwrap_or_else(|e| panic!("the test input does not parse: {e}"))
}

fn parse_args(src: &str) -> Args {
    syn::parse_str(src).unwrap_or_else(|e| panic!("the test arguments do not parse: {e}"))
}

/// Pretty-prints an expansion, which must be a successful one: a snapshot of a
/// `compile_error!` would only hide that a representative input stopped compiling.
fn pretty(tokens: TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens.clone()).unwrap_or_else(|e| {
        panic!("the expansion is not a valid file: {e}\n\n{tokens}");
    });
    let printed = prettyplease::unparse(&file);
    assert!(
        !printed.contains("compile_error!"),
        "the expansion reports an error instead of generating code:\n\n{printed}"
    );
    printed
}

/// Compares `actual` with `tests/expand/<name>.expanded.rs`, or (re)writes that file when
/// `UPDATE_EXPANSIONS=1`.
fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("expand")
        .join(format!("{name}.expanded.rs"));
    let rebless = "UPDATE_EXPANSIONS=1 cargo test -p workflow-macros snapshots";
    if std::env::var("UPDATE_EXPANSIONS").is_ok_and(|v| v == "1") {
        let dir = path.parent().expect("the snapshot path has a parent");
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        std::fs::write(&path, actual)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let expected = match std::fs::read_to_string(&path) {
        // A checkout with `core.autocrlf` may have turned the line ends into CRLF.
        Ok(s) => s.replace("\r\n", "\n"),
        Err(e) => panic!(
            "cannot read the snapshot {}: {e}\nto create it, run: {rebless}",
            path.display()
        ),
    };
    if expected == actual {
        return;
    }
    let (exp, act): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let first = exp
        .iter()
        .zip(&act)
        .position(|(e, a)| e != a)
        .unwrap_or(exp.len().min(act.len()));
    let mut report = String::new();
    if first == exp.len() && first == act.len() {
        report.push_str("(the lines are the same; only the line ends at the end differ)\n");
    }
    for (sign, lines) in [("-", &exp), ("+", &act)] {
        let shown = lines.iter().skip(first).take(CONTEXT_LINES);
        let mut any = false;
        for (i, line) in shown.enumerate() {
            report.push_str(&format!("{sign}{:>5} | {line}\n", first + i + 1));
            any = true;
        }
        if !any {
            report.push_str(&format!("{sign}      | <end of file>\n"));
        }
    }
    panic!(
        "the expansion of `{name}` differs from {} from line {} on \
         (- snapshot, + generated now):\n\n{report}\n\
         if the change is intended, re-bless the snapshots and review their diff:\n    {rebless}",
        path.display(),
        first + 1,
    );
}

fn check_workflow(name: &str, args: Args, src: &str) {
    check(name, &pretty(crate::workflow::expand(args, parse_fn(src))));
}

fn check_activity(name: &str, args: Args, src: &str) {
    check(name, &pretty(crate::activity::expand(args, parse_fn(src))));
}

/// `transfer`, the example of the `workflow` module docs: a straight sequence of an
/// activity, a sleep and an activity. Shows the basic shape: the handle struct, one variant
/// per await plus `Start`/`Finished`, liveness (`t` is dead after the first await, `hold` is
/// kept across the sleep with the type inferred from the activity), and the `Workflow` impl.
#[test]
fn transfer() {
    check_workflow(
        "transfer",
        Args::default(),
        r#"
        async fn transfer(ctx: WorkflowContext, t: Transfer) -> Result<Receipt, WorkflowError> {
            let hold = ctx.activity(reserve, t.amount).await?;
            ctx.sleep(MINUTE).await?;
            let r = ctx.activity(capture, hold).await?;
            Ok(r)
        }
        "#,
    );
}

/// Branches with awaits: an `if`/`else if`/`else` whose value feeds a typed `let`, and a
/// `match` whose arms await (one arm awaits twice, one awaits a pattern binding, one returns
/// early). Shows how the code after a branch is rebuilt in the arms that resume inside it,
/// and which bindings (`order`, `quote`, `discount`) are stored across which awaits.
#[test]
fn branches() {
    check_workflow(
        "branches",
        Args::default(),
        r#"
        pub async fn ship(ctx: WorkflowContext, order: Order) -> Result<Shipment, WorkflowError> {
            let quote = ctx.activity(price, order.clone()).await?;
            let discount: u64 = if quote.total > 100 {
                ctx.activity(loyalty_discount, order.customer_id).await?
            } else if order.coupon.is_some() {
                5
            } else {
                0
            };
            let label = match order.speed {
                Speed::Express => {
                    ctx.sleep(Duration::from_secs(60)).await?;
                    ctx.activity(book_express, order.id).await?
                }
                Speed::Standard { days } => ctx.activity(book_standard, days).await?,
                Speed::Pickup => return Ok(Shipment::pickup(quote.total - discount)),
            };
            Ok(Shipment { label, charged: quote.total - discount })
        }
        "#,
    );
}

/// Loops with awaits: a `for` over a `Vec` with a declared type (its remaining items are
/// kept in the state as a reversed `Vec`), with a `continue`; then a `while` whose condition
/// awaits and whose body sleeps and may `return`. Shows the desugaring into `loop` and the
/// copy of the loop rebuilt after each await inside it.
#[test]
fn loops() {
    check_workflow(
        "loops",
        Args::default(),
        r#"
        async fn settle(ctx: WorkflowContext, batch: Batch) -> Result<u64, WorkflowError> {
            let id: BatchId = batch.id;
            let invoices: Vec<Invoice> = batch.invoices;
            let mut paid: u64 = 0;
            for invoice in invoices {
                if invoice.amount == 0 {
                    continue;
                }
                paid += ctx.activity(charge, invoice).await?;
            }
            let mut attempts: u32 = 0;
            while !ctx.activity(confirm, id).await? {
                attempts += 1;
                if attempts > 3 {
                    return Err(WorkflowError::application("payment not confirmed"));
                }
                ctx.sleep(Duration::from_secs(10)).await?;
            }
            Ok(paid)
        }
        "#,
    );
}

/// `your_workflow` from the seeds' Go sample (`go_sample` in the workspace's `src/lib.rs`),
/// with `#[workflow(name = "YourWorkflow")]`, no input and a doc comment. Shows the
/// registered name, the doc comment on the handle, and how `on_cancel!` becomes a region
/// whose handler (with its own await on the disconnected `cleanup` context) gets states of
/// its own.
#[test]
fn go_sample_your_workflow() {
    check_workflow(
        "go_sample_your_workflow",
        parse_args(r#"name = "YourWorkflow""#),
        r#"
        /// `YourWorkflow` from the Go sample.
        pub async fn your_workflow(ctx: WorkflowContext) -> Result<(), WorkflowError> {
            ctx.log("cancel workflow started");
            on_cancel!(|cleanup| {
                // Runs only if the workflow's scope ends cancelled, on a disconnected context:
                // the cleanup activity is not cancelled with the workflow.
                if let Err(e) = cleanup.activity(cleanup_activity, ()).await {
                    cleanup.log(format!("CleanupActivity failed: {e}"));
                }
            });
            let result = ctx
                .activity(activity_to_be_canceled, ())
                .start_to_close_timeout(Duration::from_secs(30 * 60))
                .heartbeat_timeout(Duration::from_secs(5))
                .cancellation(ActivityCancellationType::WaitCancellationCompleted)
                .await;
            ctx.log(format!("ActivityToBeCanceled returns {result:?}"));
            // Expected to fail at once with a cancellation error, without running.
            let skipped = ctx.activity(activity_to_be_skipped, ()).await;
            ctx.log(format!("Error from ActivityToBeSkipped: {skipped:?}"));
            ctx.log("Workflow Execution complete.");
            Ok(())
        }
        "#,
    );
}

/// `#[activity]` with one input, the example of the `activity` module docs: the unit struct
/// named like the function, `NAME` from the function's name, `Input`/`Output` from the
/// signature, and the body as an inner `async fn` called with the input.
#[test]
fn activity_with_input() {
    check_activity(
        "activity_with_input",
        Args::default(),
        r#"
        /// Charges the order's card.
        pub async fn charge(ctx: ActivityContext, order: Order) -> Result<Receipt, ActivityError> {
            ctx.heartbeat(0)?;
            Ok(Receipt::new(order.id))
        }
        "#,
    );
}

/// `#[activity(name = "CleanupActivity")]` with no input (from the Go sample): `NAME` is the
/// given name, `Input` is `()`, and the inner function is called without it.
#[test]
fn activity_named_no_input() {
    check_activity(
        "activity_named_no_input",
        parse_args(r#"name = "CleanupActivity""#),
        r#"
        /// The cleanup the cancellation handler runs.
        pub async fn cleanup_activity(ctx: ActivityContext) -> Result<(), ActivityError> {
            journal::write(&ctx.info().workflow_id, "CleanupActivity ran");
            Ok(())
        }
        "#,
    );
}
