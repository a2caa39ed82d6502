//! Failover with real processes: the acceptance test for several workers on one store.
//!
//! N `failover-worker` processes (3 on PostgreSQL, 2 on SQLite) share a fresh store with
//! leases of [`LEASE_MS`]. This process, a client that is not a worker, starts
//! [`WORKFLOWS`] `failover::parent` workflows at random moments over [`START_SPREAD_MS`] and
//! cancels a random quarter of them at random moments, while a chaos thread disrupts the
//! workers at least [`DISRUPTIONS`] times, every 150–400 ms: SIGKILL and restart (under the
//! same worker id for half of the restarts, a new one for the other half), or SIGSTOP for 1.5
//! leases and SIGCONT (never the last worker not frozen, nor one thawed less than a lease
//! ago). Then every worker runs until every workflow closed (at most [`SETTLE`]), and the test
//! checks, naming the workflow and the seed in every failure:
//!
//! - **outcomes**: a workflow never cancelled completed with its expected result, and so did
//!   its child; a cancelled one completed or was canceled (a Canceled one has its cancel
//!   request in the history); a cancellation handler ran for every Canceled workflow and
//!   never for one not cancelled, and its `cleanup` activity completed in the history and
//!   wrote its `cleanup` line to the side log (more than one only for attempts started before
//!   the commit: activities are at-least-once);
//! - **exactly-once history**: sequence numbers 1..=n, one `WorkflowStarted` first, one
//!   closing event last and matching the status; per operation at most one schedule, one
//!   completion or failure, one timer fired, one child start and result; no `ctx.log` line
//!   twice (each step logs one, so a step committed twice shows); a closed workflow holds no
//!   lease;
//! - **no activity ran again after its result was committed**: no side-log `start` of an
//!   activity later than the history time of its completion or failure (5 ms of clock
//!   granularity); every completion has a `done` line before it;
//! - **the disruptions happened**: at least [`DISRUPTIONS`] kills and freezes; no worker
//!   panicked.
//!
//! Fencing (a worker whose lease was taken over cannot commit) is checked through the history
//! checks; the lease losses the workers logged ("dropping the workflow") are counted and
//! printed. What fencing cannot stop is a side effect a worker had already decided on when it
//! was frozen: an attempt it had checked (a read for a first attempt, the fenced attempt
//! record for a retry) and not yet begun starts as the worker resumes, and is stopped at its
//! next fenced write. Such a `start` is accepted only from a worker that was frozen before the
//! commit and resumed at most one lease before the `start`; each is printed.
//!
//! The test prints its seed; `FAILOVER_SEED=<n>` repeats its random choices (the timing of
//! processes cannot be repeated). On failure it keeps its scratch directory and prints where:
//! `side.log`, `chaos.log` (kills, restarts, freezes with times and pids), `client.log`
//! (starts and cancels), `workers/*.stderr` (each worker's warnings), and the SQLite file; a
//! PostgreSQL schema is left in place (its URL is printed at the start). The two tests run
//! one after the other.

use durable_workflows::failover::{self, Plan, SideLine};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use workflow_core::{Client, ClientError, EventKind, HistoryEvent, Outcome, WorkflowStatus};

/// Workflows started on PostgreSQL.
const WORKFLOWS: usize = 200;
/// Workflows started on SQLite.
const SQLITE_WORKFLOWS: usize = 200;
/// Kills and freezes, at least.
const DISRUPTIONS: u32 = 30;
/// The workers' lease.
const LEASE_MS: u64 = 1000;
/// Starts are spread over this long from the first.
const START_SPREAD_MS: u64 = 8000;
/// A cancel comes up to this long after its workflow's start.
const CANCEL_WITHIN_MS: u64 = 2000;
/// How long the workflows may take to close once the chaos ended.
const SETTLE: Duration = Duration::from_secs(60);
/// Clock granularity allowed between the side log's and the history's times.
const SLACK_MS: u64 = 5;

/// One test at a time: five worker processes and a database on two cores would starve the
/// leases of both tests.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// splitmix64: small, deterministic, any seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `low..high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.between(0, 100) < p
    }
}

fn seed() -> u64 {
    let seed = std::env::var("FAILOVER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("failover test seed: FAILOVER_SEED={seed}");
    seed
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid} failed");
}

// ----- worker processes -------------------------------------------------------------------

struct Proc {
    id: String,
    child: Child,
    stderr: PathBuf,
    /// Fires once the worker printed `ready`; `None` once it did.
    starting: Option<(mpsc::Receiver<()>, Instant)>,
}

/// The worker processes, one per slot. Dropping it kills every one left (SIGCONT first, in
/// case it is frozen, then SIGKILL), so that no process outlives a failed test.
struct Workers {
    location: String,
    side_log: PathBuf,
    logs_dir: PathBuf,
    /// What happened to the workers, one line per event: `<unix-ms> <what> <worker> <pid>`.
    events: PathBuf,
    slots: Vec<Option<Proc>>,
    spawned: u32,
}

impl Workers {
    /// Workers on `location`; their stderr goes to `dir/workers/`, the chaos events to
    /// `dir/chaos.log`.
    fn new(location: &str, side_log: &Path, dir: &Path, n: usize) -> Workers {
        let logs_dir = dir.join("workers");
        std::fs::create_dir_all(&logs_dir).unwrap();
        Workers {
            location: location.to_string(),
            side_log: side_log.to_path_buf(),
            logs_dir,
            events: dir.join("chaos.log"),
            slots: (0..n).map(|_| None).collect(),
            spawned: 0,
        }
    }

    /// Appends `<unix-ms> <what> <worker> <pid>` to the chaos log.
    fn note(&self, what: &str, slot: usize) {
        use std::io::Write as _;
        let proc = self.proc(slot);
        let line = format!(
            "{} {what} {} {}\n",
            failover::now_ms(),
            proc.id,
            proc.child.id()
        );
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.events)
            .unwrap();
        file.write_all(line.as_bytes()).unwrap();
    }

    /// Starts a worker in `slot` under `id`, without waiting for it: see [`Workers::ready`]
    /// (a worker may have to wait for a frozen one to be thawed before it can open the
    /// store).
    fn spawn(&mut self, slot: usize, id: String) {
        assert!(self.slots[slot].is_none(), "slot {slot} is taken");
        let stderr_path = self
            .logs_dir
            .join(format!("{:03}-{id}.stderr", self.spawned));
        self.spawned += 1;
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_failover-worker"))
            .arg(&self.location)
            .arg(&self.side_log)
            .arg(&id)
            .arg(LEASE_MS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("the failover worker starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready, wait) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) if line.trim() == "ready" => {
                        let _ = ready.send(());
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        self.slots[slot] = Some(Proc {
            id,
            child,
            stderr: stderr_path,
            starting: Some((wait, Instant::now())),
        });
        self.note("spawn", slot);
    }

    /// Whether the worker in `slot` printed `ready`; panics if it exited, or did not get
    /// there within 30 s.
    fn ready(&mut self, slot: usize) -> bool {
        let proc = self.slots[slot].as_mut().expect("a worker in the slot");
        let Some((wait, since)) = &proc.starting else {
            return true;
        };
        match wait.try_recv() {
            Ok(()) => {
                proc.starting = None;
                self.note("ready", slot);
                true
            }
            Err(mpsc::TryRecvError::Empty) if since.elapsed() < Duration::from_secs(30) => false,
            Err(e) => {
                let _ = proc.child.kill();
                let _ = proc.child.wait();
                panic!(
                    "worker {} did not print `ready` ({}); its stderr:\n{}",
                    proc.id,
                    match e {
                        mpsc::TryRecvError::Empty => "not within 30 s",
                        mpsc::TryRecvError::Disconnected => "it exited",
                    },
                    std::fs::read_to_string(&proc.stderr).unwrap_or_default()
                );
            }
        }
    }

    /// Waits until every worker printed `ready`.
    fn all_ready(&mut self) {
        while !(0..self.slots.len()).all(|slot| self.ready(slot)) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn proc(&self, slot: usize) -> &Proc {
        self.slots[slot].as_ref().expect("a worker in the slot")
    }

    /// SIGKILLs the worker in `slot` and reaps it.
    fn kill(&mut self, slot: usize) -> String {
        self.note("kill", slot);
        let mut proc = self.slots[slot].take().expect("a worker in the slot");
        proc.child.kill().expect("SIGKILL the worker");
        proc.child.wait().expect("reap the worker");
        proc.id
    }

    /// SIGTERMs every worker and waits (bounded) for each to exit; returns those that did
    /// not exit cleanly in time (they are killed).
    fn stop_all(&mut self) -> Vec<String> {
        for proc in self.slots.iter().flatten() {
            signal(proc.child.id(), "-CONT");
            signal(proc.child.id(), "-TERM");
        }
        let mut unclean = Vec::new();
        for slot in &mut self.slots {
            let Some(mut proc) = slot.take() else {
                continue;
            };
            let deadline = Instant::now() + Duration::from_secs(15);
            let status = loop {
                match proc.child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => break None,
                }
            };
            match status {
                Some(status) if status.success() => {}
                other => {
                    unclean.push(format!("{} ({other:?})", proc.id));
                    let _ = proc.child.kill();
                    let _ = proc.child.wait();
                }
            }
        }
        unclean
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for proc in self.slots.iter_mut().flatten() {
            let _ = Command::new("kill")
                .args(["-CONT", &proc.child.id().to_string()])
                .status();
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
    }
}

fn lock(workers: &Mutex<Workers>) -> MutexGuard<'_, Workers> {
    workers.lock().unwrap_or_else(|p| p.into_inner())
}

// ----- chaos ------------------------------------------------------------------------------

/// A worker frozen with SIGSTOP (stopped by `stop_ms` at the latest) until SIGCONT (sent at
/// `cont_ms` at the earliest); wall clock, ms.
#[derive(Debug, Clone)]
struct Freeze {
    worker: String,
    stop_ms: u64,
    cont_ms: u64,
}

#[derive(Debug, Default)]
struct ChaosReport {
    kills: u32,
    same_id_restarts: u32,
    new_id_restarts: u32,
    stops: u32,
    freezes: Vec<Freeze>,
}

/// The chaos thread. Dropping the handle stops it (and waits for it), so that a failing test
/// does not leave it running.
struct Chaos {
    stop: Arc<AtomicBool>,
    load_done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<ChaosReport>>,
}

impl Chaos {
    fn start(workers: Arc<Mutex<Workers>>, prefix: &'static str, seed: u64) -> Chaos {
        let stop = Arc::new(AtomicBool::new(false));
        let load_done = Arc::new(AtomicBool::new(false));
        let (s, l) = (stop.clone(), load_done.clone());
        let thread = std::thread::spawn(move || chaos(&workers, prefix, Rng(seed), &s, &l));
        Chaos {
            stop,
            load_done,
            thread: Some(thread),
        }
    }

    /// Lets the chaos end once it made its disruptions and every frozen worker is thawed.
    fn finish(mut self) -> ChaosReport {
        self.load_done.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("not finished yet");
        match thread.join() {
            Ok(report) => report,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn chaos(
    workers: &Mutex<Workers>,
    prefix: &str,
    mut rng: Rng,
    stop: &AtomicBool,
    load_done: &AtomicBool,
) -> ChaosReport {
    let n = lock(workers).slots.len();
    // Per slot: when to thaw it, when it was stopped, its worker id.
    let mut frozen: Vec<Option<(Instant, u64, String)>> = vec![None; n];
    // Per slot: when it was last thawed. A worker is not frozen again within a lease of
    // that, so that each freeze is one pause the worker recovers from (it learns at its
    // next renewal which workflows it lost).
    let mut thawed_at: Vec<Option<Instant>> = vec![None; n];
    let mut report = ChaosReport::default();
    let mut restarts = 0u32;
    let mut next = Instant::now() + Duration::from_millis(rng.between(150, 400));
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        for slot in 0..n {
            let due =
                matches!(&frozen[slot], Some((at, _, _)) if stopping || *at <= Instant::now());
            if due {
                let (_, stop_ms, worker) = frozen[slot].take().unwrap();
                let workers = lock(workers);
                // Taken before the signal: the worker runs again no earlier than this.
                let cont_ms = failover::now_ms();
                workers.note("cont", slot);
                signal(workers.proc(slot).child.id(), "-CONT");
                report.freezes.push(Freeze {
                    worker,
                    stop_ms,
                    cont_ms,
                });
                thawed_at[slot] = Some(Instant::now());
            }
        }
        if stopping {
            return report;
        }
        // Workers that are neither frozen nor starting.
        let up: Vec<usize> = {
            let mut workers = lock(workers);
            (0..n)
                .filter(|&s| frozen[s].is_none() && workers.ready(s))
                .collect()
        };
        let not_frozen = frozen.iter().filter(|f| f.is_none()).count();
        let disrupted = report.kills + report.stops >= DISRUPTIONS;
        if disrupted && load_done.load(Ordering::SeqCst) {
            if up.len() == n {
                return report;
            }
        } else if Instant::now() >= next && !up.is_empty() {
            let slot = up[rng.between(0, up.len() as u64) as usize];
            let recovered =
                thawed_at[slot].is_none_or(|at| at.elapsed() >= Duration::from_millis(LEASE_MS));
            // Never freeze the last worker that is not frozen.
            if not_frozen >= 2 && recovered && rng.percent(50) {
                let workers = lock(workers);
                let proc = workers.proc(slot);
                signal(proc.child.id(), "-STOP");
                // Taken once the signal was sent: the worker is stopped by then.
                let stop_ms = failover::now_ms();
                workers.note("stop", slot);
                let thaw = Instant::now() + Duration::from_millis(LEASE_MS * 3 / 2);
                frozen[slot] = Some((thaw, stop_ms, proc.id.clone()));
                report.stops += 1;
            } else {
                let mut workers = lock(workers);
                let old = workers.kill(slot);
                thawed_at[slot] = None;
                report.kills += 1;
                restarts += 1;
                let id = if restarts % 2 == 1 {
                    report.same_id_restarts += 1;
                    old
                } else {
                    report.new_id_restarts += 1;
                    format!("{prefix}-w{slot}-r{restarts}")
                };
                workers.spawn(slot, id);
            }
            next = Instant::now() + Duration::from_millis(rng.between(150, 400));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ----- the run ----------------------------------------------------------------------------

/// One planned workflow.
struct Planned {
    id: String,
    plan: Plan,
    start_at: Duration,
    cancel_at: Option<Duration>,
    /// The cancel was recorded while it was running.
    cancel_recorded: bool,
}

/// A temporary directory kept (and named) when the test fails, for the post-mortem: the
/// side log and every worker's stderr.
struct Scratch(Option<tempfile::TempDir>);

impl Scratch {
    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.0.take() {
                let kept = dir.keep();
                eprintln!(
                    "the side log and the workers' stderr are kept in {}",
                    kept.display()
                );
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What the history of one workflow says, once checked.
#[derive(Default)]
struct Facts {
    /// Per activity name: the history time of its completion or failure.
    resolved_at: HashMap<String, (u64, bool)>,
    handlers: usize,
    cancel_requests: usize,
    child_completed: usize,
}

/// Checks the exactly-once shape of a history and returns what the other checks need.
fn check_history(id: &str, history: &[HistoryEvent], status: WorkflowStatus, seed: u64) -> Facts {
    let ctx = format!("workflow `{id}` (FAILOVER_SEED={seed})");
    let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=history.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "{ctx}: history sequence numbers are not 1..=n"
    );
    let started = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::WorkflowStarted { .. }))
        .count();
    assert!(
        started == 1 && matches!(history[0].kind, EventKind::WorkflowStarted { .. }),
        "{ctx}: `WorkflowStarted` {started} times, or not first"
    );
    let closing: Vec<(usize, WorkflowStatus)> = history
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e.kind {
            EventKind::WorkflowCompleted { .. } => Some((i, WorkflowStatus::Completed)),
            EventKind::WorkflowCanceled { .. } => Some((i, WorkflowStatus::Canceled)),
            EventKind::WorkflowFailed { .. } => Some((i, WorkflowStatus::Failed)),
            EventKind::WorkflowTerminated { .. } => Some((i, WorkflowStatus::Terminated)),
            _ => None,
        })
        .collect();
    assert_eq!(
        closing,
        vec![(history.len() - 1, status)],
        "{ctx}: expected exactly one closing event, last, for status {status}"
    );

    let mut facts = Facts::default();
    let mut scheduled: HashMap<u64, String> = HashMap::new();
    let mut resolved: HashSet<u64> = HashSet::new();
    let mut timers_fired: HashSet<u64> = HashSet::new();
    let mut child_results: HashSet<u64> = HashSet::new();
    let mut children_started: HashSet<u64> = HashSet::new();
    let mut logs: HashSet<&str> = HashSet::new();
    for event in history {
        let seq = event.seq;
        match &event.kind {
            EventKind::ActivityScheduled { op, activity, .. } => {
                assert!(
                    scheduled.insert(op.0, activity.clone()).is_none(),
                    "{ctx}: {op} scheduled twice (seq {seq})"
                );
                assert!(
                    scheduled.values().filter(|a| *a == activity).count() == 1,
                    "{ctx}: activity `{activity}` scheduled by two operations (seq {seq})"
                );
            }
            EventKind::ActivityCompleted { op, activity }
            | EventKind::ActivityFailed { op, activity, .. } => {
                assert_eq!(
                    scheduled.get(&op.0),
                    Some(activity),
                    "{ctx}: {op} resolved (seq {seq}) without being scheduled before"
                );
                assert!(
                    resolved.insert(op.0),
                    "{ctx}: {op} (`{activity}`) has a second completion or failure at seq {seq}: \
                     a result was committed twice"
                );
                let completed = matches!(event.kind, EventKind::ActivityCompleted { .. });
                facts
                    .resolved_at
                    .insert(activity.clone(), (event.at_ms, completed));
            }
            EventKind::TimerFired { op } => assert!(
                timers_fired.insert(op.0),
                "{ctx}: timer {op} fired twice (seq {seq})"
            ),
            EventKind::ChildStarted { op, .. } => assert!(
                children_started.insert(op.0),
                "{ctx}: child {op} started twice (seq {seq})"
            ),
            EventKind::ChildCompleted { op, .. } | EventKind::ChildFailed { op, .. } => {
                assert!(
                    child_results.insert(op.0),
                    "{ctx}: child {op} resolved twice (seq {seq})"
                );
                if matches!(event.kind, EventKind::ChildCompleted { .. }) {
                    facts.child_completed += 1;
                }
            }
            EventKind::HandlerStarted { .. } => facts.handlers += 1,
            EventKind::CancelRequested { .. } => facts.cancel_requests += 1,
            EventKind::Log { message } => assert!(
                logs.insert(message),
                "{ctx}: log line {message:?} twice (seq {seq}): a step was committed twice"
            ),
            _ => {}
        }
    }
    assert!(
        facts.handlers <= 1,
        "{ctx}: {} handlers started",
        facts.handlers
    );
    assert!(
        facts.cancel_requests <= 1,
        "{ctx}: {} cancel requests recorded",
        facts.cancel_requests
    );
    facts
}

async fn run(name: &'static str, location: &str, dir: &Path, workers_n: usize, count: usize) {
    let seed = seed();
    println!("{name}: store {location}, scratch {}", dir.display());
    let began = Instant::now();
    let mut rng = Rng(seed);
    let side_log = dir.join("side.log");
    let client = Client::connect(location)
        .await
        .unwrap_or_else(|e| panic!("connect a client to {location}: {e}"));

    // The plan: what each workflow does, when it starts, whether and when it is cancelled.
    let mut planned: Vec<Planned> = (0..count)
        .map(|i| {
            let start_at = rng.between(0, START_SPREAD_MS);
            let cancel_at = rng
                .percent(25)
                .then(|| start_at + rng.between(0, CANCEL_WITHIN_MS));
            Planned {
                id: format!("{name}-{i:03}"),
                plan: Plan {
                    beats: rng.between(4, 10) as u32,
                    beat_ms: rng.between(20, 60),
                    sleep_ms: rng.between(100, 400),
                    token: rng.between(0, 1_000_000),
                    failures: [0, 0, 0, 1, 1, 2][rng.between(0, 6) as usize],
                },
                start_at: Duration::from_millis(start_at),
                cancel_at: cancel_at.map(Duration::from_millis),
                cancel_recorded: false,
            }
        })
        .collect();
    // (when, 0 = start / 1 = cancel, which)
    let mut actions: Vec<(Duration, u8, usize)> = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        actions.push((p.start_at, 0, i));
        if let Some(at) = p.cancel_at {
            actions.push((at, 1, i));
        }
    }
    actions.sort();

    let workers = Arc::new(Mutex::new(Workers::new(
        location, &side_log, dir, workers_n,
    )));
    for slot in 0..workers_n {
        lock(&workers).spawn(slot, format!("{name}-w{slot}"));
    }
    lock(&workers).all_ready();
    println!(
        "{name}: {workers_n} workers ready after {:.1} s; starting {count} workflows over {} s",
        began.elapsed().as_secs_f64(),
        START_SPREAD_MS / 1000
    );
    let chaos = Chaos::start(workers.clone(), name, seed ^ 0x5eed);

    // What this process did, for the post-mortem: `<sent-ms> <answered-ms> <id> <what>`.
    let mut client_log = String::new();
    let t0 = tokio::time::Instant::now();
    for (at, kind, i) in actions {
        tokio::time::sleep_until(t0 + at).await;
        let p = &mut planned[i];
        let sent_ms = failover::now_ms();
        let what = if kind == 0 {
            if let Err(e) = client.start(failover::parent, p.id.clone(), p.plan).await {
                panic!("starting {} failed (FAILOVER_SEED={seed}): {e}", p.id);
            }
            "start"
        } else {
            match client.cancel(&p.id, "failover test").await {
                Ok(()) => {
                    p.cancel_recorded = true;
                    "cancel recorded"
                }
                Err(ClientError::AlreadyClosed { .. }) => "cancel refused: already closed",
                Err(e) => panic!("cancelling {} failed (FAILOVER_SEED={seed}): {e}", p.id),
            }
        };
        client_log.push_str(&format!(
            "{sent_ms} {} {} {what}\n",
            failover::now_ms(),
            p.id
        ));
    }
    let load_s = t0.elapsed().as_secs_f64();
    std::fs::write(dir.join("client.log"), &client_log).unwrap();
    let report = chaos.finish();
    let chaos_s = t0.elapsed().as_secs_f64();
    println!(
        "{name}: load done after {load_s:.1} s, chaos after {chaos_s:.1} s: {} SIGKILLs \
         ({} restarted under the same id, {} under a new one), {} SIGSTOPs of {} ms",
        report.kills,
        report.same_id_restarts,
        report.new_id_restarts,
        report.stops,
        LEASE_MS * 3 / 2
    );

    // Every worker runs until every workflow closed.
    let deadline = Instant::now() + SETTLE;
    loop {
        let running = client
            .list(Some(WorkflowStatus::Running))
            .await
            .expect("list the running workflows");
        if running.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let store = client.store();
            let mut lines = Vec::new();
            for d in &running {
                let lease = store.load_workflow(&d.id).await.ok().and_then(|r| r.lease);
                lines.push(format!(
                    "  {} state {} version {} stuck {:?} lease {:?} pending {:?} tasks {:?}",
                    d.id,
                    d.state,
                    d.version,
                    d.stuck,
                    lease,
                    d.pending
                        .iter()
                        .map(|p| format!("{} {}", p.op, p.waiting_for))
                        .collect::<Vec<_>>(),
                    d.tasks
                        .iter()
                        .map(|t| format!("{} {} attempt {}", t.op, t.activity, t.attempt))
                        .collect::<Vec<_>>(),
                ));
            }
            panic!(
                "{name}: {} workflows still running {} s after the chaos ended \
                 (FAILOVER_SEED={seed}):\n{}",
                running.len(),
                SETTLE.as_secs(),
                lines.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled_s = t0.elapsed().as_secs_f64();
    let unclean = lock(&workers).stop_all();
    println!(
        "{name}: every workflow closed {settled_s:.1} s after the first start; workers stopped \
         after {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // ----- checks -----
    let lines = failover::read_side_log(&side_log);
    let mut by_op: HashMap<(&str, &str), Vec<&SideLine>> = HashMap::new();
    for line in &lines {
        by_op
            .entry((line.workflow.as_str(), line.activity.as_str()))
            .or_default()
            .push(line);
    }
    let lines_of = |wf: &str, activity: &str, kind: &str| -> Vec<&SideLine> {
        by_op
            .get(&(wf, activity))
            .map(|v| v.iter().copied().filter(|l| l.kind == kind).collect())
            .unwrap_or_default()
    };

    let all = client.list(None).await.expect("list the workflows");
    let parents: HashMap<&str, &Planned> = planned.iter().map(|p| (p.id.as_str(), p)).collect();
    for d in &all {
        let parent = d.id.strip_suffix("-child").unwrap_or(&d.id);
        assert!(
            parents.contains_key(parent),
            "workflow `{}` was never started by the test (FAILOVER_SEED={seed})",
            d.id
        );
    }
    let listed: HashSet<&str> = all.iter().map(|d| d.id.as_str()).collect();
    let store = client.store();

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut stale_starts: Vec<String> = Vec::new();
    let mut reruns = 0usize;
    let mut retries = 0usize;
    let mut extra_cleanups = 0usize;
    let mut unseen_cancels = 0usize;
    let mut checked = 0usize;
    for p in &planned {
        let child_id = format!("{}-child", p.id);
        let cancelled = p.cancel_recorded;
        for (id, is_parent) in [(p.id.as_str(), true), (child_id.as_str(), false)] {
            if !is_parent && !listed.contains(id) {
                assert!(
                    cancelled,
                    "{id}: the child of a workflow never cancelled does not exist \
                     (FAILOVER_SEED={seed})"
                );
                continue;
            }
            checked += 1;
            let ctx = format!("workflow `{id}` (FAILOVER_SEED={seed})");
            let record = store.load_workflow(id).await.expect("load the workflow");
            assert!(
                record.lease.is_none(),
                "{ctx}: closed but still leased: {:?}",
                record.lease
            );
            let outcome = client.outcome_json(id).await.expect("the outcome");
            let want = if is_parent {
                failover::expected_result(&p.plan)
            } else {
                failover::child_result(p.plan.token + u64::from(p.plan.beats))
            };
            match &outcome {
                Outcome::Completed(v) => assert_eq!(
                    v,
                    &serde_json::json!(want),
                    "{ctx}: completed with the wrong result"
                ),
                Outcome::Canceled(_) => assert!(
                    cancelled,
                    "{ctx}: canceled, but the test never cancelled it: {outcome:?}"
                ),
                other => panic!("{ctx}: closed {other:?}, expected Completed or Canceled"),
            }
            *outcomes
                .entry(format!(
                    "{} {}",
                    if is_parent { "parent" } else { "child" },
                    outcome.status()
                ))
                .or_default() += 1;

            let history = client.history(id).await.expect("the history");
            let facts = check_history(id, &history, outcome.status(), seed);
            if is_parent {
                // A cancel recorded while the closing step was in flight is not seen: the
                // workflow completed, as if the cancel had come after the close.
                if !cancelled || outcome.is_canceled() {
                    assert_eq!(
                        facts.cancel_requests,
                        usize::from(cancelled),
                        "{ctx}: cancel requests in the history; the test's cancel was {}",
                        if cancelled {
                            "recorded"
                        } else {
                            "not sent or late"
                        }
                    );
                } else if facts.cancel_requests == 0 {
                    unseen_cancels += 1;
                }
                if !cancelled {
                    assert_eq!(
                        facts.child_completed, 1,
                        "{ctx}: its child did not complete"
                    );
                }
                // The handler ran exactly when the history says so: always for a Canceled
                // workflow, never for one that was not cancelled.
                if outcome.is_canceled() {
                    assert_eq!(facts.handlers, 1, "{ctx}: canceled without its handler");
                }
                if !cancelled {
                    assert_eq!(facts.handlers, 0, "{ctx}: a handler ran without a cancel");
                }
                let cleanups = lines_of(id, "cleanup", "cleanup");
                if facts.handlers == 1 {
                    assert_eq!(
                        facts.resolved_at.get("cleanup").map(|r| r.1),
                        Some(true),
                        "{ctx}: the handler ran but its cleanup activity did not complete"
                    );
                    assert!(
                        !cleanups.is_empty(),
                        "{ctx}: the cleanup completed but wrote no `cleanup` line"
                    );
                    extra_cleanups += cleanups.len() - 1;
                } else {
                    assert!(
                        cleanups.is_empty(),
                        "{ctx}: {} `cleanup` lines but no handler ran: {cleanups:?}",
                        cleanups.len()
                    );
                }
            } else {
                assert_eq!(facts.handlers, 0, "{ctx}: the child has no handler");
            }

            // No activity started again after its result was committed.
            for (activity, &(resolved_ms, completed)) in &facts.resolved_at {
                let starts = lines_of(id, activity, "start");
                if completed {
                    let done = lines_of(id, activity, "done");
                    assert!(
                        done.iter().any(|l| l.at_ms <= resolved_ms + SLACK_MS),
                        "{ctx}: `{activity}` completed at {resolved_ms} ms in the history, but \
                         no attempt returned before that: {done:?}"
                    );
                }
                if starts.len() > 1 {
                    reruns += 1;
                }
                retries += starts.iter().filter(|l| l.attempt > 1).count();
                for start in starts {
                    if start.at_ms <= resolved_ms + SLACK_MS {
                        continue;
                    }
                    // A worker frozen after it decided to start the attempt and before the
                    // result was committed elsewhere starts it as it resumes.
                    let excused = report.freezes.iter().find(|f| {
                        f.worker == start.worker
                            && f.stop_ms <= resolved_ms + SLACK_MS
                            && f.cont_ms <= start.at_ms + SLACK_MS
                            && start.at_ms <= f.cont_ms + LEASE_MS
                    });
                    match excused {
                        Some(f) => stale_starts.push(format!(
                            "{id} `{activity}` attempt {} on {} at {} ms, committed at \
                             {resolved_ms} ms, worker frozen {}..{} ms",
                            start.attempt, start.worker, start.at_ms, f.stop_ms, f.cont_ms
                        )),
                        None => panic!(
                            "{ctx}: `{activity}` attempt {} started on worker {} at {} ms, \
                             {} ms after its result was committed (history time {resolved_ms} \
                             ms)",
                            start.attempt,
                            start.worker,
                            start.at_ms,
                            start.at_ms - resolved_ms
                        ),
                    }
                }
            }
        }
    }
    assert_eq!(
        checked,
        all.len(),
        "every workflow in the store was checked (FAILOVER_SEED={seed})"
    );

    // The workers' own account: lease losses, and nothing worse.
    let mut dropped = 0usize;
    let mut panics = Vec::new();
    for entry in std::fs::read_dir(dir.join("workers")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        dropped += text.matches("dropping the workflow").count();
        if text.contains("panicked") {
            panics.push(format!("{}:\n{text}", path.display()));
        }
    }
    assert!(
        panics.is_empty(),
        "a worker panicked (FAILOVER_SEED={seed}):\n{}",
        panics.join("\n")
    );
    assert!(
        report.kills + report.stops >= DISRUPTIONS,
        "only {} kills and {} freezes (FAILOVER_SEED={seed})",
        report.kills,
        report.stops
    );

    println!(
        "{name}: {} workflows checked; outcomes {outcomes:?}; {} cancels recorded of {} sent \
         ({unseen_cancels} recorded while the closing step was in flight, not seen)",
        all.len(),
        planned.iter().filter(|p| p.cancel_recorded).count(),
        planned.iter().filter(|p| p.cancel_at.is_some()).count(),
    );
    println!(
        "{name}: {} side-log lines; {reruns} activities ran more than one attempt, {retries} \
         attempts were retries, {extra_cleanups} extra cleanup runs (at-least-once, all before \
         the commit); {dropped} workflows dropped by workers whose lease was taken over",
        lines.len()
    );
    println!(
        "{name}: {} stale starts from frozen workers (fenced afterwards){}",
        stale_starts.len(),
        stale_starts
            .iter()
            .map(|s| format!("\n  {s}"))
            .collect::<String>()
    );
    if !unclean.is_empty() {
        println!("{name}: workers that did not exit cleanly on SIGTERM: {unclean:?}");
    }
    println!("{name}: wall time {:.1} s", began.elapsed().as_secs_f64());
}

#[test]
fn failover_on_postgres_three_workers_killed_and_frozen_at_random() {
    let _serial = serial();
    let scratch = Scratch(Some(tempfile::tempdir().unwrap()));
    runtime().block_on(async {
        let Some(url) = workflow_core::postgres_testing::fresh_schema_url("failover").await else {
            println!(
                "skipped: no PostgreSQL server; run it with a server at WF_TEST_POSTGRES \
                 (default postgres://postgres@127.0.0.1:5432/test): \
                 cargo test --test failover -- --nocapture"
            );
            return;
        };
        run("pg", &url, scratch.path(), 3, WORKFLOWS).await;
    });
}

#[test]
fn failover_on_sqlite_two_workers_killed_and_frozen_at_random() {
    let _serial = serial();
    let scratch = Scratch(Some(tempfile::tempdir().unwrap()));
    let db = scratch.path().join("workflows.db");
    runtime().block_on(run(
        "sqlite",
        db.to_str().unwrap(),
        scratch.path(),
        2,
        SQLITE_WORKFLOWS,
    ));
}
