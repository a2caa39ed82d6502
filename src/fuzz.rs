//! Snapshot fuzzing (issue 11.1): stored state is data, and no data may hang, panic or
//! strand a worker.
//!
//! The corpus is the snapshots of real workflows (nested and shielded scopes, timeouts,
//! handles, races and joins, parallel blocks, compensation, children, cancel handlers, local
//! activities, an execution timeout) at every state a seeded walk of their events reaches. A
//! case mutates one of those snapshots structurally (numbers pushed to their edges, nodes
//! replaced, spliced or dropped, arrays reordered) and steps it once, through [`dry_run_step`] (the engine's own
//! decoding, checks and step), with events that could reach it: its pending operations'
//! results, timer fires and a cancel. A case is a finding when:
//! - the step panics (the corpus's workflow code never panics, so a panic is the engine's or
//!   the generated code's), or runs past its time budget ([`check_case`]'s caller enforces
//!   it: `tests/snapshot_fuzz.rs` runs the cases on a watchdog thread);
//! - the step succeeds but the snapshot it would commit does not step again, so a restart
//!   would strand the workflow.
//!
//! A step that refuses the snapshot with a typed fault (`CorruptSnapshot` and the like) is
//! the expected answer to bad data, not a finding.
//!
//! `tests/snapshot_fuzz.rs` runs a fixed number of seeded cases in CI; `fuzz/` holds a
//! `cargo fuzz` target over the same [`check_case`] for longer coverage-guided runs.

use std::time::Duration;
use workflow_core::dry_run::{dry_run_step, start_snapshot, start_snapshot_with, DryRun};
use workflow_core::prelude::*;
use workflow_core::{
    ChildOutcome, Event, Instance, OpKind, OpStatus, Snapshot, StartOptions, WorkflowFault,
};

// ---------------------------------------------------------------------------------------------
// The corpus's workflows. They never panic, whatever their locals hold (wrapping arithmetic).

#[activity]
async fn work(_ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
    Ok(n)
}

#[activity]
async fn undo(_ctx: ActivityContext, what: String) -> Result<String, ActivityError> {
    Ok(what)
}

/// Nested cancellable and non-cancellable scopes, a timeout, a cancel handler.
#[workflow]
async fn scoped(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    on_cancel!(|c| {
        let _ = c.activity(undo, "scoped".to_string()).await;
    });
    let inner: Result<u64, WorkflowError> = ctx
        .cancellable(async {
            let job = ctx.activity(work, n).start();
            let shielded: Result<u64, WorkflowError> = ctx
                .non_cancellable(async {
                    ctx.cancelled().await;
                    ctx.activity(work, n.wrapping_add(1)).await
                })
                .await;
            let timed: Result<u64, WorkflowError> = ctx
                .with_timeout(Duration::from_secs(5), async {
                    ctx.sleep(Duration::from_secs(60)).await?;
                    ctx.activity(work, n.wrapping_add(2)).await
                })
                .await;
            Ok(job
                .await?
                .wrapping_add(shielded.unwrap_or(0))
                .wrapping_add(timed.unwrap_or(0)))
        })
        .await;
    ctx.sleep(Duration::from_secs(1)).await?;
    inner
}

/// Operations started as handles, raced and joined.
#[workflow]
async fn handles(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let a = ctx.activity(work, n).start();
    let t = ctx.sleep(Duration::from_secs(30)).start();
    let first = ctx.race((a, t)).await?;
    let b = ctx.activity(work, n.wrapping_add(1)).start();
    let u = ctx.sleep(Duration::from_secs(1)).start();
    let both = ctx.join((b, u)).await?;
    let got: u64 = both.get(b).unwrap_or(Ok(0))?;
    let signal = ctx.cancelled().start();
    let c = ctx.activity(work, n.wrapping_add(2)).start();
    let _ = ctx.race((signal, c)).await;
    Ok(got.wrapping_add(u64::from(first.is(a))))
}

/// A parallel block whose first ended branch cancels the others.
#[workflow]
async fn branches(ctx: WorkflowContext, n: u64) -> Result<bool, WorkflowError> {
    let outcome = ctx
        .parallel(
            |p| p.ended() >= 1,
            [
                async {
                    on_cancel!(|c| {
                        c.log("branch 1 cancelled");
                    });
                    ctx.sleep(Duration::from_secs(2)).await?;
                    ctx.activity(work, n).await?;
                    Ok(())
                },
                async {
                    ctx.activity(work, n.wrapping_add(1)).await?;
                    Ok(())
                },
            ],
        )
        .await?;
    Ok(outcome.condition_met)
}

/// A compensable block with both handlers, then work that may fail or be cancelled.
#[workflow]
async fn compensated(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let reserved: Result<u64, WorkflowError> = ctx
        .compensable(async { ctx.activity(work, n).await })
        .compensate(async {
            ctx.activity(undo, "release".to_string()).await?;
            Ok(())
        })
        .confirm(async {
            ctx.activity(undo, "confirm".to_string()).await?;
            Ok(())
        })
        .await;
    let reserved = reserved?;
    ctx.sleep(Duration::from_secs(10)).await?;
    ctx.activity(work, reserved.wrapping_add(1)).await
}

/// A child workflow and a cancel sent to another workflow.
#[workflow]
async fn parent(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let child = ctx.child(compensated, format!("child-{n}"), n).start();
    ctx.cancel_external(format!("other-{n}"), "no longer needed")
        .await?;
    child.await
}

/// Scopes started with `.start()` (R3.7): one raced against the code's own timer and cancelled
/// through its handle, a shielded one awaited at the end.
#[workflow]
async fn started(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let racing: ScopeHandle<u64> = ctx
        .cancellable(async {
            on_cancel!(|cleanup| {
                let _ = cleanup.activity(undo, "stopped".to_string()).await;
            });
            let a = ctx.activity(work, n).await?;
            ctx.sleep(Duration::from_secs(5)).await?;
            Ok(a.wrapping_add(1))
        })
        .start();
    let shielded: ScopeHandle<u64> = ctx
        .non_cancellable(async { ctx.activity(work, n.wrapping_add(2)).await })
        .start();
    let timer = ctx.sleep(Duration::from_secs(3)).start();
    let first = ctx.race((racing, timer)).await?;
    if first.is(timer) {
        racing.cancel(ctx);
    }
    let raced = racing.await.unwrap_or(0);
    Ok(raced.wrapping_add(shielded.await?))
}

/// Local activities (R6.7): one awaited in a timeout, one started that waits for its end
/// after a cancel, with a back-off long enough to wait on a durable timer.
#[workflow]
async fn local(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let waiting = ctx
        .local_activity(work, n)
        .cancellation(ActivityCancellationType::WaitCancellationCompleted)
        .retry(RetryPolicy::default().with_initial_interval(Duration::from_secs(600)))
        .start();
    let quick: Result<u64, WorkflowError> = ctx
        .with_timeout(Duration::from_secs(5), async {
            ctx.local_activity(work, n.wrapping_add(1)).await
        })
        .await;
    Ok(waiting.await?.wrapping_add(quick.unwrap_or(0)))
}

// ---------------------------------------------------------------------------------------------
// The corpus.

/// Steps a snapshot of one corpus workflow.
pub type StepFn = fn(&Snapshot, Vec<Event>, u64) -> Result<DryRun, WorkflowFault>;

/// One workflow of the corpus.
#[derive(Clone, Copy)]
pub struct Subject {
    /// The workflow's name.
    pub name: &'static str,
    /// Steps one of its snapshots.
    pub step: StepFn,
    start: fn() -> Result<Snapshot, WorkflowFault>,
}

/// The corpus's workflows.
pub fn subjects() -> Vec<Subject> {
    vec![
        Subject {
            name: "scoped",
            step: |s, e, t| dry_run_step(scoped, s, e, t),
            start: || start_snapshot(scoped, 3),
        },
        Subject {
            name: "handles",
            step: |s, e, t| dry_run_step(handles, s, e, t),
            start: || start_snapshot(handles, 3),
        },
        Subject {
            name: "branches",
            step: |s, e, t| dry_run_step(branches, s, e, t),
            start: || start_snapshot(branches, 3),
        },
        Subject {
            name: "compensated",
            step: |s, e, t| dry_run_step(compensated, s, e, t),
            start: || start_snapshot(compensated, 3),
        },
        Subject {
            name: "started",
            step: |s, e, t| dry_run_step(started, s, e, t),
            start: || start_snapshot(started, 3),
        },
        Subject {
            name: "parent",
            step: |s, e, t| dry_run_step(parent, s, e, t),
            start: || start_snapshot(parent, 3),
        },
        Subject {
            name: "local",
            step: |s, e, t| dry_run_step(local, s, e, t),
            start: || start_snapshot(local, 3),
        },
        Subject {
            name: "timed",
            step: |s, e, t| dry_run_step(scoped, s, e, t),
            // Started with an execution timeout (R5.3), whose timer the walk fires.
            start: || {
                let options = StartOptions::default().execution_timeout(Duration::from_secs(90));
                start_snapshot_with(scoped, 3, &options, 1_000_000)
            },
        },
    ]
}

/// A stored snapshot of a corpus workflow.
#[derive(Clone)]
pub struct Seed {
    /// Which workflow.
    pub subject: Subject,
    /// The snapshot, as JSON.
    pub snapshot: serde_json::Value,
}

/// A small deterministic generator (SplitMix64), so that every case is reproduced by its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The events that could reach a workflow in `snapshot`: a result for each of its pending
/// operations, and a cancel.
pub fn events_for(snapshot: &serde_json::Value) -> Vec<Event> {
    let mut events = vec![Event::CancelRequested {
        reason: "fuzz".to_string(),
    }];
    let Some(instance) = snapshot
        .get("instance")
        .and_then(|i| serde_json::from_value::<Instance>(i.clone()).ok())
    else {
        return events;
    };
    if let Some(op) = instance.execution_timeout().and_then(|t| t.timer) {
        events.push(Event::TimerFired { op });
    }
    for (op, record) in instance.operations() {
        if matches!(record.status, OpStatus::Resolved(_)) {
            continue;
        }
        let op = *op;
        match &record.kind {
            OpKind::Activity { activity, .. } => events.push(Event::ActivityCompleted {
                op,
                result: if activity == "undo" {
                    serde_json::json!("done")
                } else {
                    serde_json::json!(op.0)
                },
            }),
            OpKind::Timer { .. } => events.push(Event::TimerFired { op }),
            OpKind::LocalActivity { .. } => {
                let retry_at_ms = instance
                    .local_activities()
                    .get(&op)
                    .and_then(|r| r.retry_at_ms);
                if retry_at_ms.is_some() {
                    events.push(Event::TimerFired { op });
                } else {
                    events.push(Event::LocalActivityBackoff {
                        op,
                        attempt: 2,
                        retry_at_ms: 600_000,
                        failures: vec![workflow_core::ActivityFailure::Timeout {
                            kind: workflow_core::TimeoutKind::StartToClose,
                        }],
                    });
                    events.push(Event::LocalActivityEnded {
                        op,
                        result: Ok(serde_json::json!(op.0)),
                        attempts: 1,
                        failures: Vec::new(),
                    });
                }
            }
            OpKind::Child { .. } => {
                events.push(Event::ChildCancelRecorded { op });
                events.push(Event::ChildClosed {
                    op,
                    outcome: ChildOutcome::Completed(serde_json::json!(op.0)),
                });
            }
            OpKind::CancelExternal { .. } => {
                events.push(Event::ExternalCancelDone { op, result: Ok(()) })
            }
            _ => {}
        }
    }
    events
}

/// The snapshots a seeded walk of each corpus workflow reaches: from its start, each step
/// delivers a random subset of the events that could reach it, `walks` times per workflow,
/// until it closes or `max_steps` steps.
pub fn seeds(seed: u64, walks: usize, max_steps: usize) -> Vec<Seed> {
    let mut rng = Rng::new(seed);
    let mut seeds = Vec::new();
    for subject in subjects() {
        let Ok(start) = (subject.start)() else {
            continue;
        };
        for _ in 0..walks {
            let mut snapshot = start.clone();
            let mut now = 1_000_000;
            for _ in 0..max_steps {
                let value: serde_json::Value = match snapshot.decode() {
                    Ok(v) => v,
                    Err(_) => break,
                };
                seeds.push(Seed {
                    subject,
                    snapshot: value.clone(),
                });
                let events: Vec<Event> = events_for(&value)
                    .into_iter()
                    .filter(|_| rng.below(3) == 0)
                    .collect();
                now += 1_000 * rng.below(100) as u64;
                match (subject.step)(&snapshot, events, now) {
                    Ok(ran) if ran.close.is_none() => snapshot = ran.snapshot,
                    _ => break,
                }
            }
        }
    }
    seeds
}

// ---------------------------------------------------------------------------------------------
// Mutations.

/// Numbers at the edges of the ranges the runtime state uses.
const EDGE_NUMBERS: &[i128] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    -1,
    255,
    65_535,
    u32::MAX as i128,
    u32::MAX as i128 + 1,
    (1 << 53) - 1,
    1 << 53,
    i64::MAX as i128,
    u64::MAX as i128 - 1,
    u64::MAX as i128,
];

/// Strings the runtime state is made of, to swap one for another.
const WORDS: &[&str] = &[
    "Root",
    "Cancellable",
    "NonCancellable",
    "Disconnected",
    "Pending",
    "CancelRequested",
    "TryCancel",
    "Abandon",
    "WaitCancellationCompleted",
    "WaitCancellationRequested",
    "",
    "work",
    "undo",
];

fn edge_number(rng: &mut Rng) -> serde_json::Value {
    let n = *rng.pick(EDGE_NUMBERS);
    if n < 0 {
        serde_json::json!(n as i64)
    } else {
        serde_json::json!(n as u64)
    }
}

/// Every node of `value`, as JSON pointers.
fn pointers(value: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), value)];
    while let Some((path, node)) = stack.pop() {
        match node {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = k.replace('~', "~0").replace('/', "~1");
                    stack.push((format!("{path}/{key}"), v));
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    stack.push((format!("{path}/{i}"), v));
                }
            }
            _ => {}
        }
        out.push(path);
    }
    out.sort();
    out
}

/// Applies one to three mutations to `value`: half of them move a number (an id, a counter,
/// a deadline) to a neighbour or an edge of its range, which mostly keeps the snapshot
/// decodable and so reaches the step; the others reshape any node.
pub fn mutate(rng: &mut Rng, value: &mut serde_json::Value) {
    for _ in 0..1 + rng.below(3) {
        let paths = pointers(value);
        let numbers: Vec<&String> = paths
            .iter()
            .filter(|p| value.pointer(p).is_some_and(|v| v.is_number()))
            .collect();
        if !numbers.is_empty() && rng.below(2) == 0 {
            let at = (*rng.pick(&numbers[..])).clone();
            if let Some(node) = value.pointer_mut(&at) {
                *node = match (rng.below(3), node.as_u64()) {
                    (0, Some(n)) => serde_json::json!(n.saturating_add(1 + rng.below(2) as u64)),
                    (1, Some(n)) => serde_json::json!(n.saturating_sub(1 + rng.below(2) as u64)),
                    _ => edge_number(rng),
                };
            }
            continue;
        }
        let at = rng.pick(&paths[..]).clone();
        let donor_at: &String = rng.pick(&paths[..]);
        let donor = value.pointer(donor_at).cloned().unwrap_or_default();
        let Some(node) = value.pointer_mut(&at) else {
            continue;
        };
        match rng.below(10) {
            0 | 1 => *node = edge_number(rng),
            2 => {
                if let Some(n) = node.as_u64() {
                    *node = serde_json::json!(n.wrapping_add(1 + rng.below(3) as u64));
                } else {
                    *node = edge_number(rng);
                }
            }
            3 => *node = serde_json::json!(*rng.pick(WORDS)),
            4 => *node = donor,
            5 => match node {
                serde_json::Value::Object(map) if !map.is_empty() => {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    map.remove(rng.pick(&keys));
                }
                serde_json::Value::Array(items) if !items.is_empty() => {
                    items.remove(rng.below(items.len()));
                }
                _ => *node = serde_json::Value::Null,
            },
            6 => match node {
                serde_json::Value::Array(items) if !items.is_empty() => {
                    let copy = items[rng.below(items.len())].clone();
                    items.insert(rng.below(items.len() + 1), copy);
                }
                serde_json::Value::Object(map) => {
                    map.insert("parent".to_string(), edge_number(rng));
                }
                _ => *node = serde_json::json!([]),
            },
            7 => {
                if let serde_json::Value::Array(items) = node {
                    if items.len() > 1 {
                        let (i, j) = (rng.below(items.len()), rng.below(items.len()));
                        items.swap(i, j);
                    }
                } else {
                    *node = serde_json::json!({});
                }
            }
            8 => *node = serde_json::Value::Null,
            _ => *node = serde_json::json!(rng.below(2) == 0),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One case.

/// What a case found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The step panicked.
    Panicked(String),
    /// The step succeeded, but what it would commit does not step again.
    Unreadable(String),
}

/// How a case without a finding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The step refused the snapshot with a typed fault.
    Refused,
    /// The step ran, and what it would commit steps again (or the workflow closed).
    Stepped,
}

/// Steps the (mutated) `snapshot` of `subject` with `events` once; then steps what it would
/// commit again, with no events, to check it reads back.
pub fn check_case(
    subject: &Subject,
    snapshot: &serde_json::Value,
    events: Vec<Event>,
) -> Result<Verdict, Finding> {
    let Ok(snapshot) = Snapshot::of(snapshot) else {
        return Ok(Verdict::Refused);
    };
    let stepped = std::panic::catch_unwind(|| (subject.step)(&snapshot, events, 2_000_000_000));
    let ran = match stepped {
        Err(payload) => return Err(Finding::Panicked(panic_text(&*payload))),
        Ok(Err(WorkflowFault::Panicked { message, .. })) => return Err(Finding::Panicked(message)),
        Ok(Err(_)) => return Ok(Verdict::Refused),
        Ok(Ok(ran)) => ran,
    };
    if ran.close.is_some() {
        return Ok(Verdict::Stepped);
    }
    match std::panic::catch_unwind(|| (subject.step)(&ran.snapshot, Vec::new(), 2_000_000_001)) {
        Err(payload) => Err(Finding::Panicked(panic_text(&*payload))),
        Ok(Err(WorkflowFault::Panicked { message, .. })) => Err(Finding::Panicked(message)),
        Ok(Err(fault)) => Err(Finding::Unreadable(format!(
            "{fault}; it would commit {}",
            ran.snapshot
        ))),
        Ok(Ok(_)) => Ok(Verdict::Stepped),
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_string())
}

/// Case number `case` of a run seeded with `seed` over `seeds`: which seed snapshot, its
/// mutation and its events, all derived from `(seed, case)`.
pub fn case(seeds: &[Seed], seed: u64, case: u64) -> (Subject, serde_json::Value, Vec<Event>) {
    let mut rng = Rng::new(seed ^ case.wrapping_mul(0xA24B_AED4_963E_E407));
    let chosen = &seeds[rng.below(seeds.len())];
    let mut snapshot = chosen.snapshot.clone();
    let events_before = events_for(&snapshot);
    mutate(&mut rng, &mut snapshot);
    // The events of the state before the mutation (what was really in flight), filtered.
    let events = events_before
        .into_iter()
        .filter(|_| rng.below(2) == 0)
        .collect();
    (chosen.subject, snapshot, events)
}
