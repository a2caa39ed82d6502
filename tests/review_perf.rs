//! Review of the performance work: `for` loops over ranges (`RangeIter`), steps that leave
//! the snapshot out when the machine is cached, the bounded machine cache, SQLite group
//! commit for every write, and heartbeat writes that no longer stop the activity.

// `for _ in (0..n)` is tested on purpose (rustc warns about it in plain Rust as well).
#![allow(unused_parens)]

use durable_workflows::testing::{completed, run};
use std::sync::Arc;
use workflow_core::__private::RangeIter;
use workflow_core::prelude::*;
use workflow_core::MemoryStore;

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
fn range_iter_yields_what_std_ranges_yield_at_the_edges() {
    // Integers: bounds at the type's limits, empty and single-item ranges, negatives.
    assert_eq!(via_range_iter(250u8..=u8::MAX), (250u8..=u8::MAX).collect::<Vec<_>>());
    assert_eq!(via_range_iter(u8::MAX..=u8::MAX), vec![u8::MAX]);
    assert_eq!(via_range_iter(0u8..u8::MAX).len(), 255);
    assert_eq!(via_range_iter(i8::MIN..=i8::MAX).len(), 256);
    assert_eq!(via_range_iter(-3i32..2), vec![-3, -2, -1, 0, 1]);
    assert_eq!(via_range_iter(i64::MAX - 1..=i64::MAX), vec![i64::MAX - 1, i64::MAX]);
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
    assert_eq!(via_range_iter('\u{10FFFE}'..), vec!['\u{10FFFE}', char::MAX]);
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
