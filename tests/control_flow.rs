//! The macro compiles every supported control-flow shape into a machine that computes the same
//! result as the async fn would: sequences, `let` patterns, `?` and early `return`,
//! `if`/`else`, `match`, `loop`, `while`, `for`, and awaits in conditions, scrutinees and `let`
//! initialisers. A range `for` loop keeps a `RangeIter` in the state: it yields what std's
//! range yields at every edge, resumes from its serialized position, and every type a std
//! range iterates is a range item.

// `for _ in (0..n)` is tested on purpose (rustc warns about it in plain Rust as well; the
// `#[workflow]` macro does not pass an `#[allow]` on the function on to the code it makes).
#![allow(unused_parens)]

use durable_workflows::testing::{completed, run};
use serde::{Deserialize, Serialize};
use workflow_core::__private::RangeIter;
use workflow_core::prelude::*;
use workflow_core::Workflow;

#[activity]
async fn double(_ctx: ActivityContext, x: i64) -> Result<i64, ActivityError> {
    Ok(x * 2)
}

#[activity]
async fn pair(_ctx: ActivityContext, x: i64) -> Result<(i64, String), ActivityError> {
    Ok((x, format!("n{x}")))
}

#[activity]
async fn fail_if_negative(_ctx: ActivityContext, x: i64) -> Result<i64, ActivityError> {
    if x < 0 {
        Err(ActivityError::non_retryable(format!("{x} is negative")))
    } else {
        Ok(x)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Shape {
    Square(i64),
    Line { len: i64 },
    Dot,
}

#[workflow]
async fn branches(ctx: WorkflowContext, x: i64) -> Result<i64, WorkflowError> {
    let mut total: i64 = 0;
    if ctx.activity(double, x).await? > 10 {
        total += ctx.activity(double, 100).await?;
    } else if x == 0 {
        return Ok(-1);
    } else {
        let (n, label) = ctx.activity(pair, x).await?;
        total += n + label.len() as i64;
    }
    let y = if total > 150 {
        ctx.activity(double, 1).await?
    } else {
        0
    };
    Ok(total + y)
}

#[workflow]
async fn matching(ctx: WorkflowContext, shape: Shape) -> Result<i64, WorkflowError> {
    let area = match shape {
        Shape::Square(side) => {
            // Pattern bindings have no written type; name it to keep it across the await.
            let side: i64 = side;
            let d = ctx.activity(double, side).await?;
            d * side / 2
        }
        Shape::Line { len } => ctx.activity(double, len).await?,
        Shape::Dot => 0,
    };
    let tag = match ctx.activity(double, area).await? {
        0 => 1,
        n if n > 100 => ctx.activity(double, n).await? + 3,
        n => n,
    };
    Ok(tag)
}

#[workflow]
async fn loops(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut acc: i64 = 0;
    let mut i: i64 = 0;
    while i < n {
        acc += ctx.activity(double, i).await?;
        i += 1;
    }
    let items: Vec<i64> = vec![5, 6, 7];
    for item in items {
        if item == 6 {
            continue;
        }
        acc += ctx.activity(double, item).await?;
    }
    let mut k: i64 = 1;
    let last: i64 = loop {
        k = ctx.activity(double, k).await?;
        if k > 50 {
            break k;
        }
    };
    'outer: for a in 0..2i64 {
        for b in 0..3i64 {
            if ctx.activity(double, a * 10 + b).await? == 22 {
                break 'outer;
            }
            acc += 1;
        }
    }
    Ok(acc * 1000 + last)
}

#[workflow]
async fn early_exit(ctx: WorkflowContext, x: i64) -> Result<i64, WorkflowError> {
    let checked = ctx.activity(fail_if_negative, x).await?;
    for i in 0..10i64 {
        let d = ctx.activity(double, i).await?;
        if d >= checked {
            return Ok(i);
        }
    }
    Ok(-1)
}

#[workflow]
async fn drain(ctx: WorkflowContext, start: Vec<i64>) -> Result<i64, WorkflowError> {
    let mut stack: Vec<i64> = start;
    let mut sum: i64 = 0;
    while let Some(top) = stack.pop() {
        // `top` comes from a pattern; name its type to keep it across the await.
        let top: i64 = top;
        let d = ctx.activity(double, top).await?;
        if d > 10 {
            stack.push(d / 4);
        }
        sum += d;
    }
    Ok(sum)
}

#[workflow]
async fn no_input(ctx: WorkflowContext) -> Result<String, WorkflowError> {
    ctx.sleep(Duration::from_secs(5)).await?;
    Ok("done".to_string())
}

async fn engine() -> Engine {
    Engine::builder()
        .in_memory()
        .register(branches)
        .register(matching)
        .register(loops)
        .register(early_exit)
        .register(no_input)
        .register(drain)
        .activity(double)
        .activity(pair)
        .activity(fail_if_negative)
        .build()
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn await_in_if_condition_and_branches() {
    let e = engine().await;
    // double(8) = 16 > 10 → total = 200; 200 > 150 → y = 2.
    assert_eq!(completed(run(&e, branches, "b1", 8).await), 202);
    // double(3) = 6 → else-branch: pair(3) = (3, "n3") → 3 + 2 = 5; y = 0.
    assert_eq!(completed(run(&e, branches, "b2", 3).await), 5);
    // x == 0 → early return.
    assert_eq!(completed(run(&e, branches, "b3", 0).await), -1);
}

#[tokio::test(start_paused = true)]
async fn await_in_match_scrutinee_arms_and_guards() {
    let e = engine().await;
    // Square(4): d = 8, area = 16; double(16) = 32 → n = 32.
    assert_eq!(
        completed(run(&e, matching, "m1", Shape::Square(4)).await),
        32
    );
    // Line{60}: area = 120; double(120) = 240 > 100 → double(240) + 3 = 483.
    assert_eq!(
        completed(run(&e, matching, "m2", Shape::Line { len: 60 }).await),
        483
    );
    // Dot: area 0 → double(0) = 0 → 1.
    assert_eq!(completed(run(&e, matching, "m3", Shape::Dot).await), 1);
}

#[tokio::test(start_paused = true)]
async fn await_in_while_for_loop_and_labelled_break() {
    let e = engine().await;
    // while: 0+2+4 = 6; for 5,7: +10+14 = 30; loop: 1→2→4→...→64; nested:
    // a=0: b=0,1,2 → doubles 0,2,4 → +3; a=1: b=0 → 20 → +1, b=1 → 22 → break.
    assert_eq!(completed(run(&e, loops, "l1", 3).await), 34 * 1000 + 64);
}

#[tokio::test(start_paused = true)]
async fn await_in_while_let_body() {
    let e = engine().await;
    // pop 6 → 12 (> 10, push 3), pop 3 → 6, pop 1 → 2: 12 + 6 + 2 = 20.
    assert_eq!(completed(run(&e, drain, "w1", vec![1, 6]).await), 20);
}

#[tokio::test(start_paused = true)]
async fn question_mark_and_early_return() {
    let e = engine().await;
    assert_eq!(completed(run(&e, early_exit, "e1", 5).await), 3);
    match run(&e, early_exit, "e2", -5).await {
        Outcome::Failed(err) => assert!(err.to_string().contains("-5 is negative"), "{err}"),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn workflow_without_input() {
    let e = engine().await;
    assert_eq!(completed(run(&e, no_input, "n1", ()).await), "done");
}

#[test]
fn states_hold_only_live_locals() {
    let graph = branches::graph();
    let names: Vec<&str> = graph.states.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["Start", "Double", "Double2", "Pair", "Double3", "Finished"]
    );
    let fields = |name: &str| {
        graph
            .states
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .fields
            .clone()
    };
    // After the condition's await, `x` is still needed (else-if) and `total` is live.
    assert_eq!(fields("Double"), ["x", "total"]);
    // In the then-branch nothing but `total` survives.
    assert_eq!(fields("Double2"), ["total"]);
    // The last await needs only `total`.
    assert_eq!(fields("Double3"), ["total"]);
}

#[test]
fn schema_fingerprints_differ_between_state_layouts() {
    let all = [
        branches::SCHEMA,
        matching::SCHEMA,
        loops::SCHEMA,
        early_exit::SCHEMA,
        no_input::SCHEMA,
        drain::SCHEMA,
    ];
    let unique: std::collections::BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "{all:x?}");
}

#[activity]
async fn echo_u8(_ctx: ActivityContext, x: u8) -> Result<u8, ActivityError> {
    Ok(x)
}

#[activity]
async fn echo_char(_ctx: ActivityContext, c: char) -> Result<char, ActivityError> {
    Ok(c)
}

#[workflow]
async fn ranges(ctx: WorkflowContext, n: u64) -> Result<String, WorkflowError> {
    let mut out: String = String::new();
    // Inclusive up to the type's maximum: must stop after 255, not wrap or repeat it.
    for x in 250u8..=u8::MAX {
        let echoed = ctx.activity(echo_u8, x).await?;
        out.push_str(&format!("{echoed} "));
    }
    for c in 'a'..='c' {
        out.push(ctx.activity(echo_char, c).await?);
    }
    // An open range ends by `break`.
    for i in 7u64.. {
        if ctx.activity(double, i as i64).await? > 20 {
            out.push_str(&format!(" {i}"));
            break;
        }
    }
    // An empty range runs no iteration.
    for i in n..n {
        out.push_str(&format!(" never {i}"));
        ctx.sleep(Duration::from_secs(1)).await?;
    }
    Ok(out)
}

#[tokio::test(start_paused = true)]
async fn for_loops_over_ranges_yield_every_item_once() {
    let engine = Engine::builder()
        .in_memory()
        .register(ranges)
        .activity(echo_u8)
        .activity(echo_char)
        .activity(double)
        .build()
        .await
        .unwrap();
    let out = completed(run(&engine, ranges, "ranges", 3).await);
    assert_eq!(out, "250 251 252 253 254 255 abc 11");
}

#[workflow]
async fn long_range(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let mut total: u64 = 0;
    for i in 0..n {
        total += ctx.activity(double, i as i64).await? as u64;
    }
    Ok(total)
}

#[workflow]
async fn long_range_into_iter(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let mut total: u64 = 0;
    for i in (1..=n).into_iter() {
        total += ctx.activity(double, i as i64).await? as u64;
    }
    Ok(total)
}

/// A `for` loop over a range keeps its position in the state, not its remaining items: the
/// snapshot of a million-iteration loop is as small as that of a ten-iteration one.
#[test]
fn a_range_loop_keeps_its_position_not_its_items() {
    assert_flat_range_state::<long_range>();
    assert_flat_range_state::<long_range_into_iter>();
}

fn assert_flat_range_state<W: Workflow<Input = u64>>() {
    use workflow_core::{Command, Event, Instance, StepContext, WorkflowMachine};
    let snapshot_len = |n: u64| {
        let mut machine = W::start(n);
        let mut instance = Instance::default();
        let mut lens = Vec::new();
        let mut event = None;
        for _ in 0..5 {
            let cx = StepContext::new("w", instance, 0);
            if let Some(event) = event.take() {
                cx.apply(event);
            }
            let _ = machine.resume(&cx);
            let output = cx.finish();
            instance = output.instance;
            lens.push(serde_json::to_string(&machine).unwrap().len());
            let Some(Command::ScheduleActivity { op, .. }) = output.commands.into_iter().next()
            else {
                panic!("each step schedules the next activity");
            };
            event = Some(Event::ActivityCompleted {
                op,
                result: serde_json::json!(2),
            });
        }
        *lens.iter().max().unwrap()
    };
    let small = snapshot_len(10);
    let huge = snapshot_len(1_000_000);
    assert!(
        huge <= small + 10,
        "{}: a 1,000,000-item range stored {huge} bytes vs {small} for 10 items",
        W::NAME
    );
}

// ---------------------------------------------------------------------------------------
// RangeIter (what a range `for` loop keeps in the state) against std's ranges
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
// Range loops of every shape, resumed from the snapshot
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
