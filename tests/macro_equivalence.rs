//! `#[workflow]` computes what plain Rust computes: workflows an ordinary user might write, each checked against what
//! the same code computes as plain Rust (`d(x)` stands for `ctx.activity(double, x).await?`).
//! Each case once failed (wrong result or generated code that did not compile) and is kept as
//! a regression test; shapes the macro rejects on purpose are kept in `#[cfg(any())]` modules
//! with the error they produce.

use durable_workflows::journal;
use durable_workflows::testing::{completed, logs, run, until_state};
use std::time::Duration;
use workflow_core::prelude::*;
use workflow_core::Workflow;

const LONG: Duration = Duration::from_secs(3600);

// ----- activities -------------------------------------------------------------------------

#[activity]
async fn double(_ctx: ActivityContext, x: i64) -> Result<i64, ActivityError> {
    Ok(x * 2)
}

#[activity]
async fn pair(_ctx: ActivityContext, x: i64) -> Result<(i64, String), ActivityError> {
    Ok((x, format!("n{x}")))
}

#[activity]
async fn echo(_ctx: ActivityContext, s: String) -> Result<String, ActivityError> {
    Ok(format!("{s}x"))
}

#[activity]
async fn maybe(_ctx: ActivityContext, x: i64) -> Result<Option<i64>, ActivityError> {
    Ok(if x > 0 { Some(x * 10) } else { None })
}

#[activity]
async fn fail_if_negative(_ctx: ActivityContext, x: i64) -> Result<i64, ActivityError> {
    if x < 0 {
        Err(ActivityError::non_retryable(format!("{x} is negative")))
    } else {
        Ok(x)
    }
}

/// Records that it ran (in the journal) and returns its input.
#[activity]
async fn note(ctx: ActivityContext, label: String) -> Result<String, ActivityError> {
    journal::write(&ctx.info().workflow_id, format!("note {label}"));
    Ok(label)
}

/// Plain-Rust stand-in for `ctx.activity(double, x).await?`.
fn d(x: i64) -> i64 {
    x * 2
}

// ----- shadowing --------------------------------------------------------------------------

#[workflow]
async fn shadow_chain(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let x: i64 = n;
    let x: i64 = ctx.activity(double, x).await?;
    let x: i64 = ctx.activity(double, x + 1).await?;
    Ok(x)
}

#[workflow]
async fn shadow_types(ctx: WorkflowContext, n: i64) -> Result<String, WorkflowError> {
    let x: i64 = n;
    let y: i64 = x;
    let x: String = format!("s{x}");
    let dd = ctx.activity(double, y).await?;
    let x: String = format!("{x}:{dd}");
    let e = ctx.activity(double, dd).await?;
    Ok(format!("{x}/{e}/{y}"))
}

#[workflow]
async fn shadow_in_branch(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let x: i64 = n;
    let mut t: i64 = 0;
    if n > 0 {
        let x: i64 = ctx.activity(double, x).await?;
        t += x;
    }
    Ok(t * 1000 + x)
}

#[workflow]
async fn shadow_in_loop(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut acc: i64 = 0;
    for i in 0..n {
        let v: i64 = ctx.activity(double, i).await?;
        let v: i64 = v + 1;
        ctx.sleep(Duration::from_secs(1)).await?;
        acc = acc * 10 + v;
    }
    Ok(acc)
}

// ----- loops --------------------------------------------------------------------------------

#[workflow]
async fn mutated_in_loop(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut count: i64 = 0;
    let mut last: i64 = 1;
    while count < n {
        last = ctx.activity(double, last + count).await?;
        count += 1;
    }
    Ok(last * 100 + count)
}

fn mutated_in_loop_ref(n: i64) -> i64 {
    let mut count: i64 = 0;
    let mut last: i64 = 1;
    while count < n {
        last = d(last + count);
        count += 1;
    }
    last * 100 + count
}

#[workflow]
async fn nested_loops(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut acc: i64 = 0;
    for i in 0..n {
        acc += ctx.activity(double, i).await?;
        let mut j: i64 = 0;
        while j < i {
            acc += ctx.activity(double, j).await? * 10;
            j += 1;
        }
        acc += 1000;
    }
    Ok(acc)
}

fn nested_loops_ref(n: i64) -> i64 {
    let mut acc: i64 = 0;
    for i in 0..n {
        acc += d(i);
        let mut j: i64 = 0;
        while j < i {
            acc += d(j) * 10;
            j += 1;
        }
        acc += 1000;
    }
    acc
}

#[workflow]
async fn labelled_jumps(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut acc: i64 = 0;
    'outer: for i in 0..n {
        let mut j: i64 = 0;
        loop {
            let v = ctx.activity(double, i * 10 + j).await?;
            j += 1;
            if v % 4 == 0 {
                acc += 1;
                continue;
            }
            if j > 3 {
                continue 'outer;
            }
            if v > 50 {
                break 'outer;
            }
            acc += v;
            if j >= 2 {
                break;
            }
        }
        acc += 1000;
    }
    Ok(acc)
}

fn labelled_jumps_ref(n: i64) -> i64 {
    let mut acc: i64 = 0;
    'outer: for i in 0..n {
        let mut j: i64 = 0;
        loop {
            let v = d(i * 10 + j);
            j += 1;
            if v % 4 == 0 {
                acc += 1;
                continue;
            }
            if j > 3 {
                continue 'outer;
            }
            if v > 50 {
                break 'outer;
            }
            acc += v;
            if j >= 2 {
                break;
            }
        }
        acc += 1000;
    }
    acc
}

/// Awaits in both loops, jumps taken right after each of them.
#[workflow]
async fn nested_awaits_both(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut acc: i64 = 0;
    let mut i: i64 = 0;
    'rows: while i < n {
        i += 1;
        let row = ctx.activity(double, i).await?;
        if row == 4 {
            continue 'rows;
        }
        let mut j: i64 = 0;
        'cols: loop {
            j += 1;
            let c = ctx.activity(double, row + j).await?;
            if c % 3 == 0 {
                continue 'cols;
            }
            if c > 20 {
                continue 'rows;
            }
            if j > 4 {
                break 'cols;
            }
            acc += c;
        }
        acc += 100;
        if acc > 10_000 {
            break 'rows;
        }
    }
    Ok(acc)
}

fn nested_awaits_both_ref(n: i64) -> i64 {
    let mut acc: i64 = 0;
    let mut i: i64 = 0;
    'rows: while i < n {
        i += 1;
        let row = d(i);
        if row == 4 {
            continue 'rows;
        }
        let mut j: i64 = 0;
        'cols: loop {
            j += 1;
            let c = d(row + j);
            if c % 3 == 0 {
                continue 'cols;
            }
            if c > 20 {
                continue 'rows;
            }
            if j > 4 {
                break 'cols;
            }
            acc += c;
        }
        acc += 100;
        if acc > 10_000 {
            break 'rows;
        }
    }
    acc
}

#[workflow]
async fn break_values(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut k: i64 = 0;
    let first_big: i64 = loop {
        let v = ctx.activity(double, k).await?;
        if v > n {
            break v;
        }
        k += 1;
    };
    let items: Vec<i64> = vec![3, 5, 8, 13];
    let found: i64 = 'search: loop {
        for it in items.clone() {
            let v = ctx.activity(double, it).await?;
            if v > first_big {
                break 'search v;
            }
        }
        break -1;
    };
    let counted: i64 = 'count: loop {
        let mut m: i64 = 0;
        loop {
            m += ctx.activity(double, 1).await?;
            if m >= 6 {
                break 'count m * 100;
            }
        }
    };
    Ok(first_big * 1_000_000 + found * 1000 + counted)
}

#[allow(clippy::never_loop)] // mirrors the workflow's shape
fn break_values_ref(n: i64) -> i64 {
    let mut k: i64 = 0;
    let first_big: i64 = loop {
        let v = d(k);
        if v > n {
            break v;
        }
        k += 1;
    };
    let items: Vec<i64> = vec![3, 5, 8, 13];
    let found: i64 = 'search: loop {
        for it in items.clone() {
            let v = d(it);
            if v > first_big {
                break 'search v;
            }
        }
        break -1;
    };
    let counted: i64 = 'count: loop {
        let mut m: i64 = 0;
        loop {
            m += d(1);
            if m >= 6 {
                break 'count m * 100;
            }
        }
    };
    first_big * 1_000_000 + found * 1000 + counted
}

#[workflow]
async fn return_from_loop(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut total: i64 = 0;
    for i in 0..100i64 {
        let mut j: i64 = 0;
        while j < 3 {
            let v = ctx.activity(fail_if_negative, n - i * 3 - j).await?;
            total += v;
            if v == 0 {
                return Ok(total * 1000 + i * 10 + j);
            }
            j += 1;
        }
    }
    Ok(-1)
}

fn return_from_loop_ref(n: i64) -> Result<i64, String> {
    let mut total: i64 = 0;
    for i in 0..100i64 {
        let mut j: i64 = 0;
        while j < 3 {
            let x = n - i * 3 - j;
            if x < 0 {
                return Err(format!("{x} is negative"));
            }
            total += x;
            if x == 0 {
                return Ok(total * 1000 + i * 10 + j);
            }
            j += 1;
        }
    }
    Ok(-1)
}

// ----- match / if let / else if -------------------------------------------------------------

#[workflow]
async fn match_guards(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut out: i64 = 0;
    for k in 0..n {
        let r: i64 = match k % 3 {
            0 if k > 2 => ctx.activity(double, k).await?,
            0 => {
                let a = ctx.activity(double, 1).await?;
                a + ctx.activity(double, a).await?
            }
            m if m == 1 && out > 3 => {
                let m: i64 = m;
                let dd = ctx.activity(double, m).await?;
                dd + m * 100
            }
            _ => -1,
        };
        out += r * (k + 1);
    }
    Ok(out)
}

fn match_guards_ref(n: i64) -> i64 {
    let mut out: i64 = 0;
    for k in 0..n {
        let r: i64 = match k % 3 {
            0 if k > 2 => d(k),
            0 => {
                let a = d(1);
                a + d(a)
            }
            m if m == 1 && out > 3 => {
                let dd = d(m);
                dd + m * 100
            }
            _ => -1,
        };
        out += r * (k + 1);
    }
    out
}

#[workflow]
async fn if_lets(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut acc: i64 = 0;
    if let Some(v) = ctx.activity(maybe, n).await? {
        let v: i64 = v;
        acc += ctx.activity(double, v).await? + v;
    } else {
        acc -= 1;
    }
    let opt: Option<i64> = if n > 1 { Some(n) } else { None };
    if let Some(w) = opt {
        let w: i64 = w;
        let dd = ctx.activity(double, w).await?;
        return Ok(acc * 1000 + dd + w);
    }
    Ok(acc)
}

fn if_lets_ref(n: i64) -> i64 {
    let mut acc: i64 = 0;
    if let Some(v) = (n > 0).then_some(n * 10) {
        acc += d(v) + v;
    } else {
        acc -= 1;
    }
    let opt: Option<i64> = if n > 1 { Some(n) } else { None };
    if let Some(w) = opt {
        return acc * 1000 + d(w) + w;
    }
    acc
}

#[workflow]
async fn else_ifs(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let r: i64 = if n < 0 {
        -1
    } else if ctx.activity(double, n).await? > 10 {
        ctx.activity(double, 100).await?
    } else if n == 2 {
        let a = ctx.activity(double, 7).await?;
        a + 1
    } else {
        0
    };
    let mut s: i64 = r;
    if s > 1000 {
        s = 1;
    } else if let Some(v) = ctx.activity(maybe, s).await? {
        s = ctx.activity(double, v).await?;
    } else if s == 0 {
        s = ctx.activity(double, -5).await?;
    }
    Ok(r * 10_000 + s)
}

fn else_ifs_ref(n: i64) -> i64 {
    let r: i64 = if n < 0 {
        -1
    } else if d(n) > 10 {
        d(100)
    } else if n == 2 {
        d(7) + 1
    } else {
        0
    };
    let mut s: i64 = r;
    if s > 1000 {
        s = 1;
    } else if let Some(v) = (s > 0).then_some(s * 10) {
        s = d(v);
    } else if s == 0 {
        s = d(-5);
    }
    r * 10_000 + s
}

// ----- blocks, tuples, moves ----------------------------------------------------------------

#[workflow]
async fn block_values(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let v: i64 = {
        let a = ctx.activity(double, n).await?;
        let b = ctx.activity(double, a).await?;
        a + b
    };
    let w: i64 = 'blk: {
        let c = ctx.activity(double, v).await?;
        if c > 100 {
            break 'blk c;
        }
        let e = ctx.activity(double, c).await?;
        e + 1
    };
    Ok(v * 10_000 + w)
}

/// An un-annotated `let` fed by control flow whose every path awaits (once gave `w: ()`
/// because code after a compound that never falls through was still emitted).
mod untyped_let_of_diverging_compound {
    use super::*;

    #[workflow]
    pub async fn untyped_block(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
        let w = {
            let a = ctx.activity(double, n).await?;
            a
        };
        Ok(w + 1)
    }

    #[workflow]
    pub async fn untyped_if(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
        let w = if n > 0 {
            ctx.activity(double, n).await?
        } else {
            ctx.activity(double, 1).await?
        };
        Ok(w + 1)
    }
}

fn block_values_ref(n: i64) -> i64 {
    let v: i64 = {
        let a = d(n);
        let b = d(a);
        a + b
    };
    let w = 'blk: {
        let c = d(v);
        if c > 100 {
            break 'blk c;
        }
        d(c) + 1
    };
    v * 10_000 + w
}

#[workflow]
async fn tuples(ctx: WorkflowContext, n: i64) -> Result<String, WorkflowError> {
    let (a, b): (i64, String) = ctx.activity(pair, n).await?;
    let (c, e) = ctx.activity(pair, a + 1).await?;
    let s = format!("{c}{e}");
    ctx.sleep(Duration::from_secs(1)).await?;
    Ok(format!("{a}-{b}-{s}"))
}

#[workflow]
async fn moved_inputs(ctx: WorkflowContext, s: String) -> Result<String, WorkflowError> {
    let first: String = s.clone();
    let r = ctx.activity(echo, s).await?;
    let r2 = ctx.activity(echo, r).await?;
    let joined: String = format!("{first}+{r2}");
    let r3 = ctx.activity(echo, joined).await?;
    Ok(r3)
}

// ----- on_cancel! ---------------------------------------------------------------------------

/// Sleeps `secs` seconds without heartbeating and returns `secs`.
#[activity]
async fn slow(ctx: ActivityContext, secs: u64) -> Result<u64, ActivityError> {
    journal::write(&ctx.info().workflow_id, "slow started");
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(secs)
}

/// `return` and `?` inside guarded code inside a loop; no cancel: values pass through.
#[workflow]
async fn guarded_return_in_loop(ctx: WorkflowContext, k: i64) -> Result<i64, WorkflowError> {
    on_cancel!(|c| {
        c.log("handler");
    });
    for i in 0..5i64 {
        let v = ctx.activity(fail_if_negative, k - i).await?;
        if v == 1 {
            return Ok(v * 100 + i);
        }
        ctx.sleep(Duration::from_secs(1)).await?;
    }
    Ok(-1)
}

/// Two handlers in the same body; the second reads a local bound before it.
#[workflow]
async fn two_handlers(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    on_cancel!(|c| {
        c.log("first");
    });
    let a = ctx.activity(double, n).await?;
    on_cancel!(|c| {
        c.log(format!("second {a}"));
        c.sleep(Duration::from_secs(1)).await.ok();
        c.log("second done");
    });
    ctx.sleep(LONG).await?;
    Ok(a)
}

/// `on_cancel!` guarding the rest of an `if` branch; code after the `if` still runs.
#[workflow]
async fn handler_in_if(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut r: i64 = 0;
    if n > 0 {
        on_cancel!(|c| {
            c.log(format!("undo {n} {r}"));
        });
        r = ctx.activity(double, n).await?;
        let slept = ctx.sleep(LONG).await;
        r += if slept.is_ok() { 1 } else { 1000 };
    }
    let after = ctx.disconnected().activity(double, r).await?;
    Ok(after)
}

/// A handler that awaits several times and reads locals declared (and updated) before it.
#[workflow]
async fn busy_handler(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let name: String = format!("job{n}");
    let mut progress: i64 = 0;
    on_cancel!(|c| {
        let a = c.activity(note, format!("{name} at {progress}")).await;
        c.sleep(Duration::from_secs(5)).await.ok();
        let b = c.activity(note, format!("{name} second")).await;
        let x = c.activity(double, progress).await.unwrap_or(-1);
        c.log(format!("{} {} {x}", a.is_ok(), b.is_ok()));
    });
    loop {
        progress += 1;
        ctx.sleep(Duration::from_secs(10)).await?;
        if progress == n {
            break;
        }
    }
    Ok(progress)
}

/// A tail `loop` whose body awaits and that is left only through `return` (its type is `!`;
/// the rebuilt loop once had type `()`).
mod tail_loop_left_by_return {
    use super::*;

    #[workflow]
    pub async fn tail_loop(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
        let mut p: i64 = 0;
        loop {
            p += 1;
            ctx.sleep(Duration::from_secs(1)).await?;
            if p == n {
                return Ok(p);
            }
        }
    }
}

/// A handler per loop iteration reading the loop variable; `return` from inside.
#[workflow]
async fn handler_per_item(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut sum: i64 = 0;
    for i in 0..n {
        on_cancel!(|c| {
            c.log(format!("undo {i} sum {sum}"));
        });
        let v = ctx.activity(double, i).await?;
        sum += v;
        if sum > 100 {
            return Ok(-sum);
        }
        ctx.sleep(Duration::from_secs(10)).await?;
    }
    Ok(sum)
}

/// `?` on an awaited value in an `if` condition inside guarded code.
#[workflow]
async fn guarded_if_condition(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    on_cancel!(|c| {
        c.log("handler ran");
    });
    if ctx.activity(slow, 600).await? > 0 {
        let v = ctx.activity(double, n).await?;
        return Ok(v);
    }
    Ok(0)
}

/// `?` on an awaited value in a `match` scrutinee inside guarded code.
#[workflow]
async fn guarded_match_scrutinee(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    on_cancel!(|c| {
        c.log("handler ran");
    });
    let r: i64 = match ctx.activity(slow, 600).await? {
        0 => 0,
        _ => ctx.activity(double, n).await?,
    };
    Ok(r)
}

/// Same, with the `?` as a statement of its own: the handler runs (reference behaviour).
#[workflow]
async fn guarded_statement(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    on_cancel!(|c| {
        c.log("handler ran");
    });
    let s = ctx.activity(slow, 600).await?;
    if s > 0 {
        let v = ctx.activity(double, n).await?;
        return Ok(v);
    }
    Ok(0)
}

// ----- shadowing: a dead inner binding hides a live outer one -------------------------------

/// Rejected on purpose: a binding still needed after an await while a later binding of the
/// same name hides it at the await; the workflow could not save it. The error, at the outer
/// binding: "`x` is still needed after the await of the activity `double`, but another `x`
/// declared later hides it there, so the workflow cannot save it; rename one of them".
#[cfg(any())]
mod rejected_hidden_shadows {
    use super::*;

    /// `x` of the outer block is live at the await, but at the await an inner `x` shadows
    /// it; the suspension stores whatever `x` names there (the inner one) as the outer `x`.
    #[workflow]
    async fn shadow_in_block_hides_live_outer(
        ctx: WorkflowContext,
        n: i64,
    ) -> Result<i64, WorkflowError> {
        let x: i64 = n;
        let y: i64 = {
            let x: i64 = x * 10;
            let a = ctx.activity(double, x).await?;
            a + 1
        };
        Ok(x * 1000 + y)
    }

    /// In a loop: the next iteration's `x + 1` must read the outer `x`.
    #[workflow]
    async fn shadow_in_loop_hides_live_outer(
        ctx: WorkflowContext,
        n: i64,
    ) -> Result<i64, WorkflowError> {
        let x: i64 = n;
        let mut acc: i64 = 0;
        for _ in 0..3i64 {
            let x: i64 = x + 1;
            acc = acc * 100 + x;
            ctx.sleep(Duration::from_secs(1)).await?;
        }
        Ok(acc)
    }

    /// With a handler: the handler reads the `x` in scope at `on_cancel!`.
    #[workflow]
    async fn shadow_after_handler(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
        let x: i64 = n;
        on_cancel!(|c| {
            c.log(format!("x = {x}"));
        });
        let x: i64 = x * 100;
        let _ = ctx.activity(double, x).await?;
        ctx.sleep(LONG).await?;
        Ok(0)
    }
}

/// `x = ..` overwrites `x` without reading it: a value moved into an activity and then
/// replaced, or a deferred initialisation, is not stored (it once was, and did not compile).
mod assignment_counts_as_read {
    use super::*;

    #[workflow]
    pub async fn reassign_moved(
        ctx: WorkflowContext,
        start: String,
    ) -> Result<String, WorkflowError> {
        let mut s: String = start;
        let r = ctx.activity(echo, s).await?;
        s = r;
        Ok(s)
    }

    #[workflow]
    pub async fn reassign_moved_in_loop(
        ctx: WorkflowContext,
        start: String,
    ) -> Result<String, WorkflowError> {
        let mut s: String = start;
        for _ in 0..3i64 {
            let r = ctx.activity(echo, s).await?;
            s = r;
        }
        Ok(s)
    }

    #[workflow]
    pub async fn deferred_init(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
        let total: i64;
        let a = ctx.activity(double, n).await?;
        total = a + 1;
        Ok(total)
    }
}

/// Rejected on purpose: `on_cancel!` in a block whose value is used (the guarded code is the
/// rest of the block and must not produce a value); the type error points at `on_cancel!`.
#[cfg(any())]
mod handler_in_value_block {
    use super::*;

    #[workflow]
    async fn region_value(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
        let r: i64 = if n > 0 {
            on_cancel!(|c| {
                c.log("undo");
            });
            ctx.activity(double, n).await?
        } else {
            0
        };
        Ok(r + 1)
    }
}

// ----- more loops, hoisting, tails ----------------------------------------------------------

#[activity]
async fn list(_ctx: ActivityContext, x: i64) -> Result<Vec<i64>, ActivityError> {
    Ok((0..x).collect())
}

/// Awaited temporaries live across the next await of the same expression.
#[workflow]
async fn tuple_temps(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let t = (
        ctx.activity(double, n).await?,
        ctx.activity(double, n + 1).await?,
    );
    let s = ctx.activity(double, n).await? + ctx.activity(double, 1).await?;
    Ok(t.0 * 1000 + t.1 * 10 + s)
}

#[workflow]
async fn iterate_awaited_list(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut acc: i64 = 0;
    let xs = ctx.activity(list, n).await?;
    for x in xs {
        acc += ctx.activity(double, x).await?;
    }
    let l = ctx.activity(echo, "ab".to_string()).await?.len();
    Ok(acc * 10 + l as i64)
}

#[workflow]
async fn while_condition_awaits(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut i: i64 = 0;
    let mut hits: i64 = 0;
    while ctx.activity(double, i).await? < n {
        i += 1;
        if i % 2 == 0 {
            continue;
        }
        hits += ctx.activity(double, i).await?;
    }
    Ok(i * 1000 + hits)
}

fn while_condition_awaits_ref(n: i64) -> i64 {
    let mut i: i64 = 0;
    let mut hits: i64 = 0;
    while d(i) < n {
        i += 1;
        if i % 2 == 0 {
            continue;
        }
        hits += d(i);
    }
    i * 1000 + hits
}

#[workflow]
async fn match_in_loop(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut k: i64 = n;
    let mut steps: i64 = 0;
    let res: i64 = loop {
        steps += 1;
        if steps > 20 {
            break -2;
        }
        let v = ctx.activity(double, k).await?;
        match v {
            0 => break -1,
            x if x > 100 => {
                let y = ctx.activity(double, x).await?;
                if y > 1000 {
                    break ctx.activity(double, y).await?;
                }
                k = y / 7;
            }
            x if x % 3 == 0 => {
                k = x / 3 + 1;
                continue;
            }
            _ => {
                k = v + 5;
            }
        }
        k += 1;
    };
    Ok(res * 100 + steps)
}

fn match_in_loop_ref(n: i64) -> i64 {
    let mut k: i64 = n;
    let mut steps: i64 = 0;
    let res: i64 = loop {
        steps += 1;
        if steps > 20 {
            break -2;
        }
        let v = d(k);
        match v {
            0 => break -1,
            x if x > 100 => {
                let y = d(x);
                if y > 1000 {
                    break d(y);
                }
                k = y / 7;
            }
            x if x % 3 == 0 => {
                k = x / 3 + 1;
                continue;
            }
            _ => {
                k = v + 5;
            }
        }
        k += 1;
    };
    res * 100 + steps
}

/// Labelled jumps from a loop without awaits inside a resumed iteration.
#[workflow]
async fn plain_inner_jumps(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let mut acc: i64 = 0;
    let items: Vec<i64> = vec![1, 2, 3, 4, 5, 6];
    'outer: for it in items {
        let v = ctx.activity(double, it).await?;
        for j in 0..v {
            if j == n {
                continue 'outer;
            }
            if j * it > 20 {
                break 'outer;
            }
            acc += j;
        }
        acc += 1000;
    }
    Ok(acc)
}

fn plain_inner_jumps_ref(n: i64) -> i64 {
    let mut acc: i64 = 0;
    let items: Vec<i64> = vec![1, 2, 3, 4, 5, 6];
    'outer: for it in items {
        let v = d(it);
        for j in 0..v {
            if j == n {
                continue 'outer;
            }
            if j * it > 20 {
                break 'outer;
            }
            acc += j;
        }
        acc += 1000;
    }
    acc
}

#[workflow]
async fn unit_result(ctx: WorkflowContext, n: i64) -> Result<(), WorkflowError> {
    if n > 0 {
        ctx.sleep(Duration::from_secs(1)).await?;
    }
    Ok(())
}

#[workflow]
async fn return_await_directly(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    for i in 0..n {
        if i == 2 {
            return ctx.activity(double, i * 100).await;
        }
        ctx.sleep(Duration::from_secs(1)).await?;
    }
    ctx.activity(double, -1).await
}

#[workflow]
async fn guarded_tail_match(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    on_cancel!(|c| {
        c.log("h");
    });
    match n {
        0 => Ok(0),
        1 => ctx.activity(double, 1).await,
        _ => {
            let a = ctx.activity(double, n).await?;
            Ok(a + 1)
        }
    }
}

/// A retry loop left only through `continue 'outer`.
#[workflow]
async fn retry_pattern(ctx: WorkflowContext, n: i64) -> Result<i64, WorkflowError> {
    let items: Vec<i64> = vec![3, 1, 2];
    let mut acc: i64 = 0;
    'outer: for item in items {
        let mut k: i64 = item - n;
        loop {
            let r = ctx.activity(fail_if_negative, k).await;
            if let Ok(v) = r {
                acc = acc * 10 + v;
                continue 'outer;
            }
            k += 1;
            ctx.sleep(Duration::from_secs(1)).await?;
        }
    }
    Ok(acc)
}

// ----- helpers ------------------------------------------------------------------------------

async fn engine() -> Engine {
    Engine::builder()
        .in_memory()
        .register(shadow_chain)
        .register(shadow_types)
        .register(shadow_in_branch)
        .register(shadow_in_loop)
        .register(mutated_in_loop)
        .register(nested_loops)
        .register(labelled_jumps)
        .register(nested_awaits_both)
        .register(break_values)
        .register(return_from_loop)
        .register(match_guards)
        .register(if_lets)
        .register(else_ifs)
        .register(block_values)
        .register(tuples)
        .register(moved_inputs)
        .register(guarded_return_in_loop)
        .register(two_handlers)
        .register(handler_in_if)
        .register(busy_handler)
        .register(handler_per_item)
        .register(guarded_if_condition)
        .register(guarded_match_scrutinee)
        .register(guarded_statement)
        .register(tuple_temps)
        .register(iterate_awaited_list)
        .register(while_condition_awaits)
        .register(match_in_loop)
        .register(plain_inner_jumps)
        .register(unit_result)
        .register(return_await_directly)
        .register(guarded_tail_match)
        .activity(list)
        .register(retry_pattern)
        .register(untyped_let_of_diverging_compound::untyped_block)
        .register(untyped_let_of_diverging_compound::untyped_if)
        .register(tail_loop_left_by_return::tail_loop)
        .register(assignment_counts_as_read::reassign_moved)
        .register(assignment_counts_as_read::reassign_moved_in_loop)
        .register(assignment_counts_as_read::deferred_init)
        .activity(slow)
        .activity(double)
        .activity(pair)
        .activity(echo)
        .activity(maybe)
        .activity(fail_if_negative)
        .activity(note)
        .build()
        .await
        .unwrap()
}

// ----- tests --------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn shadowing_across_awaits() {
    let e = engine().await;
    assert_eq!(completed(run(&e, shadow_chain, "sh1", 3).await), 14);
    assert_eq!(
        completed(run(&e, shadow_types, "sh2", 3).await),
        "s3:6/12/3"
    );
    assert_eq!(completed(run(&e, shadow_in_branch, "sh3", 4).await), 8004);
    assert_eq!(completed(run(&e, shadow_in_branch, "sh4", -4).await), -4);
    assert_eq!(completed(run(&e, shadow_in_loop, "sh5", 3).await), 135);
}

#[tokio::test(start_paused = true)]
async fn loops_with_awaits() {
    let e = engine().await;
    for n in [0, 1, 3, 5] {
        assert_eq!(
            completed(run(&e, mutated_in_loop, &format!("ml{n}"), n).await),
            mutated_in_loop_ref(n)
        );
        assert_eq!(
            completed(run(&e, nested_loops, &format!("nl{n}"), n).await),
            nested_loops_ref(n)
        );
        assert_eq!(
            completed(run(&e, labelled_jumps, &format!("lj{n}"), n).await),
            labelled_jumps_ref(n),
            "labelled_jumps({n})"
        );
        assert_eq!(
            completed(run(&e, nested_awaits_both, &format!("nb{n}"), n).await),
            nested_awaits_both_ref(n),
            "nested_awaits_both({n})"
        );
    }
    for n in [0, 5, 9, 30] {
        assert_eq!(
            completed(run(&e, break_values, &format!("bv{n}"), n).await),
            break_values_ref(n),
            "break_values({n})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn return_and_question_mark_in_loops() {
    let e = engine().await;
    for n in [0, 4, 7, 8] {
        let out = run(&e, return_from_loop, &format!("rl{n}"), n).await;
        assert_eq!(completed(out), return_from_loop_ref(n).unwrap(), "n = {n}");
    }
}

#[tokio::test(start_paused = true)]
async fn match_if_let_else_if() {
    let e = engine().await;
    for n in [0, 1, 2, 4, 7] {
        assert_eq!(
            completed(run(&e, match_guards, &format!("mg{n}"), n).await),
            match_guards_ref(n),
            "match_guards({n})"
        );
    }
    for n in [-3, 0, 1, 2, 5] {
        assert_eq!(
            completed(run(&e, if_lets, &format!("il{n}"), n).await),
            if_lets_ref(n),
            "if_lets({n})"
        );
        assert_eq!(
            completed(run(&e, else_ifs, &format!("ei{n}"), n).await),
            else_ifs_ref(n),
            "else_ifs({n})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn blocks_tuples_moves() {
    let e = engine().await;
    for n in [1, 5, 20] {
        assert_eq!(
            completed(run(&e, block_values, &format!("bk{n}"), n).await),
            block_values_ref(n),
            "block_values({n})"
        );
    }
    assert_eq!(completed(run(&e, tuples, "tu1", 4).await), "4-n4-5n5");
    assert_eq!(
        completed(run(&e, moved_inputs, "mv1", "a".to_string()).await),
        "a+axxx"
    );
}

#[tokio::test(start_paused = true)]
async fn on_cancel_without_cancel_passes_values_through() {
    let e = engine().await;
    let c = e.client();
    // k = 3: v = 3, 2, 1 → returns 1 * 100 + 2.
    assert_eq!(
        completed(run(&e, guarded_return_in_loop, "gr1", 3).await),
        102
    );
    // k = 10: never 1 → -1.
    assert_eq!(
        completed(run(&e, guarded_return_in_loop, "gr2", 10).await),
        -1
    );
    // k = 0: i = 1 → -1 is negative: fails through `?`.
    match run(&e, guarded_return_in_loop, "gr3", 0).await {
        Outcome::Failed(err) => assert!(err.to_string().contains("-1 is negative"), "{err}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(
        completed(run(&e, handler_in_if, "hi1", 3).await),
        2 * (6 + 1)
    );
    assert_eq!(completed(run(&e, handler_in_if, "hi2", -3).await), 0);
    assert_eq!(completed(run(&e, handler_per_item, "hp1", 3).await), 6);
    assert_eq!(completed(run(&e, handler_per_item, "hp2", 60).await), -110);
    assert_eq!(completed(run(&e, busy_handler, "bh1", 2).await), 2);
    for id in ["gr1", "gr2", "gr3", "hi1", "hi2", "hp1", "hp2", "bh1"] {
        assert!(logs(&c.history(id).await.unwrap()).is_empty(), "{id}");
    }
}

#[tokio::test(start_paused = true)]
async fn two_handlers_run_innermost_first() {
    let e = engine().await;
    let c = e.client();
    let id = "two-h";
    let r = c.start(two_handlers, id, 3).await.unwrap();
    until_state(&c, id, "Sleep").await;
    c.cancel(id, "").await.unwrap();
    let out = r.outcome().await.unwrap();
    assert!(matches!(out, Outcome::Canceled(_)), "{out:?}");
    assert_eq!(
        logs(&c.history(id).await.unwrap()),
        ["second 6", "second done", "first"]
    );
}

#[tokio::test(start_paused = true)]
async fn handler_in_if_branch_runs_then_code_after_the_if() {
    let e = engine().await;
    let c = e.client();
    let id = "h-if";
    let r = c.start(handler_in_if, id, 3).await.unwrap();
    until_state(&c, id, "Sleep").await;
    c.cancel(id, "").await.unwrap();
    // The sleep fails (r = 6 + 1000), the branch ends normally, its handler runs (seeing r),
    // then the disconnected activity after the `if` doubles r.
    assert_eq!(completed(r.outcome().await.unwrap()), 2012);
    assert_eq!(logs(&c.history(id).await.unwrap()), ["undo 3 1006"]);
}

#[tokio::test(start_paused = true)]
async fn handler_awaiting_several_times_sees_current_locals() {
    let e = engine().await;
    let c = e.client();
    let id = "busy-h";
    let r = c.start(busy_handler, id, 100).await.unwrap();
    tokio::time::sleep(Duration::from_secs(25)).await; // progress = 3
    c.cancel(id, "").await.unwrap();
    let out = r.outcome().await.unwrap();
    assert!(matches!(out, Outcome::Canceled(_)), "{out:?}");
    assert_eq!(
        journal::lines(id),
        ["note job100 at 3", "note job100 second"]
    );
    assert_eq!(logs(&c.history(id).await.unwrap()), ["true true 6"]);
}

#[tokio::test(start_paused = true)]
async fn handler_per_loop_iteration_sees_loop_variable() {
    let e = engine().await;
    let c = e.client();
    let id = "per-item";
    let r = c.start(handler_per_item, id, 5).await.unwrap();
    tokio::time::sleep(Duration::from_secs(15)).await; // second iteration: i = 1, sum = 2
    c.cancel(id, "").await.unwrap();
    let out = r.outcome().await.unwrap();
    assert!(matches!(out, Outcome::Canceled(_)), "{out:?}");
    assert_eq!(logs(&c.history(id).await.unwrap()), ["undo 1 sum 2"]);
}

async fn cancel_during_slow<W: Workflow<Input = i64, Output = i64, Error = WorkflowError>>(
    e: &Engine,
    wf: W,
    id: &str,
) -> Vec<String> {
    let c = e.client();
    let r = c.start(wf, id, 4).await.unwrap();
    assert!(journal::wait_for(id, "slow started", Duration::from_secs(10)).await);
    c.cancel(id, "").await.unwrap();
    let out = r.outcome().await.unwrap();
    assert!(matches!(out, Outcome::Canceled(_)), "{out:?}");
    logs(&c.history(id).await.unwrap())
}

#[tokio::test(start_paused = true)]
async fn question_mark_in_statement_inside_guarded_code_runs_handler() {
    let e = engine().await;
    assert_eq!(
        cancel_during_slow(&e, guarded_statement, "g-stmt").await,
        ["handler ran"]
    );
    assert_eq!(
        completed(run(&e, guarded_statement, "g-stmt-ok", 4).await),
        8
    );
}

#[tokio::test(start_paused = true)]
async fn question_mark_in_if_condition_inside_guarded_code_runs_handler() {
    let e = engine().await;
    assert_eq!(
        completed(run(&e, guarded_if_condition, "g-if-ok", 4).await),
        8
    );
    assert_eq!(
        cancel_during_slow(&e, guarded_if_condition, "g-if").await,
        ["handler ran"]
    );
}

#[tokio::test(start_paused = true)]
async fn question_mark_in_match_scrutinee_inside_guarded_code_runs_handler() {
    let e = engine().await;
    assert_eq!(
        completed(run(&e, guarded_match_scrutinee, "g-m-ok", 4).await),
        8
    );
    assert_eq!(
        cancel_during_slow(&e, guarded_match_scrutinee, "g-m").await,
        ["handler ran"]
    );
}

#[tokio::test(start_paused = true)]
async fn untyped_let_of_control_flow_that_always_awaits() {
    use untyped_let_of_diverging_compound::*;
    let e = engine().await;
    assert_eq!(completed(run(&e, untyped_block, "ub", 4).await), 9);
    assert_eq!(completed(run(&e, untyped_if, "ui+", 4).await), 9);
    assert_eq!(completed(run(&e, untyped_if, "ui-", -4).await), 3);
}

#[tokio::test(start_paused = true)]
async fn tail_loop_left_only_by_return() {
    let e = engine().await;
    assert_eq!(
        completed(run(&e, tail_loop_left_by_return::tail_loop, "tl", 4).await),
        4
    );
}

#[tokio::test(start_paused = true)]
async fn overwritten_values_are_not_stored() {
    use assignment_counts_as_read::*;
    let e = engine().await;
    assert_eq!(
        completed(run(&e, reassign_moved, "ra", "a".to_string()).await),
        "ax"
    );
    assert_eq!(
        completed(run(&e, reassign_moved_in_loop, "ral", "b".to_string()).await),
        "bxxx"
    );
    assert_eq!(completed(run(&e, deferred_init, "di", 5).await), 11);
}

#[tokio::test(start_paused = true)]
async fn hoisting_tails_and_more_loops() {
    let e = engine().await;
    // (d(3), d(4)) = (6, 8); d(3) + d(1) = 8.
    assert_eq!(completed(run(&e, tuple_temps, "tt", 3).await), 6088);
    // list(4) = 0..4 → doubles sum to 12; "ab" echoed is "abx" (len 3).
    assert_eq!(
        completed(run(&e, iterate_awaited_list, "ial", 4).await),
        123
    );
    for n in [0, 1, 7, 20] {
        assert_eq!(
            completed(run(&e, while_condition_awaits, &format!("wc{n}"), n).await),
            while_condition_awaits_ref(n),
            "while_condition_awaits({n})"
        );
        assert_eq!(
            completed(run(&e, match_in_loop, &format!("mil{n}"), n).await),
            match_in_loop_ref(n),
            "match_in_loop({n})"
        );
        assert_eq!(
            completed(run(&e, plain_inner_jumps, &format!("pij{n}"), n).await),
            plain_inner_jumps_ref(n),
            "plain_inner_jumps({n})"
        );
    }
    completed(run(&e, unit_result, "ur", 1).await);
    assert_eq!(
        completed(run(&e, return_await_directly, "rad", 5).await),
        400
    );
    assert_eq!(
        completed(run(&e, return_await_directly, "rad1", 1).await),
        -2
    );
    assert_eq!(completed(run(&e, guarded_tail_match, "gtm0", 0).await), 0);
    assert_eq!(completed(run(&e, guarded_tail_match, "gtm1", 1).await), 2);
    assert_eq!(completed(run(&e, guarded_tail_match, "gtm5", 5).await), 11);
    // items 3, 1, 2 with n = 2: k starts at 1, -1, 0 and climbs to 0: 1, 0, 0.
    assert_eq!(completed(run(&e, retry_pattern, "rp", 2).await), 100);
}
