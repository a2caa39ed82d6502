//! Review of the performance work: `for` loops over ranges (`RangeIter`), steps that leave
//! the snapshot out when the machine is cached, the bounded machine cache, SQLite group
//! commit for every write, and heartbeat writes that no longer stop the activity.

// `for _ in (0..n)` is tested on purpose (rustc warns about it in plain Rust as well).
#![allow(unused_parens)]

use durable_workflows::testing::{completed, run};
use std::sync::Arc;
use workflow_core::__private::RangeIter;
use workflow_core::prelude::*;
use workflow_core::{MemoryStore, SqliteStore, StoreError};

// ---------------------------------------------------------------------------------------
// RangeIter against std's ranges
// ---------------------------------------------------------------------------------------

fn via_range_iter<T, R>(r: R) -> Vec<T>
where
    T: workflow_core::__private::RangeItem,
    RangeIter<T>: From<R>,
{
    RangeIter::<T>::from(r).collect()
}

#[test]
#[allow(clippy::reversed_empty_ranges)] // empty ranges on purpose
fn range_iter_yields_what_std_ranges_yield_at_the_edges() {
    // Integers: bounds at the type's limits, empty and single-item ranges, negatives.
    assert_eq!(
        via_range_iter(250u8..=u8::MAX),
        (250u8..=u8::MAX).collect::<Vec<_>>()
    );
    assert_eq!(via_range_iter(u8::MAX..=u8::MAX), vec![u8::MAX]);
    assert_eq!(via_range_iter(0u8..u8::MAX).len(), 255);
    assert_eq!(via_range_iter(i8::MIN..=i8::MAX).len(), 256);
    assert_eq!(via_range_iter(-3i32..2), vec![-3, -2, -1, 0, 1]);
    assert_eq!(
        via_range_iter(i64::MAX - 1..=i64::MAX),
        vec![i64::MAX - 1, i64::MAX]
    );
    assert_eq!(via_range_iter(u128::MAX..=u128::MAX), vec![u128::MAX]);
    assert!(via_range_iter(5u32..5).is_empty());
    assert!(via_range_iter(5u32..3).is_empty());
    assert!(via_range_iter(5u32..=4).is_empty());
    assert!(via_range_iter(u64::MAX..u64::MAX).is_empty());
    // An open range stops after the maximum instead of overflowing.
    assert_eq!(via_range_iter(254u8..), vec![254, 255]);
    // chars skip the surrogate gap, like std.
    let across = '\u{D7FE}'..='\u{E001}';
    assert_eq!(via_range_iter(across.clone()), across.collect::<Vec<_>>());
    let to_gap = '\u{D7FF}'..'\u{E000}';
    assert_eq!(via_range_iter(to_gap.clone()), to_gap.collect::<Vec<_>>());
    assert_eq!(via_range_iter(char::MAX..=char::MAX), vec![char::MAX]);
    assert_eq!(
        via_range_iter('\u{10FFFE}'..),
        vec!['\u{10FFFE}', char::MAX]
    );
    assert!(via_range_iter('b'..'a').is_empty());
}

#[test]
fn a_range_iter_resumes_from_its_serialized_position() {
    // Mid-way, after the maximum was yielded, and exhausted: each decodes to the same rest.
    let mut it = RangeIter::from(253u8..=u8::MAX);
    let mut seen = Vec::new();
    loop {
        let json = serde_json::to_string(&it).unwrap();
        let mut decoded: RangeIter<u8> = serde_json::from_str(&json).unwrap();
        let rest_decoded: Vec<u8> = decoded.clone().collect();
        let rest: Vec<u8> = it.clone().collect();
        assert_eq!(rest, rest_decoded, "{json}");
        match it.next() {
            Some(x) => {
                assert_eq!(decoded.next(), Some(x));
                seen.push(x);
            }
            None => {
                assert_eq!(decoded.next(), None);
                break;
            }
        }
    }
    assert_eq!(seen, vec![253, 254, 255]);
}

// ---------------------------------------------------------------------------------------
// for loops in workflows
// ---------------------------------------------------------------------------------------

#[activity]
async fn echo_i64(_ctx: ActivityContext, x: i64) -> Result<i64, ActivityError> {
    Ok(x)
}

#[activity]
async fn echo_text(_ctx: ActivityContext, s: String) -> Result<String, ActivityError> {
    Ok(s)
}

#[workflow]
async fn range_shapes(ctx: WorkflowContext, n: i64) -> Result<String, WorkflowError> {
    let mut out: Vec<String> = Vec::new();
    // Negative bounds; the start is an expression with a type.
    for i in (n - 5) as i32..-1 {
        out.push(ctx.activity(echo_i64, i64::from(i)).await?.to_string());
    }
    out.push("|".into());
    // A range in parentheses, with a `for _`.
    let three: u32 = 3;
    for _ in (0..three) {
        out.push(ctx.activity(echo_text, "_".to_string()).await?);
    }
    out.push("|".into());
    // chars across the surrogate gap.
    for c in '\u{D7FE}'..='\u{E001}' {
        let code = ctx.activity(echo_i64, c as i64).await?;
        out.push(format!("{code:X}"));
        // `c` is live across the await: it must be kept in the state.
        out.push(c.len_utf8().to_string());
    }
    out.push("|".into());
    // `for mut x`: the binding is mutated after an await and read again.
    for mut x in 1u8..=2 {
        ctx.sleep(Duration::from_secs(1)).await?;
        x += 10;
        out.push(ctx.activity(echo_i64, i64::from(x)).await?.to_string());
    }
    out.push("|".into());
    // Labelled loops with `continue 'outer` after an await in the inner loop.
    'outer: for i in 0u32..3 {
        for j in 0u32..3 {
            let v = ctx.activity(echo_i64, i64::from(i * 10 + j)).await?;
            if j >= i {
                out.push(format!("{v}"));
                continue 'outer;
            }
        }
        out.push("never".into());
    }
    out.push("|".into());
    // An open range ended by `break`, with the item read after the await.
    for k in 100u64.. {
        ctx.sleep(Duration::from_secs(1)).await?;
        if k == 102 {
            out.push(format!("{k}"));
            break;
        }
    }
    Ok(out.join(" "))
}

#[tokio::test(start_paused = true)]
async fn range_loops_with_negative_parenthesized_char_labelled_and_open_ranges() {
    let engine = Engine::builder()
        .in_memory()
        .register(range_shapes)
        .activity(echo_i64)
        .activity(echo_text)
        .build()
        .await
        .unwrap();
    let out = completed(run(&engine, range_shapes, "range-shapes", 2).await);
    assert_eq!(
        out,
        "-3 -2 | _ _ _ | D7FE 3 D7FF 3 E000 3 E001 3 | 11 12 | 0 11 22 | 102"
    );
}

/// With no machine cache every step decodes the snapshot, so every position of every range
/// loop above (negative, char, labelled, open) goes through serde and back.
#[tokio::test(start_paused = true)]
async fn range_loops_resume_from_their_snapshot_at_every_step() {
    let engine = Engine::builder()
        .in_memory()
        .cached_machines(0)
        .register(range_shapes)
        .activity(echo_i64)
        .activity(echo_text)
        .build()
        .await
        .unwrap();
    let out = completed(run(&engine, range_shapes, "range-shapes-uncached", 2).await);
    assert_eq!(
        out,
        "-3 -2 | _ _ _ | D7FE 3 D7FF 3 E000 3 E001 3 | 11 12 | 0 11 22 | 102"
    );
}

/// `for ip in a..=b` iterates on stable Rust (std implements `Step` for the IP address
/// types), and such a loop in a workflow compiled while loops collected their items. The
/// macro keeps any range as a `RangeIter<T>`, which iterates only `RangeItem` types, so the
/// address types must be range items too, or those workflows stop compiling.
#[test]
#[allow(clippy::assertions_on_constants)] // the constants are what the test checks
fn every_type_a_std_range_iterates_is_a_range_item() {
    use std::marker::PhantomData;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use workflow_core::__private::RangeItem;
    // `Probe::<T>::IS` is the inherent `true` when `T: RangeItem`, else the trait's `false`.
    struct Probe<T>(PhantomData<T>);
    #[allow(dead_code)]
    trait Fallback {
        const IS: bool = false;
    }
    impl<T> Fallback for Probe<T> {}
    #[allow(dead_code)]
    impl<T: RangeItem> Probe<T> {
        const IS: bool = true;
    }
    assert!(Probe::<u16>::IS && Probe::<char>::IS, "the probe works");
    // Both iterate on stable: `for ip in a..=b` is fine outside a workflow.
    let a = Ipv4Addr::new(10, 0, 0, 255);
    assert_eq!((a..=Ipv4Addr::new(10, 0, 1, 0)).count(), 2);
    assert_eq!((Ipv6Addr::LOCALHOST..=Ipv6Addr::LOCALHOST).count(), 1);
    assert!(Probe::<Ipv4Addr>::IS, "Ipv4Addr is not a RangeItem");
    assert!(Probe::<Ipv6Addr>::IS, "Ipv6Addr is not a RangeItem");
}

// ---------------------------------------------------------------------------------------
// Steps without the snapshot, and the bounded machine cache
// ---------------------------------------------------------------------------------------

#[activity]
async fn echo_u64(_ctx: ActivityContext, x: u64) -> Result<u64, ActivityError> {
    Ok(x)
}

#[workflow]
async fn many_steps(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let mut total: u64 = 0;
    for i in 0..n {
        total += ctx.activity(echo_u64, i).await?;
    }
    Ok(total)
}

/// A step asks the store to leave the snapshot out when the engine holds the machine of the
/// stored version. Another workflow's step may evict that machine from the bounded cache at
/// any moment; a step that checked the cache and took the machine later would then decode
/// the left-out (null) snapshot and mark a healthy workflow stuck with a `CorruptSnapshot`.
/// Real threads are needed for an eviction to land between the two, so this runs on a
/// multi-threaded runtime with many more workflows than cached machines.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_machine_evicted_by_another_step_is_never_decoded_from_a_left_out_snapshot() {
    const WORKFLOWS: u64 = 64;
    const STEPS: u64 = 300;
    let engine = Engine::builder()
        .in_memory()
        .cached_machines(8)
        .register(many_steps)
        .activity(echo_u64)
        .build()
        .await
        .unwrap();
    let client = engine.client();
    for i in 0..WORKFLOWS {
        client
            .start(many_steps, format!("evict-{i}"), STEPS)
            .await
            .unwrap();
    }
    let started = std::time::Instant::now();
    loop {
        let mut running = 0;
        for i in 0..WORKFLOWS {
            let d = client.describe(&format!("evict-{i}")).await.unwrap();
            assert!(d.stuck.is_none(), "evict-{i} is stuck: {:?}", d.stuck);
            if d.status == WorkflowStatus::Running {
                running += 1;
            } else {
                assert_eq!(d.result, Some(serde_json::json!(STEPS * (STEPS - 1) / 2)));
            }
        }
        if running == 0 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{running} workflows still running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Heartbeat writes in flight
// ---------------------------------------------------------------------------------------

#[activity]
async fn beat_then_fail(ctx: ActivityContext) -> Result<String, ActivityError> {
    let from: Option<String> = ctx.heartbeat_details();
    if from.is_none() {
        ctx.heartbeat("page 7")?;
        // Any await that completes at once (a channel, a quick I/O) before the failure.
        tokio::task::yield_now().await;
        return Err(ActivityError::retryable("connection reset"));
    }
    Ok(format!("resumed from {}", from.unwrap_or_default()))
}

#[workflow]
async fn beats(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let r = ctx
        .activity(beat_then_fail, ())
        .retry(RetryPolicy::default().with_initial_interval(Duration::from_secs(3600)))
        .await?;
    Ok(r)
}

/// The heartbeat an attempt made before it failed is in the store while the next attempt
/// waits in back-off, so that an engine that restarts meanwhile hands it to the retry.
/// Since heartbeat writes run beside the activity, the write of that beat may still be in
/// flight (or not yet polled) when the attempt ends: it must be finished, not dropped.
#[tokio::test(start_paused = true)]
async fn the_last_heartbeat_before_an_attempt_ends_is_stored() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::builder()
        .register(beats)
        .activity(beat_then_fail)
        .store_arc(store.clone())
        .build()
        .await
        .unwrap();
    engine.client().start(beats, "last-beat", ()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    // In back-off, an hour before the second attempt.
    let d = engine.client().describe("last-beat").await.unwrap();
    assert_eq!(d.tasks.len(), 1, "{d}");
    assert_eq!(
        d.tasks[0].heartbeat_details,
        Some(serde_json::json!("page 7")),
        "{d}"
    );
    assert!(d.tasks[0].last_heartbeat_ms.is_some(), "{d}");
    engine.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// SQLite: every write through the group committer
// ---------------------------------------------------------------------------------------

fn new_workflow(id: &str) -> workflow_core::NewWorkflow {
    workflow_core::NewWorkflow {
        id: id.to_string(),
        workflow_type: "review".to_string(),
        schema: 1,
        snapshot: serde_json::json!({}).into(),
        state_name: "Start".to_string(),
        input: serde_json::Value::Null,
        at_ms: 0,
        parent: None,
        lease: None,
    }
}

/// Queues `writes` behind a write lock held by another connection, so that the commit
/// thread takes them as one group once the lock is released; returns their results in
/// order, and how many transactions and writes the store counted meanwhile.
async fn in_one_group<T: Send + 'static>(
    path: &std::path::Path,
    store: &Arc<SqliteStore>,
    writes: Vec<BoxedWrite<T>>,
) -> (Vec<Result<T, StoreError>>, (u64, u64)) {
    let (tx_before, writes_before) = store.commit_stats();
    let blocker = rusqlite::Connection::open(path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // A first write takes the commit thread, which now waits for the lock ...
    let s = Arc::clone(store);
    let first = tokio::spawn(async move {
        workflow_core::Store::create_workflow(&*s, new_workflow("group-opener")).await
    });
    let waited = std::time::Instant::now();
    while store.commit_stats().0 == tx_before {
        assert!(waited.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // ... while these queue up behind it.
    let handles: Vec<_> = writes.into_iter().map(tokio::spawn).collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    blocker.execute_batch("ROLLBACK").unwrap();
    first.await.unwrap().unwrap();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.unwrap());
    }
    let (tx_after, writes_after) = store.commit_stats();
    (
        results,
        (tx_after - tx_before, writes_after - writes_before),
    )
}

/// One store write, to run in a group.
type BoxedWrite<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send>>;

/// Two creates of one id in the same group: one wins, the other is `AlreadyExists`, and
/// the refused one undoes only its own savepoint.
#[tokio::test(flavor = "multi_thread")]
async fn duplicate_creates_in_one_commit_group_give_already_exists_and_keep_the_rest() {
    use workflow_core::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let create = |id: &'static str| -> BoxedWrite<()> {
        let s = Arc::clone(&store);
        Box::pin(async move { s.create_workflow(new_workflow(id)).await })
    };
    let writes = vec![create("dup"), create("dup"), create("other")];
    let (results, (transactions, writes)) = in_one_group(&path, &store, writes).await;
    assert_eq!(
        (transactions, writes),
        (2, 4),
        "the three queued writes share a group"
    );
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let exists = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::AlreadyExists(id)) if id == "dup"))
        .count();
    assert_eq!((ok, exists), (2, 1), "{results:?}");
    assert!(results[2].is_ok(), "{results:?}");
    for id in ["dup", "other", "group-opener"] {
        let history = store.history(id).await.unwrap();
        assert_eq!(
            history.len(),
            1,
            "{id}: one WorkflowStarted, not two: {history:?}"
        );
    }
}

/// A write that fails for a reason of its own (here a damaged row: a status this build does
/// not know, reported as `Backend`) must not fail the unrelated writes that happen to share
/// its group's transaction: each was its own transaction before group commit.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_row_fails_only_the_write_that_touches_it_not_its_commit_group() {
    use workflow_core::{Event, Store};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflows.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    store
        .create_workflow(new_workflow("damaged"))
        .await
        .unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE workflows SET status = 'Sleeping' WHERE id = 'damaged'",
            [],
        )
        .unwrap();
    let s = Arc::clone(&store);
    let signal: BoxedWrite<()> = Box::pin(async move {
        let cancel = Event::CancelRequested { reason: "x".into() };
        s.enqueue_event("damaged", cancel).await.map(|_| ())
    });
    let s = Arc::clone(&store);
    let innocent: BoxedWrite<()> =
        Box::pin(async move { s.create_workflow(new_workflow("innocent")).await });
    let (results, (transactions, writes)) =
        in_one_group(&path, &store, vec![signal, innocent]).await;
    assert_eq!(
        (transactions, writes),
        (2, 3),
        "the two queued writes share a group"
    );
    assert!(
        matches!(&results[0], Err(StoreError::Backend(m)) if m.contains("damaged")),
        "{:?}",
        results[0]
    );
    assert!(results[1].is_ok(), "{:?}", results[1]);
    assert!(store.load_workflow("innocent").await.is_ok());
}

#[activity]
async fn beat_and_fail_at_once(ctx: ActivityContext) -> Result<String, ActivityError> {
    let from: Option<String> = ctx.heartbeat_details();
    if from.is_none() {
        ctx.heartbeat("page 9")?;
        // Fails in the same poll as the heartbeat (a parse error, say): no await between.
        return Err(ActivityError::retryable("bad page"));
    }
    Ok(format!("resumed from {}", from.unwrap_or_default()))
}

#[workflow]
async fn beats_at_once(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    let r = ctx
        .activity(beat_and_fail_at_once, ())
        .retry(RetryPolicy::default().with_initial_interval(Duration::from_secs(3600)))
        .await?;
    Ok(r)
}

/// The same when the attempt ends in the very poll that heartbeated: the beat's notification
/// is still pending when the activity's future completes (the `biased` select sees the end
/// first), so neither an in-flight write nor a folded beat stands for it.
#[tokio::test(start_paused = true)]
async fn a_heartbeat_in_the_poll_that_ends_the_attempt_is_stored() {
    let engine = Engine::builder()
        .in_memory()
        .register(beats_at_once)
        .activity(beat_and_fail_at_once)
        .build()
        .await
        .unwrap();
    engine
        .client()
        .start(beats_at_once, "last-beat-at-once", ())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let d = engine.client().describe("last-beat-at-once").await.unwrap();
    assert_eq!(d.tasks.len(), 1, "{d}");
    assert_eq!(
        d.tasks[0].heartbeat_details,
        Some(serde_json::json!("page 9")),
        "{d}"
    );
    engine.shutdown().await;
}
