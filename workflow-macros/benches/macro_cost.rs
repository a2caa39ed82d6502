//! Macro cost: what `#[workflow]` costs at compile time, for a workflow of 50 sequential
//! awaits, compared with `#[derive(Serialize, Deserialize)]` on a struct of the same 50 fields
//! (one per await result).
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p workflow-macros --bench macro_cost
//! ```
//!
//! Environment: `MACRO_COST_REPS=<n>` sets the number of timed compiles per crate and command
//! (5 by default); `MACRO_COST_UNSTABLE=0` skips parts 3 and 4, which need a second set of
//! dependencies (see below).
//!
//! What it measures, and how:
//!
//! 1. In-process expansion. A proc-macro crate exports nothing but its macros, so this bench
//!    compiles the macro's own modules into itself (`#[path = "../src/.."]`) and times
//!    `workflow::expand` on the generated 50-await workflow (already parsed), and the `syn`
//!    parse before it. This is the release build of the macro code working on `proc_macro2`'s
//!    fallback tokens, outside rustc: it shows the macro's own algorithmic cost. Serde's
//!    derive has no in-process entry point, so there is no in-process number for it.
//! 2. Crate compile time, the fair comparison. The bench writes a small cargo workspace under
//!    `<target dir>/macro-bench/crates` with four library crates: (a) `wf_macro`, the workflow
//!    under `#[workflow]`, depending on `workflow-core` (path dependency, without default
//!    features: no SQLite, no clap); (b) `serde_derive_struct`, a struct of the 50 fields
//!    under `#[derive(Serialize, Deserialize)]`; (c) `wf_plain`, the same `async fn` body
//!    without the macro, against a stand-in context whose `activity` is an `async fn`; (d)
//!    `empty`, the floor (rustc start-up and cargo). The repository's `Cargo.lock` is copied in
//!    so that dependency versions match. Dependencies are built once (the time is reported);
//!    then, `MACRO_COST_REPS` times, each crate is rebuilt in turn (`src/lib.rs` touched,
//!    `cargo check` then `cargo build`, dev profile, `CARGO_INCREMENTAL=0`) and the median wall
//!    time of each cargo command is reported. A run in which cargo waited for a lock or also
//!    rebuilt a dependency (`workflow-core` is a path dependency on the live sources) is
//!    thrown away and redone.
//! 3. Where rustc spends it: `cargo rustc -- -Z time-passes` on (a), (b) and (c), three runs
//!    each, medians of the macro expansion pass (for (a) it includes serde's derive on the
//!    generated state enum), type checking, borrow checking and the total.
//! 4. Code size: tokens and lines of the in-process expansion (pretty-printed with
//!    `prettyplease`), and the lines of each crate as expanded by rustc itself
//!    (`-Z unpretty=expanded`), the only way to see the size of serde's expansion here without
//!    installing `cargo-expand`.
//!
//! Parts 3 and 4 use unstable rustc flags, enabled on the stable compiler with
//! `RUSTC_BOOTSTRAP=1`. Build scripts (proc-macro2's among them) watch that variable, so these
//! runs use a target directory of their own (`macro-bench/target-unstable`) to keep the timed
//! builds of part 2 untouched; its dependencies are built once too.

// The macro's modules, compiled into this binary. `lib.rs` itself is not included: it uses
// `proc_macro`, which only works inside a proc-macro crate. The `activity` half of the
// shared modules is unused here.
#[allow(dead_code)]
#[path = "../src/args.rs"]
mod args;
#[allow(dead_code)]
#[path = "../src/signature.rs"]
mod signature;
#[allow(dead_code)]
#[path = "../src/workflow/mod.rs"]
mod workflow;

use proc_macro2::{TokenStream, TokenTree};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

/// Sequential awaits in the workflow, and fields in the struct.
const AWAITS: usize = 50;
/// Every `KEEP_EVERY`-th result is kept until the end (summed in the final `Ok`), so that the
/// state enum's variants hold a growing number of locals; the others are dead after the next
/// await.
const KEEP_EVERY: usize = 5;
/// Default number of timed compiles per crate and command.
const DEFAULT_REPS: usize = 5;
/// Runs of `-Z time-passes` per crate.
const TIME_PASSES_RUNS: usize = 3;
/// In-process timing: at least this many runs, and more while under `EXPAND_BUDGET`.
const EXPAND_MIN_RUNS: usize = 20;
const EXPAND_MAX_RUNS: usize = 500;
const EXPAND_BUDGET: Duration = Duration::from_secs(3);
/// A cargo run that waited for a lock or rebuilt a dependency is redone, at most this many
/// times in a row.
const RETRIES: usize = 3;

fn main() {
    let started = Instant::now();
    println!(
        "macro_cost: #[workflow] with {AWAITS} awaits vs #[derive(Serialize, Deserialize)] on a \
         struct of the same {AWAITS} fields\n"
    );
    let reps = match std::env::var("MACRO_COST_REPS") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("error: MACRO_COST_REPS must be a positive integer, not {v:?}");
                std::process::exit(2);
            }
        },
        Err(_) => DEFAULT_REPS,
    };
    let unstable = std::env::var("MACRO_COST_UNSTABLE").map_or(true, |v| v.trim() != "0");

    let in_process = in_process();
    if let Err(e) = &in_process {
        eprintln!("error: in-process expansion: {e}");
    }
    let compiled = compile_time(reps, unstable);
    if let Err(e) = &compiled {
        eprintln!("error: compile-time measurement: {e}");
    }

    print_report(in_process.as_ref().ok(), compiled.as_ref().ok(), reps);
    println!(
        "\ntotal bench run time: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if in_process.is_err() || compiled.is_err() {
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// The measured sources.

/// `v{k}` for every result kept until the end.
fn kept() -> impl Iterator<Item = usize> {
    (1..=AWAITS).filter(|k| k % KEEP_EVERY == 0)
}

/// The body shared by (a) and (c): 50 sequential activity calls, each taking the previous
/// result; every fifth result is summed at the end.
fn workflow_body() -> String {
    let mut s = String::from("    let v0: u64 = input;\n");
    for k in 1..=AWAITS {
        let _ = writeln!(
            s,
            "    let v{k}: u64 = ctx.activity(step, v{}).await?;",
            k - 1
        );
    }
    let sum: Vec<String> = kept().map(|k| format!("v{k}")).collect();
    let _ = writeln!(s, "    Ok({})", sum.join(" + "));
    s
}

/// The workflow function, without its attribute.
fn workflow_fn() -> String {
    format!(
        "pub async fn fifty(ctx: WorkflowContext, input: u64) -> Result<u64, WorkflowError> {{\n{}}}\n",
        workflow_body()
    )
}

const STEP_ACTIVITY: &str = "\
#[activity]
pub async fn step(_ctx: ActivityContext, x: u64) -> Result<u64, ActivityError> {
    Ok(x + 1)
}
";

/// (a): the workflow under `#[workflow]`.
fn crate_macro() -> String {
    format!(
        "use workflow_core::prelude::*;\n\n{STEP_ACTIVITY}\n#[workflow]\n{}",
        workflow_fn()
    )
}

/// (b): the struct of the same fields under serde's derive.
fn crate_derive() -> String {
    let mut s = String::from(
        "use serde::{Deserialize, Serialize};\n\n#[derive(Serialize, Deserialize)]\npub struct Fifty {\n",
    );
    for k in 1..=AWAITS {
        let _ = writeln!(s, "    pub v{k}: u64,");
    }
    s.push_str("}\n");
    s
}

/// (c): the same body as a plain `async fn`, against a stand-in context. The boxed future
/// makes rustc generate the coroutine's code, as a caller would.
fn crate_plain() -> String {
    format!(
        "use workflow_core::prelude::*;
use std::future::Future;
use std::pin::Pin;

{STEP_ACTIVITY}
/// Stands in for `WorkflowContext`, whose operations are only awaitable under the macro.
pub struct PlainContext;

impl PlainContext {{
    pub async fn activity(&self, _activity: step, input: u64) -> Result<u64, WorkflowError> {{
        Ok(input + 1)
    }}
}}

{}
pub fn boxed(ctx: PlainContext, input: u64) -> Pin<Box<dyn Future<Output = Result<u64, WorkflowError>>>> {{
    Box::pin(fifty(ctx, input))
}}
",
        workflow_fn().replace("ctx: WorkflowContext", "ctx: PlainContext")
    )
}

// ---------------------------------------------------------------------------------------
// 1. In-process expansion.

struct InProcess {
    parse: Stats,
    expand: Stats,
    input_lines: usize,
    tokens: usize,
    lines: usize,
    state_enum: Option<(String, usize, usize)>,
}

fn in_process() -> Result<InProcess, String> {
    let src = workflow_fn();
    let parse_once = || syn::parse_str::<syn::ItemFn>(&src).map_err(|e| e.to_string());
    let item = parse_once().map_err(|e| format!("the generated workflow does not parse: {e}"))?;

    // Check the output once: a `compile_error!` would make the timing meaningless.
    let out = workflow::expand(args::Args::default(), item.clone());
    let file: syn::File =
        syn::parse2(out.clone()).map_err(|e| format!("the expansion is not a valid file: {e}"))?;
    let printed = prettyplease::unparse(&file);
    if printed.contains("compile_error!") {
        return Err(format!(
            "the expansion reports an error instead of generating code:\n{printed}"
        ));
    }
    let state_enum = file.items.iter().find_map(|item| match item {
        syn::Item::Enum(e) if e.ident.to_string().ends_with("State") => Some((
            e.ident.to_string(),
            e.variants.len(),
            e.variants.iter().map(|v| v.fields.len()).sum(),
        )),
        _ => None,
    });

    let parse = time_runs(|| {
        std::hint::black_box(parse_once().ok());
    });
    let expand = time_runs_with_input(
        || item.clone(),
        |f| {
            std::hint::black_box(workflow::expand(args::Args::default(), f));
        },
    );
    Ok(InProcess {
        parse,
        expand,
        input_lines: src.lines().count(),
        tokens: count_tokens(out),
        lines: printed.lines().count(),
        state_enum,
    })
}

fn count_tokens(ts: TokenStream) -> usize {
    ts.into_iter()
        .map(|t| match t {
            TokenTree::Group(g) => 1 + count_tokens(g.stream()),
            _ => 1,
        })
        .sum()
}

fn time_runs(mut f: impl FnMut()) -> Stats {
    time_runs_with_input(|| (), |()| f())
}

/// Times `run` on fresh inputs from `make` (not timed): a few warm-up runs, then at least
/// `EXPAND_MIN_RUNS` and as many more as fit in `EXPAND_BUDGET`.
fn time_runs_with_input<I>(mut make: impl FnMut() -> I, mut run: impl FnMut(I)) -> Stats {
    for _ in 0..3 {
        run(make());
    }
    let mut samples = Vec::new();
    let budget = Instant::now();
    while samples.len() < EXPAND_MIN_RUNS
        || (samples.len() < EXPAND_MAX_RUNS && budget.elapsed() < EXPAND_BUDGET)
    {
        let input = make();
        let t = Instant::now();
        run(input);
        samples.push(t.elapsed());
    }
    Stats::of(samples)
}

#[derive(Clone)]
struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
    n: usize,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        samples.sort();
        let n = samples.len();
        let median = if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2
        };
        Stats {
            median,
            min: samples[0],
            max: samples[n - 1],
            n,
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2., 3. and 4.: compiling generated crates.

struct Crate {
    label: &'static str,
    name: &'static str,
    what: &'static str,
    source: String,
    workflow_core: bool,
    /// Whether `-Z time-passes` is run on it.
    passes: bool,
}

fn crates() -> Vec<Crate> {
    vec![
        Crate {
            label: "(a)",
            name: "wf_macro",
            what: "#[workflow], 50 awaits",
            source: crate_macro(),
            workflow_core: true,
            passes: true,
        },
        Crate {
            label: "(b)",
            name: "serde_derive_struct",
            what: "derive(Serialize, Deserialize), 50 fields",
            source: crate_derive(),
            workflow_core: false,
            passes: true,
        },
        Crate {
            label: "(c)",
            name: "wf_plain",
            what: "same async fn, no macro",
            source: crate_plain(),
            workflow_core: true,
            passes: true,
        },
        Crate {
            label: "(d)",
            name: "empty",
            what: "empty crate (floor)",
            source: "//! Nothing: rustc start-up and cargo.\n".to_string(),
            workflow_core: false,
            passes: false,
        },
    ]
}

/// The rustc passes reported from `-Z time-passes`: (column title, pass names in the output,
/// the first one found is used).
/// (Code generation is left out: with several codegen units most of it runs on other threads
/// and its pass timer does not say much.)
const PASSES: [(&str, &[&str]); 4] = [
    ("expansion", &["macro_expand_crate", "expand_crate"]),
    ("type check", &["type_check_crate"]),
    ("borrowck", &["MIR_borrow_checking"]),
    ("total", &["total"]),
];

struct CrateResult {
    check: Stats,
    build: Stats,
    /// Medians of the passes of `PASSES`, in order (`None`: not in the output).
    passes: Option<Result<Vec<Option<Duration>>, String>>,
    source_lines: usize,
    expanded_lines: Option<Result<usize, String>>,
}

struct Compiled {
    root: PathBuf,
    prep: Duration,
    prep_unstable: Option<Result<Duration, String>>,
    noop: Stats,
    results: Vec<(Crate, CrateResult)>,
    redone: usize,
}

struct Cargo {
    program: String,
    /// The generated workspace.
    root: PathBuf,
    target: PathBuf,
    /// Runs with `RUSTC_BOOTSTRAP=1`, for unstable flags.
    unstable: bool,
}

impl Cargo {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.program);
        c.args(args)
            .current_dir(&self.root)
            .env("CARGO_TARGET_DIR", &self.target)
            .env("CARGO_INCREMENTAL", "0")
            // Plain output that is easy to search.
            .env("CARGO_TERM_COLOR", "never")
            .env("CARGO_TERM_PROGRESS_WHEN", "never")
            .env("CARGO_TERM_VERBOSE", "false");
        if self.unstable {
            c.env("RUSTC_BOOTSTRAP", "1");
        } else {
            c.env_remove("RUSTC_BOOTSTRAP");
        }
        c
    }

    fn run(&self, args: &[&str]) -> Result<Output, String> {
        let out = self.command(args).output().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "cannot run `{}`: not found (put cargo on PATH or set CARGO)",
                    self.program
                )
            } else {
                format!("cannot run `{}`: {e}", self.program)
            }
        })?;
        if !out.status.success() {
            return Err(format!(
                "`cargo {}` in {} failed ({}):\n{}",
                args.join(" "),
                self.root.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(out)
    }

    /// Runs `args`, after touching `crate_`'s `src/lib.rs` if given, and checks that cargo
    /// compiled that crate (and only it). Retries a run in which cargo waited for a lock or
    /// compiled something else, which says nothing about the crate; counts those in `redone`.
    fn timed(
        &self,
        args: &[&str],
        crate_: Option<&str>,
        redone: &mut usize,
    ) -> Result<(Duration, Output), String> {
        for _ in 0..=RETRIES {
            if let Some(name) = crate_ {
                touch(&self.root.join(name).join("src").join("lib.rs"))?;
            }
            let t = Instant::now();
            let out = self.run(args)?;
            let elapsed = t.elapsed();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let compiled: Vec<&str> = stderr
                .lines()
                .filter_map(|l| {
                    let mut words = l.split_whitespace();
                    match words.next()? {
                        "Compiling" | "Checking" => words.next(),
                        _ => None,
                    }
                })
                .collect();
            let others = compiled.iter().any(|c| Some(*c) != crate_);
            if stderr.contains("Blocking waiting for file lock") || others {
                *redone += 1;
                continue;
            }
            if let Some(name) = crate_ {
                if !compiled.contains(&name) {
                    return Err(format!(
                        "`cargo {}` did not recompile `{name}` (touching its src/lib.rs had no \
                         effect?):\n{stderr}",
                        args.join(" ")
                    ));
                }
            }
            return Ok((elapsed, out));
        }
        Err(format!(
            "`cargo {}` waited for a lock or rebuilt dependencies {} times in a row; is \
             something else building in {} or editing workflow-core?",
            args.join(" "),
            RETRIES + 1,
            self.target.display()
        ))
    }
}

/// The target directory this bench was built into, from the executable's path
/// (`<target>/<profile>/deps/macro_cost-<hash>`), or else the temporary directory.
fn bench_root() -> PathBuf {
    let exe = std::env::current_exe().ok();
    let target = exe.as_deref().and_then(|p| {
        let deps = p.parent()?;
        if deps.file_name()? != "deps" {
            return None;
        }
        Some(deps.parent()?.parent()?.to_path_buf())
    });
    match target {
        Some(t) => t.join("macro-bench"),
        None => std::env::temp_dir().join("workflow-macro-bench"),
    }
}

/// Writes `contents` unless the file already holds them (so cargo's fingerprints of the
/// generated manifests stay fresh from one run to the next).
fn write_if_changed(path: &Path, contents: &str) -> Result<(), String> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn touch(path: &Path) -> Result<(), String> {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .map_err(|e| format!("cannot touch {}: {e}", path.display()))
}

/// Writes the workspace of the generated crates under `root`.
fn write_workspace(root: &Path, crates: &[Crate]) -> Result<(), String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the macro crate has no parent directory")?;
    let core = repo.join("workflow-core");
    if !core.join("Cargo.toml").is_file() {
        return Err(format!("workflow-core not found at {}", core.display()));
    }
    let members: Vec<String> = crates.iter().map(|c| format!("\"{}\"", c.name)).collect();
    write_if_changed(
        &root.join("Cargo.toml"),
        &format!(
            "# Generated by workflow-macros/benches/macro_cost.rs.\n\
             [workspace]\nmembers = [{}]\nresolver = \"2\"\n",
            members.join(", ")
        ),
    )?;
    // The repository's dependency versions (cargo drops the entries it does not need). Kept
    // from one run to the next, like a target directory.
    let lock = root.join("Cargo.lock");
    if !lock.exists() {
        if let Ok(l) = std::fs::read_to_string(repo.join("Cargo.lock")) {
            write_if_changed(&lock, &l)?;
        }
    }
    let core_path = core.display().to_string().replace('\\', "/");
    for c in crates {
        let mut deps = String::from("serde = { version = \"1\", features = [\"derive\"] }\n");
        if c.workflow_core {
            let _ = writeln!(
                deps,
                "workflow-core = {{ path = \"{core_path}\", default-features = false }}"
            );
        }
        write_if_changed(
            &root.join(c.name).join("Cargo.toml"),
            &format!(
                "[package]\nname = \"{}\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
                 publish = false\n\n[lib]\ndoctest = false\ntest = false\n\n\
                 [dependencies]\n{deps}",
                c.name
            ),
        )?;
        write_if_changed(&root.join(c.name).join("src").join("lib.rs"), &c.source)?;
    }
    Ok(())
}

fn compile_time(reps: usize, unstable: bool) -> Result<Compiled, String> {
    let root = bench_root();
    let cargo = Cargo {
        program: std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()),
        root: root.join("crates"),
        target: root.join("target"),
        unstable: false,
    };
    let crates = crates();
    write_workspace(&cargo.root, &crates)?;

    // One-time dependency build, for both commands (`check` builds dependencies' metadata
    // only, so it has artifacts of its own).
    println!(
        "building the generated crates and their dependencies in {} (slow the first time only)...",
        cargo.target.display()
    );
    let t = Instant::now();
    cargo.run(&["build", "--workspace", "--lib"])?;
    cargo.run(&["check", "--workspace", "--lib"])?;
    let prep = t.elapsed();
    println!("  done in {:.1} s", prep.as_secs_f64());

    let mut redone = 0;
    // Cargo's own share: a build with nothing to do.
    let mut noop = Vec::new();
    for _ in 0..reps {
        noop.push(
            cargo
                .timed(&["build", "-p", crates[0].name, "--lib"], None, &mut redone)?
                .0,
        );
    }

    // Interleaved: one repetition of every crate and command, then the next, so that changes
    // in the machine's load spread over all of them.
    let mut samples: Vec<[Vec<Duration>; 2]> =
        crates.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    println!("timing {reps} rebuilds of each crate...");
    for rep in 0..reps {
        for (c, s) in crates.iter().zip(samples.iter_mut()) {
            for (i, cmd) in ["check", "build"].into_iter().enumerate() {
                let args = [cmd, "-p", c.name, "--lib"];
                s[i].push(cargo.timed(&args, Some(c.name), &mut redone)?.0);
            }
        }
        println!("  repetition {}/{reps} done", rep + 1);
    }

    let mut results: Vec<(Crate, CrateResult)> = crates
        .into_iter()
        .zip(samples)
        .map(|(c, [check, build])| {
            let source_lines = c.source.lines().count();
            let r = CrateResult {
                check: Stats::of(check),
                build: Stats::of(build),
                passes: None,
                source_lines,
                expanded_lines: None,
            };
            (c, r)
        })
        .collect();

    let mut prep_unstable = None;
    if unstable {
        let cargo = Cargo {
            target: root.join("target-unstable"),
            unstable: true,
            ..cargo
        };
        println!(
            "building again with RUSTC_BOOTSTRAP=1 in {} (slow the first time only)...",
            cargo.target.display()
        );
        let t = Instant::now();
        let built = cargo
            .run(&["build", "--workspace", "--lib"])
            .map(|_| t.elapsed());
        if let Ok(d) = &built {
            println!("  done in {:.1} s", d.as_secs_f64());
            println!("running -Z time-passes and -Z unpretty=expanded...");
            for (c, r) in &mut results {
                if c.passes {
                    r.passes = Some(time_passes(&cargo, c.name, &mut redone));
                }
                r.expanded_lines = Some(expanded_lines(&cargo, c.name, &mut redone));
            }
        }
        prep_unstable = Some(built);
    }

    Ok(Compiled {
        root: root.join("crates"),
        prep,
        prep_unstable,
        noop: Stats::of(noop),
        results,
        redone,
    })
}

/// `cargo rustc -- -Z time-passes` on one crate, `TIME_PASSES_RUNS` times: the median of each
/// pass of `PASSES`.
fn time_passes(
    cargo: &Cargo,
    name: &str,
    redone: &mut usize,
) -> Result<Vec<Option<Duration>>, String> {
    let args = ["rustc", "-p", name, "--lib", "--", "-Z", "time-passes"];
    let mut runs: Vec<Vec<Duration>> = PASSES.iter().map(|_| Vec::new()).collect();
    for _ in 0..TIME_PASSES_RUNS {
        let (_, out) = cargo.timed(&args, Some(name), redone)?;
        let text = String::from_utf8_lossy(&out.stderr);
        // Lines look like `time:   0.123; rss:   40MB ->   45MB (   +5MB)	macro_expand_crate`.
        let pass = |wanted: &str| {
            text.lines().find_map(|line| {
                let rest = line.trim_start().strip_prefix("time:")?;
                if line.split_whitespace().last()? != wanted {
                    return None;
                }
                let secs: f64 = rest.split(';').next()?.trim().parse().ok()?;
                Some(Duration::from_secs_f64(secs))
            })
        };
        for ((_, names), samples) in PASSES.iter().zip(runs.iter_mut()) {
            if let Some(d) = names.iter().find_map(|n| pass(n)) {
                samples.push(d);
            }
        }
    }
    if runs[0].is_empty() {
        return Err("no macro expansion pass in the -Z time-passes output".to_string());
    }
    Ok(runs
        .into_iter()
        .map(|s| (!s.is_empty()).then(|| Stats::of(s).median))
        .collect())
}

/// Lines of the crate as expanded by rustc (`-Z unpretty=expanded`, printed on stdout).
fn expanded_lines(cargo: &Cargo, name: &str, redone: &mut usize) -> Result<usize, String> {
    let args = [
        "rustc",
        "-p",
        name,
        "--lib",
        "--",
        "-Z",
        "unpretty=expanded",
    ];
    let (_, out) = cargo.timed(&args, Some(name), redone)?;
    let n = String::from_utf8_lossy(&out.stdout).lines().count();
    if n == 0 {
        return Err("rustc printed no expanded code".to_string());
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------
// The report.

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn spread(s: &Stats, f: fn(Duration) -> String) -> String {
    format!(
        "{} (min {}, max {}, n={})",
        f(s.median),
        f(s.min),
        f(s.max),
        s.n
    )
}

fn print_report(in_process: Option<&InProcess>, compiled: Option<&Compiled>, reps: usize) {
    println!("\n== 1. In-process expansion (release build of the macro code, outside rustc) ==");
    match in_process {
        None => println!("  not measured (see the error above)"),
        Some(r) => {
            println!(
                "  input: `async fn fifty`, {AWAITS} awaits, every {KEEP_EVERY}th result kept \
                 to the end ({} lines)",
                r.input_lines
            );
            if let Some((name, variants, fields)) = &r.state_enum {
                println!(
                    "  state enum `{name}`: {variants} variants, {fields} fields in all \
                     (including each variant's op_id)"
                );
            }
            println!("  syn parse of the fn     median {}", spread(&r.parse, ms));
            println!("  workflow::expand        median {}", spread(&r.expand, ms));
            println!(
                "  expansion size          {} tokens, {} lines pretty-printed (prettyplease)",
                r.tokens, r.lines
            );
            println!("  (serde's derive has no in-process entry point: no number for it)");
        }
    }

    println!(
        "\n== 2. Crate compile time (dev profile, CARGO_INCREMENTAL=0, dependencies prebuilt; \
         wall time of `cargo check` / `cargo build` after touching src/lib.rs; median of {reps}) =="
    );
    let Some(c) = compiled else {
        println!("  not measured (see the error above)");
        return;
    };
    println!("  generated crates: {}", c.root.display());
    println!("  one-time dependency build (this run): {}", secs(c.prep));
    println!(
        "       {:<42} {:>9} {:>9}   build min..max",
        "crate", "check", "build"
    );
    for (k, r) in &c.results {
        println!(
            "  {:<4} {:<42} {:>9} {:>9}   {}..{}",
            k.label,
            k.what,
            secs(r.check.median),
            secs(r.build.median),
            secs(r.build.min),
            secs(r.build.max)
        );
    }
    println!(
        "       {:<42} {:>9} {:>9}",
        "cargo with nothing to do",
        "",
        secs(c.noop.median)
    );
    let get = |label: &str| {
        c.results
            .iter()
            .find(|(k, _)| k.label == label)
            .map(|(_, r)| r)
    };
    if let (Some(a), Some(b), Some(cc), Some(d)) = (get("(a)"), get("(b)"), get("(c)"), get("(d)"))
    {
        let ratio = |x: Duration, y: Duration| x.as_secs_f64() / y.as_secs_f64();
        let delta =
            |x: Duration, y: Duration| format!("{:+.2} s", x.as_secs_f64() - y.as_secs_f64());
        println!(
            "       {:<42} {:>8.1}x {:>8.1}x",
            "ratio (a)/(b)",
            ratio(a.check.median, b.check.median),
            ratio(a.build.median, b.build.median)
        );
        println!(
            "       {:<42} {:>9} {:>9}",
            "macro's added cost (a)-(c)",
            delta(a.check.median, cc.check.median),
            delta(a.build.median, cc.build.median)
        );
        println!(
            "       {:<42} {:>9} {:>9}",
            "derive's added cost (b)-(d)",
            delta(b.check.median, d.check.median),
            delta(b.build.median, d.build.median)
        );
    }
    if c.redone > 0 {
        println!(
            "  ({} cargo runs waited for a lock or rebuilt a dependency, and were redone)",
            c.redone
        );
    }

    println!(
        "\n== 3. rustc -Z time-passes (unstable flag, RUSTC_BOOTSTRAP=1; median of {TIME_PASSES_RUNS} \
         `cargo rustc` runs, dev profile) =="
    );
    match &c.prep_unstable {
        None => {
            println!("  skipped (MACRO_COST_UNSTABLE=0)");
            return;
        }
        Some(Err(e)) => {
            println!("  skipped: the build with RUSTC_BOOTSTRAP=1 failed: {e}");
            return;
        }
        Some(Ok(d)) => println!(
            "  one-time dependency build with RUSTC_BOOTSTRAP=1 (this run): {}",
            secs(*d)
        ),
    }
    let mut header = format!("       {:<42}", "crate");
    for (title, _) in PASSES {
        let _ = write!(header, " {title:>10}");
    }
    println!("{header}");
    for (k, r) in &c.results {
        match &r.passes {
            None => {}
            Some(Err(e)) => println!("  {:<4} {:<42} skipped: {e}", k.label, k.what),
            Some(Ok(p)) => {
                let mut line = format!("  {:<4} {:<42}", k.label, k.what);
                for d in p {
                    let cell = match d {
                        Some(d) => format!("{:.3} s", d.as_secs_f64()),
                        None => "?".to_string(),
                    };
                    let _ = write!(line, " {cell:>10}");
                }
                println!("{line}");
            }
        }
    }
    println!(
        "  (rustc's own clock, without cargo; (a)'s expansion includes serde's derive on the \
         generated state enum and the #[activity])"
    );

    println!(
        "\n== 4. Code size: source lines -> lines after expansion by rustc \
         (-Z unpretty=expanded, unstable) =="
    );
    for (k, r) in &c.results {
        match &r.expanded_lines {
            None => {}
            Some(Ok(n)) => println!(
                "  {:<4} {:<42} {:>5} -> {:>6}",
                k.label, k.what, r.source_lines, n
            ),
            Some(Err(e)) => println!("  {:<4} {:<42} skipped: {e}", k.label, k.what),
        }
    }
}
