//! What workflow code sees: [`WorkflowContext`] and the operations it builds.
//!
//! Inside a `#[workflow]` the context is a cheap handle on the current step plus the scope it
//! stands for. Building an operation (`ctx.activity(..)`, `ctx.child(..)`, `ctx.sleep(..)`,
//! `ctx.cancel_external(..)`) does nothing by
//! itself; the generated state machine starts it where the source says `.await`, stores its
//! [`OpId`](crate::OpId) in the state, and reads the result in a later step.

use crate::step::{ScopeId, StepContext};
use crate::{
    Activity, ActivityCancellationType, ActivityOptions, ChildWorkflowCancellationType,
    LocalActivityOptions, ParentClosePolicy, RetryPolicy, Workflow,
};
use std::time::Duration;

/// The context of a running workflow, or of one of its scopes.
///
/// It is `Copy`: pass it around freely. A context belongs to one scope: the workflow's root
/// scope for the `ctx` parameter, a fresh disconnected scope for `ctx.disconnected()` and for
/// the context an `on_cancel!` handler receives.
///
/// Everything a workflow awaits starts here. Operations are methods: `ctx.activity(..)`,
/// `ctx.local_activity(..)`, `ctx.child(..)`, `ctx.sleep(..)`, `ctx.cancelled()`, `ctx.cancel_external(..)`,
/// `ctx.race(..)`, `ctx.join(..)`. Scopes, parallel branches, compensable blocks and
/// cancellation handlers are forms that `#[workflow]` compiles into nested state machines:
/// `ctx.cancellable(..)`, `ctx.non_cancellable(..)`, `ctx.with_timeout(..)`,
/// `ctx.parallel(..)`, `ctx.compensable(..)`, `ctx.compensate()`, `ctx.confirm()` and
/// `on_cancel!` exist only inside a `#[workflow]` function, not as methods. Inside a scope's or
/// a branch's async block, `ctx` is that scope's context, so what is started there belongs to
/// it. The rules every form follows are in [`semantics`](crate::semantics), cited below by
/// number.
///
/// | form | what it does | rules |
/// |---|---|---|
/// | `ctx.local_activity(f, input)` | an activity run by the worker stepping the workflow, without a task record | [R6.7](crate::semantics#r6-activities) |
/// | `ctx.cancellable(async { .. })` | a scope that can be cancelled on its own | [R3](crate::semantics#r3-scopes) |
/// | `ctx.cancel_scope()` | cancels the current scope from inside | [R3.2](crate::semantics#r3-scopes) |
/// | `ctx.non_cancellable(async { .. })` | a shield: a cancel from outside only fires its signal | [R3.3, R4.1](crate::semantics#r4-cleanup) |
/// | `ctx.with_timeout(d, async { .. })` | a cancellable scope cancelled after `d` | [R5](crate::semantics#r5-timeouts) |
/// | `ctx.disconnected()` | a context the workflow's cancel does not reach | [R4.1](crate::semantics#r4-cleanup) |
/// | `on_cancel!(\|cleanup\| { .. })` | runs when the guarded code is left cancelled | [R4.2](crate::semantics#r4-cleanup) |
/// | `ctx.cancelled()`, `ctx.is_cancel_requested()` | the scope's cancellation signal | [R1.6](crate::semantics#r1-delivering-a-cancel-request) |
/// | `.start()` | starts an operation now, returns an [`OpHandle`] to await later | [R3.1](crate::semantics#r3-scopes) |
/// | `ctx.cancellable(async { .. }).start()` | starts a scope beside the code, returns a [`ScopeHandle`] to await, race, join or `cancel(ctx)` | [R3.7](crate::semantics#r3-scopes) |
/// | `ctx.race(..)` | the first of several handles to finish | [R10](crate::semantics#r10-shared-operations) |
/// | `ctx.join(..)` | all of several handles | [R10](crate::semantics#r10-shared-operations) |
/// | `ctx.parallel(condition, [..])` | branches side by side with a completion condition | [R11](crate::semantics#r11-parallel-branches) |
/// | `ctx.compensable(..).compensate(..).confirm(..)` | a saga step with its undo and its confirmation | [R12](crate::semantics#r12-compensation) |
///
/// The examples below run on an in-memory engine and tokio's paused clock (expand the hidden
/// lines to see how), so their hours of timers pass at once.
///
/// # A cancellable scope: `ctx.cancellable(..)`
///
/// A cancel of the scope reaches what was started in it, and nothing outside it
/// ([R3](crate::semantics#r3-scopes)). The body yields a `Result`; a cancellation reaches it as
/// an error. Here the scope stops its own timer (public scenario 1):
///
/// ```
/// use workflow_core::prelude::*;
///
/// #[workflow]
/// async fn timer_in_a_scope(ctx: WorkflowContext) -> Result<String, WorkflowError> {
///     let waited: Result<(), WorkflowError> = ctx
///         .cancellable(async {
///             let timer = ctx.sleep(Duration::from_secs(60)).start();
///             ctx.cancel_scope();
///             timer.await
///         })
///         .await;
///     match waited {
///         Ok(()) => Ok("timer fired".to_string()),
///         Err(e) if e.is_cancellation() => Ok("timer cancelled".to_string()),
///         Err(e) => Err(e),
///     }
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(timer_in_a_scope).in_memory().build().await?;
/// # let run = engine.client().start(timer_in_a_scope, "t", ()).await?;
/// # assert_eq!(run.outcome().await?, Outcome::Completed("timer cancelled".to_string()));
/// # Ok(())
/// # }
/// ```
///
/// # Cancelling from inside: `ctx.cancel_scope()`
///
/// Cancels the current scope now: its pending operations get their cancel actions in this step
/// and what it starts from then on fails at once ([R3.2, R9](crate::semantics#r3-scopes)). The
/// enclosing scope goes on ([R3.4](crate::semantics#r3-scopes)):
///
/// ```
/// use workflow_core::prelude::*;
///
/// #[activity]
/// async fn count_to(ctx: ActivityContext, n: u64) -> Result<u64, ActivityError> {
///     for _ in 0..n {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///         ctx.heartbeat(())?;
///     }
///     Ok(n)
/// }
///
/// #[workflow]
/// async fn enough(ctx: WorkflowContext) -> Result<String, WorkflowError> {
///     let got: Result<String, WorkflowError> = ctx
///         .cancellable(async {
///             let extra = ctx.activity(count_to, 600).start();
///             let needed = ctx.activity(count_to, 2).await?;
///             ctx.cancel_scope(); // `extra` belongs to this scope: it is told to stop
///             let stopped = extra.await;
///             Ok(format!("{needed}, extra stopped: {}", stopped.is_err()))
///         })
///         .await;
///     ctx.sleep(Duration::from_secs(1)).await?; // the workflow's own scope is untouched
///     got
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(enough).activity(count_to).in_memory().build().await?;
/// # let run = engine.client().start(enough, "e", ()).await?;
/// # assert_eq!(run.outcome().await?, Outcome::Completed("2, extra stopped: true".to_string()));
/// # Ok(())
/// # }
/// ```
///
/// On the workflow's own `ctx` it cancels the root scope, which is not a cancel request: a
/// cancellation error that escapes then closes the workflow Failed
/// ([R2.3](crate::semantics#r2-final-status)).
///
/// # A shield: `ctx.non_cancellable(..)`
///
/// After the workflow is cancelled, operations started on `ctx` fail at once
/// ([R9](crate::semantics#r9-operations-in-a-cancelled-scope)); in a non-cancellable scope they
/// run to their end ([R3.3, R4.1](crate::semantics#r4-cleanup)). Its signal still fires, so
/// `ctx.is_cancel_requested()` inside it is true:
///
/// ```
/// use workflow_core::prelude::*;
/// # use workflow_core::EventKind;
///
/// #[activity]
/// async fn release(_ctx: ActivityContext, seat: String) -> Result<String, ActivityError> {
///     Ok(format!("released {seat}"))
/// }
///
/// #[workflow]
/// async fn hold_seat(ctx: WorkflowContext, seat: String) -> Result<String, WorkflowError> {
///     match ctx.sleep(Duration::from_secs(3600)).await {
///         Ok(()) => Ok(format!("{seat} kept")),
///         Err(e) => {
///             let released: Result<String, WorkflowError> = ctx
///                 .non_cancellable(async { ctx.activity(release, seat.clone()).await })
///                 .await;
///             ctx.log(released?);
///             Err(e) // a cancellation error after a cancel request: Canceled (R2.2)
///         }
///     }
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(hold_seat).activity(release).in_memory().build().await?;
/// # let client = engine.client();
/// # let run = client.start(hold_seat, "seat", "12A".to_string()).await?;
/// # tokio::time::sleep(Duration::from_secs(60)).await;
/// # client.cancel("seat", "customer left").await?;
/// # assert!(run.outcome().await?.is_canceled());
/// # let logs: Vec<String> = client.history("seat").await?.into_iter().filter_map(|e| match e.kind {
/// #     EventKind::Log { message } => Some(message),
/// #     _ => None,
/// # }).collect();
/// # assert_eq!(logs, ["released 12A"]);
/// # Ok(())
/// # }
/// ```
///
/// # A timeout: `ctx.with_timeout(..)`
///
/// A cancellable scope whose timer, started before the body's first operation, cancels it when
/// it fires ([R5.1](crate::semantics#r5-timeouts)). The timeout is a cancellation error; left
/// unhandled it closes the workflow Failed, since nobody cancelled the workflow
/// ([R5.2](crate::semantics#r5-timeouts)):
///
/// ```
/// use workflow_core::prelude::*;
///
/// #[activity]
/// async fn lookup(ctx: ActivityContext, key: String) -> Result<String, ActivityError> {
///     for _ in 0..60 {
///         tokio::time::sleep(Duration::from_secs(1)).await; // a slow service
///         ctx.heartbeat(())?;
///     }
///     Ok(format!("fresh {key}"))
/// }
///
/// #[workflow]
/// async fn fresh_or_cached(ctx: WorkflowContext, key: String) -> Result<String, WorkflowError> {
///     let fresh: Result<String, WorkflowError> = ctx
///         .with_timeout(Duration::from_secs(5), async {
///             ctx.activity(lookup, key.clone()).await
///         })
///         .await;
///     match fresh {
///         Ok(value) => Ok(value),
///         Err(e) if e.is_cancellation() => Ok(format!("cached {key}")),
///         Err(e) => Err(e),
///     }
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(fresh_or_cached).activity(lookup).in_memory().build().await?;
/// # let run = engine.client().start(fresh_or_cached, "k", "rates".to_string()).await?;
/// # assert_eq!(run.outcome().await?, Outcome::Completed("cached rates".to_string()));
/// # Ok(())
/// # }
/// ```
///
/// # A local activity: `ctx.local_activity(..)`
///
/// The same `#[activity]` function, run by the worker that steps the workflow without a task
/// record (Temporal's local activities, [R6.7](crate::semantics#r6-activities)): its start is
/// committed with the step that calls it and its result with the step that applies it;
/// attempts (10 s each by default) are retried in the worker and write nothing. A cancel of
/// its scope reaches the running function at once, without a heartbeat; `TryCancel` (the
/// default) and `Abandon` resolve the call at once, `WaitCancellationCompleted` when the
/// function ends. A crash before its result was committed runs it again (at least once):
///
/// ```
/// use workflow_core::prelude::*;
/// # use workflow_core::Store;
///
/// #[activity]
/// async fn exchange_rate(ctx: ActivityContext, currency: String) -> Result<u64, ActivityError> {
///     if ctx.attempt() == 1 {
///         return Err(ActivityError::retryable("rate service busy"));
///     }
///     Ok(if currency == "EUR" { 110 } else { 100 }) // cents per unit
/// }
///
/// #[workflow]
/// async fn convert(ctx: WorkflowContext, units: u64) -> Result<u64, WorkflowError> {
///     let rate = ctx
///         .local_activity(exchange_rate, "EUR".to_string())
///         .start_to_close_timeout(Duration::from_secs(2))
///         .retry(RetryPolicy::default().with_maximum_attempts(3))
///         .await?;
///     Ok(units * rate)
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(convert).activity(exchange_rate).in_memory().build().await?;
/// # let client = engine.client();
/// # let run = client.start(convert, "c", 3).await?;
/// # assert_eq!(run.outcome().await?, Outcome::Completed(330));
/// # let lines: Vec<String> = client.history("c").await?.iter().map(|e| e.kind.to_string()).collect();
/// # assert!(lines.contains(&"op#1 local activity `exchange_rate` completed at attempt 2 \
/// #     (earlier attempts failed: rate service busy)".to_string()), "{lines:?}");
/// # assert!(engine.store().tasks("c").await?.is_empty());
/// # Ok(())
/// # }
/// ```
///
/// # Cleanup on a disconnected context: `ctx.disconnected()`
///
/// A context with no parent scope: the workflow's cancel does not reach it, so cleanup started
/// on it runs to its end (Go's `NewDisconnectedContext`,
/// [R4.1](crate::semantics#r4-cleanup)):
///
/// ```
/// use workflow_core::prelude::*;
/// # use workflow_core::EventKind;
///
/// #[activity]
/// async fn upload(ctx: ActivityContext, file: String) -> Result<String, ActivityError> {
///     for _ in 0..600 {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///         ctx.heartbeat(())?;
///     }
///     Ok(format!("{file} uploaded"))
/// }
///
/// #[activity]
/// async fn remove_partial(_ctx: ActivityContext, file: String) -> Result<String, ActivityError> {
///     Ok(format!("removed the partial {file}"))
/// }
///
/// #[workflow]
/// async fn publish(ctx: WorkflowContext, file: String) -> Result<String, WorkflowError> {
///     match ctx.activity(upload, file.clone()).await {
///         Ok(done) => Ok(done),
///         Err(e) => {
///             let cleanup = ctx.disconnected();
///             let removed = cleanup.activity(remove_partial, file.clone()).await?;
///             cleanup.log(removed);
///             Err(e)
///         }
///     }
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(publish).activity(upload).activity(remove_partial)
/// #     .in_memory().build().await?;
/// # let client = engine.client();
/// # let run = client.start(publish, "p", "video.mp4".to_string()).await?;
/// # tokio::time::sleep(Duration::from_secs(3)).await;
/// # client.cancel("p", "").await?;
/// # assert!(run.outcome().await?.is_canceled());
/// # let logs: Vec<String> = client.history("p").await?.into_iter().filter_map(|e| match e.kind {
/// #     EventKind::Log { message } => Some(message),
/// #     _ => None,
/// # }).collect();
/// # assert_eq!(logs, ["removed the partial video.mp4"]);
/// # Ok(())
/// # }
/// ```
///
/// # A cancellation handler: `on_cancel!`
///
/// Guards the rest of the block it is written in (the workflow body, or a scope's or branch's
/// async block). When that code is left after its scope was cancelled, however it is left, the
/// handler runs first, on a fresh disconnected context; then the code leaves as it was leaving.
/// A handler cannot fail: it deals with its errors itself
/// ([R4.2](crate::semantics#r4-cleanup)). What it awaits can: an operation awaited in the
/// handler that resolves with an error is recorded on the workflow as a failure of its
/// cleanup (R4.3), shown by `describe`, `wf list` and
/// [`WorkflowRun::outcome_with_cleanup`](crate::WorkflowRun::outcome_with_cleanup):
///
/// ```
/// use workflow_core::prelude::*;
/// # use workflow_core::EventKind;
///
/// #[activity]
/// async fn refund(_ctx: ActivityContext, order: u64) -> Result<String, ActivityError> {
///     Ok(format!("refunded order {order}"))
/// }
///
/// #[workflow]
/// async fn ship(ctx: WorkflowContext, order: u64) -> Result<String, WorkflowError> {
///     on_cancel!(|cleanup| {
///         match cleanup.activity(refund, order).await {
///             Ok(note) => cleanup.log(note),
///             Err(e) => cleanup.log(format!("refund failed: {e}")),
///         }
///     });
///     ctx.sleep(Duration::from_secs(24 * 3600)).await?; // a cancel ends this with an error
///     Ok(format!("order {order} shipped"))
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(ship).activity(refund).in_memory().build().await?;
/// # let client = engine.client();
/// # let run = client.start(ship, "o", 7).await?;
/// # tokio::time::sleep(Duration::from_secs(60)).await;
/// # client.cancel("o", "customer asked").await?;
/// # assert!(run.outcome().await?.is_canceled());
/// # let logs: Vec<String> = client.history("o").await?.into_iter().filter_map(|e| match e.kind {
/// #     EventKind::Log { message } => Some(message),
/// #     _ => None,
/// # }).collect();
/// # assert_eq!(logs, ["refunded order 7"]);
/// # Ok(())
/// # }
/// ```
///
/// # Noticing a cancel: `ctx.cancelled()`
///
/// An operation that resolves when cancellation of this context's scope is requested (Go's
/// `ctx.Done()`); `ctx.is_cancel_requested()` reads the same signal without waiting, and
/// `ctx.cancel_reason()` gives the request's reason
/// ([R1.5, R1.6](crate::semantics#r1-delivering-a-cancel-request)). A workflow that returns `Ok`
/// after a cancel closes Completed ([R2.1](crate::semantics#r2-final-status)):
///
/// ```
/// use workflow_core::prelude::*;
///
/// #[workflow]
/// async fn until_stopped(ctx: WorkflowContext) -> Result<String, WorkflowError> {
///     ctx.cancelled().await;
///     let reason = ctx.cancel_reason().unwrap_or_default();
///     Ok(format!("stopped ({reason}); requested: {}", ctx.is_cancel_requested()))
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(until_stopped).in_memory().build().await?;
/// # let client = engine.client();
/// # let run = client.start(until_stopped, "u", ()).await?;
/// # client.cancel("u", "maintenance").await?;
/// # assert_eq!(
/// #     run.outcome().await?,
/// #     Outcome::Completed("stopped (maintenance); requested: true".to_string())
/// # );
/// # Ok(())
/// # }
/// ```
///
/// # Started now, awaited later: `.start()`
///
/// `.start()` on an activity, child, sleep, `ctx.cancelled()` or `ctx.cancel_external(..)`
/// starts it without waiting and returns an [`OpHandle`], a plain value kept in the workflow's
/// state. Started operations run at the same time; each belongs to the scope it was started in,
/// wherever it is awaited ([R3.1](crate::semantics#r3-scopes)):
///
/// ```
/// use workflow_core::prelude::*;
///
/// #[activity]
/// async fn price(_ctx: ActivityContext, item: String) -> Result<u64, ActivityError> {
///     tokio::time::sleep(Duration::from_secs(2)).await;
///     Ok(item.len() as u64)
/// }
///
/// #[workflow]
/// async fn basket(ctx: WorkflowContext, items: (String, String)) -> Result<u64, WorkflowError> {
///     let first = ctx.activity(price, items.0).start();
///     let second = ctx.activity(price, items.1).start(); // both run now
///     Ok(first.await? + second.await?)
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(basket).activity(price).in_memory().build().await?;
/// # let input = ("pear".to_string(), "plum".to_string());
/// # let run = engine.client().start(basket, "b", input).await?;
/// # assert_eq!(run.outcome().await?, Outcome::Completed(8));
/// # Ok(())
/// # }
/// ```
///
/// # A scope started now, awaited later: `ctx.cancellable(..).start()`
///
/// A scope's block can also run beside the code that starts it: `.start()` on
/// `ctx.cancellable(..)`, `ctx.non_cancellable(..)` or `ctx.with_timeout(..)` returns a
/// [`ScopeHandle`], awaited, raced or joined later, whose `cancel(ctx)` cancels the scope from
/// outside ([R3.7](crate::semantics#r3-scopes)). The handle needs its block's `Ok` type:
/// `let h: ScopeHandle<T> = ..`. See [`ScopeHandle`] for a workflow that runs two sequences
/// side by side, fails fast and lets a shielded audit finish.
///
/// # The first to finish: `ctx.race(..)`
///
/// Takes an array, a `Vec` or a tuple of handles and yields a [`Raced`]: which one finished
/// first (the one given first, if several finish in the same step) and its result. The others
/// are not cancelled: they belong to the scope that started them
/// ([R10](crate::semantics#r10-shared-operations)). Racing against `ctx.cancelled().start()`
/// notices a cancel without cancelling anything:
///
/// ```
/// use workflow_core::prelude::*;
///
/// #[activity]
/// async fn ask(_ctx: ActivityContext, question: String) -> Result<String, ActivityError> {
///     tokio::time::sleep(Duration::from_secs(20)).await;
///     Ok(format!("{question}: 42"))
/// }
///
/// #[workflow]
/// async fn patient(ctx: WorkflowContext, question: String) -> Result<String, WorkflowError> {
///     let answer = ctx.activity(ask, question).start();
///     let patience = ctx.sleep(Duration::from_secs(10)).start();
///     let first = ctx.race((answer, patience)).await?;
///     if let Some(reply) = first.get(answer) {
///         return reply;
///     }
///     ctx.log("no answer within 10 s; still waiting");
///     answer.await // the race did not cancel it
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(patient).activity(ask).in_memory().build().await?;
/// # let run = engine.client().start(patient, "q", "why".to_string()).await?;
/// # assert_eq!(run.outcome().await?, Outcome::Completed("why: 42".to_string()));
/// # Ok(())
/// # }
/// ```
///
/// # All of them: `ctx.join(..)`
///
/// Waits for every handle given (of any output types) and yields a [`Joined`], from which each
/// result is read back with its handle. Like a race, a join cancels nothing itself
/// ([R10](crate::semantics#r10-shared-operations)):
///
/// ```
/// use workflow_core::prelude::*;
///
/// #[activity]
/// async fn weigh(_ctx: ActivityContext, parcel: String) -> Result<u64, ActivityError> {
///     Ok(parcel.len() as u64)
/// }
///
/// #[workflow]
/// async fn weigh_and_wait(ctx: WorkflowContext) -> Result<String, WorkflowError> {
///     let weight = ctx.activity(weigh, "box".to_string()).start();
///     let pause = ctx.sleep(Duration::from_secs(1)).start();
///     let all = ctx.join((weight, pause)).await?;
///     let kilos = all.get(weight).unwrap_or(Err(WorkflowError::application("not joined")))?;
///     let paused = all.get(pause).unwrap_or(Err(WorkflowError::application("not joined")));
///     Ok(format!("{kilos} kg, paused: {}", paused.is_ok()))
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(weigh_and_wait).activity(weigh).in_memory().build().await?;
/// # let run = engine.client().start(weigh_and_wait, "w", ()).await?;
/// # assert_eq!(run.outcome().await?, Outcome::Completed("3 kg, paused: true".to_string()));
/// # Ok(())
/// # }
/// ```
///
/// # Parallel branches: `ctx.parallel(..)`
///
/// Every branch (an async block yielding `Result<(), WorkflowError>`) starts at once, as its own
/// nested state machine in its own cancellable scope, with its own copies of the outer locals it
/// uses. After each branch ends the condition is checked on a
/// [`ParallelProgress`](crate::ParallelProgress); once it holds, the branches still running are
/// cancelled (their `on_cancel!` handlers run) and the block yields a
/// [`ParallelOutcome`](crate::ParallelOutcome) (WF's `Parallel`,
/// [R11](crate::semantics#r11-parallel-branches)):
///
/// ```
/// use workflow_core::prelude::*;
/// # use workflow_core::EventKind;
///
/// #[workflow]
/// async fn first_branch_wins(ctx: WorkflowContext) -> Result<bool, WorkflowError> {
///     let outcome = ctx
///         .parallel(
///             |p| p.ended() >= 1,
///             [
///                 async {
///                     on_cancel!(|c| {
///                         c.log("Branch 1 canceled.");
///                     });
///                     ctx.log("Branch 1 starting.");
///                     ctx.sleep(Duration::from_secs(2)).await?;
///                     Ok(())
///                 },
///                 async {
///                     ctx.log("Branch 2 complete.");
///                     Ok(())
///                 },
///             ],
///         )
///         .await?;
///     Ok(outcome.condition_met)
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(first_branch_wins).in_memory().build().await?;
/// # let client = engine.client();
/// # let run = client.start(first_branch_wins, "f", ()).await?;
/// # assert_eq!(run.outcome().await?, Outcome::Completed(true));
/// # let logs: Vec<String> = client.history("f").await?.into_iter().filter_map(|e| match e.kind {
/// #     EventKind::Log { message } => Some(message),
/// #     _ => None,
/// # }).collect();
/// # assert_eq!(logs, ["Branch 1 starting.", "Branch 2 complete.", "Branch 1 canceled."]);
/// # Ok(())
/// # }
/// ```
///
/// # Compensable blocks: `ctx.compensable(..).compensate(..).confirm(..)`
///
/// A saga step (WF's `CompensableActivity`). The body runs as a cancellable scope; once it has
/// completed, its compensation and confirmation are kept, with copies of the locals they use.
/// If the workflow is cancelled or fails with an unhandled error, the compensations of the
/// completed blocks run in the reverse order of completion; if it completes, the confirmations
/// run; each on a fresh disconnected context after the workflow's code has returned. Awaiting
/// `ctx.compensate()` or `ctx.confirm()` runs them earlier, and compensating after confirming
/// is an error ([R12](crate::semantics#r12-compensation)):
///
/// ```
/// use workflow_core::prelude::*;
/// # use workflow_core::EventKind;
///
/// #[activity]
/// async fn airline(_ctx: ActivityContext, request: String) -> Result<String, ActivityError> {
///     Ok(format!("{request}: ok"))
/// }
///
/// #[workflow]
/// async fn book_trip(ctx: WorkflowContext, card_ok: bool) -> Result<String, WorkflowError> {
///     let trip: String = "LHR-JFK".to_string();
///     let reservation: Result<String, WorkflowError> = ctx
///         .compensable(async { ctx.activity(airline, format!("reserve {trip}")).await })
///         .compensate(async {
///             let done = ctx.activity(airline, format!("cancel {trip}")).await?;
///             ctx.log(done);
///             Ok(())
///         })
///         .confirm(async {
///             ctx.activity(airline, format!("confirm {trip}")).await?;
///             Ok(())
///         })
///         .await;
///     let reservation = reservation?;
///     if !card_ok {
///         return Err(WorkflowError::application("the card was declined"));
///     }
///     Ok(reservation)
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(book_trip).activity(airline).in_memory().build().await?;
/// # let client = engine.client();
/// # let run = client.start(book_trip, "declined", false).await?;
/// # assert!(run.outcome().await?.is_failed());
/// # let logs: Vec<String> = client.history("declined").await?.into_iter().filter_map(|e| {
/// #     match e.kind {
/// #         EventKind::Log { message } => Some(message),
/// #         _ => None,
/// #     }
/// # }).collect();
/// # assert!(logs.contains(&"cancel LHR-JFK: ok".to_string()), "{logs:?}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy)]
pub struct WorkflowContext<'a> {
    cx: &'a StepContext,
    scope: ScopeId,
}

impl<'a> WorkflowContext<'a> {
    pub(crate) fn new(cx: &'a StepContext, scope: ScopeId) -> Self {
        WorkflowContext { cx, scope }
    }

    pub(crate) fn step(&self) -> &'a StepContext {
        self.cx
    }

    /// The scope this context stands for.
    pub fn scope(&self) -> ScopeId {
        self.scope
    }

    /// The id the workflow was started with.
    pub fn workflow_id(&self) -> &'a str {
        self.cx.workflow_id()
    }

    /// Calls an activity. Await the result inside a `#[workflow]`; configure it first with
    /// the builder methods.
    ///
    /// ```
    /// use workflow_core::prelude::*;
    ///
    /// #[activity]
    /// async fn charge(ctx: ActivityContext, cents: u64) -> Result<String, ActivityError> {
    ///     ctx.heartbeat(cents)?;
    ///     Ok(format!("receipt for {cents}"))
    /// }
    ///
    /// #[workflow]
    /// async fn checkout(ctx: WorkflowContext, cents: u64) -> Result<String, WorkflowError> {
    ///     let receipt = ctx
    ///         .activity(charge, cents)
    ///         .heartbeat_timeout(Duration::from_secs(5))
    ///         .cancellation(ActivityCancellationType::WaitCancellationCompleted)
    ///         .await?;
    ///     Ok(receipt)
    /// }
    /// ```
    pub fn activity<A: Activity>(&self, activity: A, input: A::Input) -> ActivityCall<'a, A> {
        let _ = activity;
        ActivityCall {
            ctx: *self,
            input: crate::json_limits::to_stored_value(&input),
            options: ActivityOptions::default(),
            _activity: std::marker::PhantomData,
        }
    }

    /// Calls an activity as a **local activity** (Temporal's local activities,
    /// [R6.7](crate::semantics#r6-activities)): the same `#[activity]` function and registry
    /// as [`activity`](Self::activity), run by the worker that steps this workflow, without a
    /// task record. Its start is committed with the step that calls it, and its result with
    /// the step that applies it; attempts and retries run in the worker and write nothing.
    ///
    /// Use it for short work (a default [`DEFAULT_LOCAL_START_TO_CLOSE_TIMEOUT`](crate::DEFAULT_LOCAL_START_TO_CLOSE_TIMEOUT)
    /// of 10 s per attempt). A cancel of its scope reaches the running function at once
    /// through [`ActivityContext::cancelled`](crate::ActivityContext::cancelled) and
    /// [`stop_reason`](crate::ActivityContext::stop_reason), without a heartbeat. A crash
    /// before its result was committed runs it again at the restart (at least once). See
    /// [the section on local activities](WorkflowContext#a-local-activity-ctxlocal_activity)
    /// for an example.
    pub fn local_activity<A: Activity>(
        &self,
        activity: A,
        input: A::Input,
    ) -> LocalActivityCall<'a, A> {
        let _ = activity;
        LocalActivityCall {
            ctx: *self,
            input: crate::json_limits::to_stored_value(&input),
            options: LocalActivityOptions::default(),
            _activity: std::marker::PhantomData,
        }
    }

    /// Starts workflow `workflow` as a child of this one under `id`, and yields its output when it
    /// closes ([R7](crate::semantics#r7-child-workflows)). Await it inside a `#[workflow]`, or
    /// `.start()` it and await the handle later; configure it first with the builder methods.
    ///
    /// The child is an ordinary workflow with its own id, history and status; it is linked to
    /// this one, which is told when it closes. A child that fails, is canceled or terminated,
    /// or cannot be started (unregistered type, id in use) resolves the call with
    /// [`WorkflowError::Child`](crate::WorkflowError::Child). Cancelling the scope the call
    /// was created in acts on the child as its [`ChildWorkflowCancellationType`] says
    /// (default: cancel it and wait until it closes); a child created in a cancelled scope is
    /// never started (R9). Children still running when this workflow closes get their
    /// [`ParentClosePolicy`] (default: terminated).
    ///
    /// ```
    /// use workflow_core::prelude::*;
    ///
    /// #[workflow]
    /// async fn ship(ctx: WorkflowContext, order: u64) -> Result<String, WorkflowError> {
    ///     ctx.sleep(Duration::from_secs(60)).await?;
    ///     Ok(format!("order {order} shipped"))
    /// }
    ///
    /// #[workflow]
    /// async fn checkout(ctx: WorkflowContext, order: u64) -> Result<String, WorkflowError> {
    ///     let shipped = ctx
    ///         .child(ship, format!("ship-{order}"), order)
    ///         .cancellation(ChildWorkflowCancellationType::WaitCancellationCompleted)
    ///         .parent_close_policy(ParentClosePolicy::RequestCancel)
    ///         .await?;
    ///     Ok(shipped)
    /// }
    /// ```
    pub fn child<W: Workflow>(
        &self,
        workflow: W,
        id: impl Into<String>,
        input: W::Input,
    ) -> ChildCall<'a, W> {
        let _ = workflow;
        ChildCall {
            ctx: *self,
            id: id.into(),
            input: crate::json_limits::to_stored_value(&input),
            cancellation: ChildWorkflowCancellationType::default(),
            parent_close: ParentClosePolicy::default(),
            _workflow: std::marker::PhantomData,
        }
    }

    /// Requests cancellation of workflow `id` with a reason, as
    /// [`Client::cancel`](crate::Client::cancel) does (R1). Resolves with `Ok(())` once the
    /// request is recorded (a second request changes nothing, R1.4), without waiting for the
    /// workflow to react, or with [`WorkflowError::ExternalCancel`](crate::WorkflowError::ExternalCancel)
    /// if no workflow has this id or it is already closed (R1.2).
    pub fn cancel_external(
        &self,
        id: impl Into<String>,
        reason: impl Into<String>,
    ) -> CancelExternalCall<'a> {
        CancelExternalCall {
            ctx: *self,
            id: id.into(),
            reason: reason.into(),
        }
    }

    /// A durable timer: resolves with `Ok(())` after `duration`, or with a cancellation error
    /// if its scope is cancelled first (R8). Zero resolves at once.
    pub fn sleep(&self, duration: Duration) -> SleepCall<'a> {
        SleepCall {
            ctx: *self,
            duration,
        }
    }

    /// Completes when cancellation of this context's scope is requested (Go `ctx.Done()`,
    /// TypeScript `scope.cancelRequested`). On a disconnected context it never completes.
    pub fn cancelled(&self) -> CancelledCall<'a> {
        CancelledCall { ctx: *self }
    }

    /// Whether cancellation of this context's scope has been requested (WF
    /// `IsCancellationRequested`). Never waits.
    pub fn is_cancel_requested(&self) -> bool {
        self.cx.scope_signal(self.scope).is_some()
    }

    /// Cancels this context's scope (and the cancellable scopes inside it) now, from inside:
    /// its pending operations get their cancel actions in this step, and operations started
    /// in it from now on fail at once (R3.2, R9). Works on a non-cancellable scope too (R3.3).
    /// On the workflow's own context it cancels the root scope, which is not a cancel request
    /// from outside: a cancellation error escaping then closes the workflow Failed (R2.3).
    pub fn cancel_scope(&self) {
        self.cx
            .cancel_scope(self.scope, "cancelled from inside the scope");
    }

    /// The reason given with the workflow's cancel request (`""` if the caller gave none), or
    /// `None` if the workflow has not been cancelled.
    pub fn cancel_reason(&self) -> Option<String> {
        self.cx.workflow_cancel_reason()
    }

    /// A context that cancelling the workflow does not reach (Go `NewDisconnectedContext`).
    /// Operations started on it run to completion even after the workflow was cancelled;
    /// use it for cleanup (R4.1).
    pub fn disconnected(&self) -> WorkflowContext<'a> {
        WorkflowContext {
            cx: self.cx,
            scope: self.cx.new_disconnected_scope(),
        }
    }

    /// Races operations started with `.start()`: an array, a `Vec` or a tuple of handles (of
    /// any output types). Awaiting it yields which one finished first (the earliest given when
    /// several finish in the same step) and its result; read it back with [`Raced::get`]. The
    /// others are not cancelled: they belong to the scope that started them (R10), so racing
    /// an operation against `ctx.cancelled().start()` notices a cancel without cancelling it.
    /// Racing a handle that was already awaited fails at once.
    pub fn race(&self, handles: impl RaceSet) -> RaceCall<'a> {
        RaceCall {
            ctx: *self,
            ops: handles.ops(),
        }
    }

    /// Waits for all of several operations started with `.start()` (an array, a `Vec` or a
    /// tuple of handles); read each result back with [`Joined::get`]. Like a race, a join is
    /// not cancelled with the scope that awaits it: the operations' own scopes decide (R10).
    pub fn join(&self, handles: impl RaceSet) -> JoinCall<'a> {
        JoinCall {
            ctx: *self,
            ops: handles.ops(),
        }
    }

    /// Appends a line to the workflow's history (and emits it as a `tracing` event). Written
    /// exactly once: a step's history is committed with the step.
    pub fn log(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(workflow = self.cx.workflow_id(), "{message}");
        self.cx.record(crate::history::EventKind::Log { message });
    }
}

/// An activity call being configured; `.await` it inside a `#[workflow]`.
#[must_use = "an activity call does nothing until it is awaited"]
pub struct ActivityCall<'a, A: Activity> {
    ctx: WorkflowContext<'a>,
    input: Result<serde_json::Value, String>,
    options: ActivityOptions,
    _activity: std::marker::PhantomData<A>,
}

impl<A: Activity> ActivityCall<'_, A> {
    /// Starts the activity now without waiting for it; `.await` the handle later. Several
    /// started operations run at the same time.
    pub fn start(self) -> OpHandle<Result<A::Output, crate::WorkflowError>> {
        OpHandle::new(Operation::begin(self))
    }

    /// Longest time one attempt may run.
    pub fn start_to_close_timeout(mut self, timeout: Duration) -> Self {
        self.options.start_to_close_timeout = Some(timeout);
        self
    }

    /// Longest time between two heartbeats; a missed deadline ends the attempt (R6.4).
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.options.heartbeat_timeout = Some(timeout);
        self
    }

    /// Longest time from now to the call's end, every attempt and retry wait included; the
    /// call then fails with a `ScheduleToClose` timeout.
    pub fn schedule_to_close_timeout(mut self, timeout: Duration) -> Self {
        self.options.schedule_to_close_timeout = Some(timeout);
        self
    }

    /// Longest time from now until the first attempt starts (it is delayed when no worker
    /// runs the workflow); the call then fails with a `ScheduleToStart` timeout, unrun.
    pub fn schedule_to_start_timeout(mut self, timeout: Duration) -> Self {
        self.options.schedule_to_start_timeout = Some(timeout);
        self
    }

    /// How failed attempts are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options.retry = policy;
        self
    }

    /// What a cancel does to this activity (R6). Default: `TryCancel`.
    pub fn cancellation(mut self, cancellation: ActivityCancellationType) -> Self {
        self.options.cancellation = cancellation;
        self
    }

    /// Replaces all options at once.
    pub fn options(mut self, options: ActivityOptions) -> Self {
        self.options = options;
        self
    }
}

/// A local activity call being configured (`ctx.local_activity(..)`); `.await` it inside a
/// `#[workflow]`, or `.start()` it and await the handle later.
#[must_use = "a local activity call does nothing until it is awaited or started"]
pub struct LocalActivityCall<'a, A: Activity> {
    ctx: WorkflowContext<'a>,
    input: Result<serde_json::Value, String>,
    options: LocalActivityOptions,
    _activity: std::marker::PhantomData<A>,
}

impl<A: Activity> LocalActivityCall<'_, A> {
    /// Starts the local activity now without waiting for it; `.await` the handle later.
    pub fn start(self) -> OpHandle<Result<A::Output, crate::WorkflowError>> {
        OpHandle::new(Operation::begin(self))
    }

    /// Longest time one attempt may run (default
    /// [`DEFAULT_LOCAL_START_TO_CLOSE_TIMEOUT`](crate::DEFAULT_LOCAL_START_TO_CLOSE_TIMEOUT),
    /// 10 s); an attempt past it ends as timed out and the retry policy decides.
    pub fn start_to_close_timeout(mut self, timeout: Duration) -> Self {
        self.options.start_to_close_timeout = timeout;
        self
    }

    /// How failed attempts are retried. They run in the worker; a back-off longer than
    /// [`LOCAL_RETRY_THRESHOLD`](crate::LOCAL_RETRY_THRESHOLD) (1 minute) is committed with a
    /// step and waited out on a durable timer instead.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.options.retry = policy;
        self
    }

    /// What a cancel of the call's scope does (R6.7). Default: `TryCancel`, which tells the
    /// function to stop and resolves the call at once; `Abandon` resolves it at once without
    /// telling the function; `WaitCancellationCompleted` tells it and waits for it to end.
    pub fn cancellation(mut self, cancellation: ActivityCancellationType) -> Self {
        self.options.cancellation = cancellation;
        self
    }

    /// Replaces all options at once.
    pub fn options(mut self, options: LocalActivityOptions) -> Self {
        self.options = options;
        self
    }
}

impl<A: Activity> Operation for LocalActivityCall<'_, A> {
    type Output = Result<A::Output, crate::WorkflowError>;
    fn begin(self) -> crate::OpId {
        self.ctx
            .cx
            .schedule_local_activity(self.ctx.scope, A::NAME, self.input, self.options)
    }
}

/// A child workflow being configured; `.await` it inside a `#[workflow]`.
#[must_use = "a child workflow call does nothing until it is awaited or started"]
pub struct ChildCall<'a, W: Workflow> {
    ctx: WorkflowContext<'a>,
    id: String,
    input: Result<serde_json::Value, String>,
    cancellation: ChildWorkflowCancellationType,
    parent_close: ParentClosePolicy,
    _workflow: std::marker::PhantomData<W>,
}

impl<W: Workflow> ChildCall<'_, W> {
    /// Starts the child now without waiting for it; `.await` the handle later. A handle never
    /// awaited leaves the child to its [`ParentClosePolicy`] when this workflow closes.
    pub fn start(self) -> OpHandle<Result<W::Output, crate::WorkflowError>> {
        OpHandle::new(Operation::begin(self))
    }

    /// What cancelling the scope of this call does to the child (R7). Default:
    /// `WaitCancellationCompleted`.
    pub fn cancellation(mut self, cancellation: ChildWorkflowCancellationType) -> Self {
        self.cancellation = cancellation;
        self
    }

    /// What happens to the child if it still runs when this workflow closes. Default:
    /// `Terminate`.
    pub fn parent_close_policy(mut self, policy: ParentClosePolicy) -> Self {
        self.parent_close = policy;
        self
    }
}

impl<W: Workflow> Operation for ChildCall<'_, W> {
    type Output = Result<W::Output, crate::WorkflowError>;
    fn begin(self) -> crate::OpId {
        self.ctx.cx.start_child(
            self.ctx.scope,
            W::NAME,
            self.id,
            self.input,
            self.cancellation,
            self.parent_close,
        )
    }
}

/// A cancel request for another workflow; `.await` it inside a `#[workflow]`.
#[must_use = "a cancel request does nothing until it is awaited or started"]
pub struct CancelExternalCall<'a> {
    ctx: WorkflowContext<'a>,
    id: String,
    reason: String,
}

impl CancelExternalCall<'_> {
    /// Sends the request now without waiting for its answer; `.await` the handle later.
    pub fn start(self) -> OpHandle<Result<(), crate::WorkflowError>> {
        OpHandle::new(Operation::begin(self))
    }
}

impl Operation for CancelExternalCall<'_> {
    type Output = Result<(), crate::WorkflowError>;
    fn begin(self) -> crate::OpId {
        self.ctx
            .cx
            .cancel_external(self.ctx.scope, self.id, self.reason)
    }
}

/// A timer being started; `.await` it inside a `#[workflow]`.
#[must_use = "a sleep does nothing until it is awaited"]
pub struct SleepCall<'a> {
    ctx: WorkflowContext<'a>,
    duration: Duration,
}

impl CancelledCall<'_> {
    /// Starts waiting for the scope's cancellation signal without waiting yet; await the
    /// handle later.
    pub fn start(self) -> OpHandle<()> {
        OpHandle::new(Operation::begin(self))
    }
}

/// A race of started operations; `.await` it inside a `#[workflow]`.
#[must_use = "a race does nothing until it is awaited"]
pub struct RaceCall<'a> {
    ctx: WorkflowContext<'a>,
    ops: Vec<crate::OpId>,
}

/// Handles that can be raced: arrays and `Vec`s of handles, and tuples of handles of
/// different output types.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a set of started operations",
    label = "`race` and `join` take handles returned by `.start()`",
    note = "start the operations first: `let a = ctx.activity(x, input).start();`, then `ctx.race((a, b))` or `ctx.join([a, b])`"
)]
pub trait RaceSet {
    /// The raced operations, in order.
    fn ops(self) -> Vec<crate::OpId>;
}

impl<H: Handle, const N: usize> RaceSet for [H; N] {
    fn ops(self) -> Vec<crate::OpId> {
        self.iter().map(Handle::op).collect()
    }
}

impl<H: Handle> RaceSet for Vec<H> {
    fn ops(self) -> Vec<crate::OpId> {
        self.iter().map(Handle::op).collect()
    }
}

macro_rules! race_set_for_tuples {
    ($(($($t:ident $h:ident),+))+) => {$(
        impl<$($t: Handle),+> RaceSet for ($($t,)+) {
            fn ops(self) -> Vec<crate::OpId> {
                let ($($h,)+) = self;
                vec![$(Handle::op(&$h)),+]
            }
        }
    )+};
}

race_set_for_tuples! {
    (A a)
    (A a, B b)
    (A a, B b, C c)
    (A a, B b, C c, D d)
    (A a, B b, C c, D d, E e)
    (A a, B b, C c, D d, E e, F f)
}

/// Something started earlier and awaited later: an [`OpHandle`] (an operation started with
/// `.start()`) or a [`ScopeHandle`] (a scope started with `.start()`). Handles can be raced,
/// joined and read back from a [`Raced`] or [`Joined`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a started operation or scope",
    label = "`race` and `join` take handles returned by `.start()`",
    note = "start the operations first: `let a = ctx.activity(x, input).start();`, then `ctx.race((a, b))` or `ctx.join([a, b])`"
)]
pub trait Handle: Copy {
    /// What awaiting the handle yields.
    type Output;
    /// The operation the handle awaits.
    fn op(&self) -> crate::OpId;
}

impl<T> Handle for OpHandle<T> {
    type Output = T;
    fn op(&self) -> crate::OpId {
        self.op
    }
}

impl<T> Handle for ScopeHandle<T> {
    type Output = Result<T, crate::WorkflowError>;
    fn op(&self) -> crate::OpId {
        self.op
    }
}

/// What awaiting a race yields: which operation finished first, and its result.
///
/// ```
/// use workflow_core::prelude::*;
///
/// #[activity]
/// async fn work(_ctx: ActivityContext) -> Result<u64, ActivityError> {
///     Ok(1)
/// }
///
/// #[workflow]
/// async fn watchful(ctx: WorkflowContext) -> Result<String, WorkflowError> {
///     let job = ctx.activity(work, ()).start();
///     let cancel = ctx.cancelled().start();
///     let first = ctx.race((job, cancel)).await?;
///     if let Some(done) = first.get(job) {
///         return Ok(format!("finished with {}", done?));
///     }
///     // Cancel requested; the race itself did not cancel the job (R10), the cancel did.
///     let outcome = job.await;
///     Ok(format!("cancelled, the job gave {outcome:?}"))
/// }
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Raced {
    /// The position of the winner in the raced handles.
    pub index: usize,
    winner: crate::OpId,
    result: Result<serde_json::Value, crate::WorkflowError>,
}

impl Raced {
    /// The winning operation.
    pub fn winner(&self) -> crate::OpId {
        self.winner
    }

    /// Whether `handle` won the race.
    pub fn is<H: Handle>(&self, handle: H) -> bool {
        handle.op() == self.winner
    }

    /// The result of `handle`, as awaiting it would have given, if it won the race (the race
    /// consumed it: awaiting the winner's handle again fails).
    pub fn get<H: Handle>(&self, handle: H) -> Option<H::Output>
    where
        H::Output: crate::__private::FromResolution,
    {
        self.is(handle).then(|| {
            <H::Output as crate::__private::FromResolution>::from_resolution(self.result.clone())
        })
    }
}

/// A join of started operations; `.await` it inside a `#[workflow]`.
#[must_use = "a join does nothing until it is awaited"]
pub struct JoinCall<'a> {
    ctx: WorkflowContext<'a>,
    ops: Vec<crate::OpId>,
}

/// What awaiting a join yields: the result of every joined operation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Joined {
    results: Vec<JoinedResult>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct JoinedResult {
    op: crate::OpId,
    result: Result<serde_json::Value, crate::WorkflowError>,
}

impl Joined {
    /// The result of `handle`, as awaiting it would have given (the join consumed it), or
    /// `None` if it was not part of the join.
    pub fn get<H: Handle>(&self, handle: H) -> Option<H::Output>
    where
        H::Output: crate::__private::FromResolution,
    {
        self.results.iter().find(|r| r.op == handle.op()).map(|r| {
            <H::Output as crate::__private::FromResolution>::from_resolution(r.result.clone())
        })
    }
}

impl Operation for JoinCall<'_> {
    type Output = Result<Joined, crate::WorkflowError>;
    fn begin(self) -> crate::OpId {
        self.ctx.cx.start_join(self.ctx.scope, self.ops)
    }
}

impl Operation for RaceCall<'_> {
    type Output = Result<Raced, crate::WorkflowError>;
    fn begin(self) -> crate::OpId {
        self.ctx.cx.start_race(self.ctx.scope, self.ops)
    }
}

impl SleepCall<'_> {
    /// Starts the timer now without waiting for it; `.await` the handle later.
    pub fn start(self) -> OpHandle<Result<(), crate::WorkflowError>> {
        OpHandle::new(Operation::begin(self))
    }
}

/// An operation started with `.start()`, to be awaited later in the workflow.
///
/// It is a plain value (the operation's id) kept in the workflow state like any other local;
/// awaiting it yields what awaiting the operation directly would have. The operation belongs
/// to the scope it was started in, wherever it is awaited (R3.1).
///
/// ```
/// use workflow_core::prelude::*;
///
/// #[activity]
/// async fn price(_ctx: ActivityContext, item: String) -> Result<u64, ActivityError> {
///     Ok(item.len() as u64)
/// }
///
/// #[workflow]
/// async fn quote(ctx: WorkflowContext, items: (String, String)) -> Result<u64, WorkflowError> {
///     // Both activities run at the same time.
///     let first = ctx.activity(price, items.0).start();
///     let second = ctx.activity(price, items.1).start();
///     Ok(first.await? + second.await?)
/// }
/// ```
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound = "")]
#[must_use = "a started operation runs anyway; await its handle to use its result"]
pub struct OpHandle<T> {
    op: crate::OpId,
    #[serde(skip)]
    output: std::marker::PhantomData<fn() -> T>,
}

impl<T> OpHandle<T> {
    fn new(op: crate::OpId) -> Self {
        OpHandle {
            op,
            output: std::marker::PhantomData,
        }
    }

    /// The started operation's id (as history and `describe` show it).
    pub fn op(&self) -> crate::OpId {
        self.op
    }
}

// A handle is an id: copying it is free. Awaiting the same operation twice (or awaiting
// the winner of a race, which the race consumed) resolves with an error, not a panic.
impl<T> Clone for OpHandle<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for OpHandle<T> {}

impl<T> std::fmt::Debug for OpHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpHandle({})", self.op)
    }
}

impl<T> Operation for OpHandle<T> {
    type Output = T;
    fn begin(self) -> crate::OpId {
        self.op
    }
}

/// A scope started with `.start()`: its block runs beside the code that started it, and the
/// handle awaits the block's value later ([R3.7](crate::semantics#r3-scopes)).
///
/// `T` is the `Ok` type of the block's `Result<T, WorkflowError>`; annotate the handle with
/// it, `let h: ScopeHandle<T> = ctx.cancellable(async { .. }).start();`, since the block is
/// compiled into a machine of its own whose type the macro must know. Await the handle, race
/// it or join it like an [`OpHandle`]; [`ScopeHandle::cancel`] cancels the scope from outside
/// (Temporal TypeScript's `scope.cancel()`, Go's `cancel()` of `WithCancel`). The block uses
/// its own copies of the outer locals it reads, as a parallel branch does.
///
/// ```
/// use workflow_core::prelude::*;
///
/// #[activity]
/// async fn step(ctx: ActivityContext, (name, secs): (String, u64)) -> Result<String, ActivityError> {
///     for _ in 0..secs {
///         tokio::time::sleep(Duration::from_secs(1)).await;
///         ctx.heartbeat(())?;
///     }
///     if name == "broken" {
///         return Err(ActivityError::non_retryable("it broke"));
///     }
///     Ok(name)
/// }
///
/// #[workflow]
/// async fn side_by_side(ctx: WorkflowContext) -> Result<String, WorkflowError> {
///     // Two sequences side by side; fail fast, but let the audit (shielded) finish.
///     let fast: ScopeHandle<String> = ctx
///         .cancellable(async {
///             let a = ctx.activity(step, ("a".to_string(), 60)).await?;
///             let b = ctx.activity(step, ("b".to_string(), 60)).await?;
///             Ok(format!("{a}{b}"))
///         })
///         .start();
///     let broken: ScopeHandle<String> = ctx
///         .cancellable(async { ctx.activity(step, ("broken".to_string(), 2)).await })
///         .start();
///     let audit: ScopeHandle<String> = ctx
///         .non_cancellable(async { ctx.activity(step, ("audit".to_string(), 5)).await })
///         .start();
///     let first = ctx.race((fast, broken)).await?;
///     if let Some(Err(e)) = first.get(broken) {
///         let e: WorkflowError = e; // kept across the awaits below, so it needs its type
///         fast.cancel(ctx); // its running activity is told to stop
///         let stopped = fast.await;
///         let audited = audit.await?;
///         return Ok(format!("failed fast ({e}); fast stopped: {}; {audited} done",
///             stopped.is_err()));
///     }
///     Ok("no failure".to_string())
/// }
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder().register(side_by_side).activity(step).in_memory().build().await?;
/// # let run = engine.client().start(side_by_side, "s", ()).await?;
/// # let Outcome::Completed(text) = run.outcome().await? else { panic!() };
/// # assert!(text.contains("fast stopped: true; audit done"), "{text}");
/// # Ok(())
/// # }
/// ```
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound = "")]
#[must_use = "a started scope runs anyway; await its handle to use its value"]
pub struct ScopeHandle<T> {
    op: crate::OpId,
    scope: ScopeId,
    #[serde(skip)]
    output: std::marker::PhantomData<fn() -> T>,
}

impl<T> ScopeHandle<T> {
    #[doc(hidden)]
    pub fn new(op: crate::OpId, scope: ScopeId) -> Self {
        ScopeHandle {
            op,
            scope,
            output: std::marker::PhantomData,
        }
    }

    /// The operation the handle awaits (as history and `describe` show it).
    pub fn op(&self) -> crate::OpId {
        self.op
    }

    /// The started scope.
    pub fn scope(&self) -> ScopeId {
        self.scope
    }

    /// Cancels the started scope now, as `ctx.cancel_scope()` inside its block would
    /// ([R3.2](crate::semantics#r3-scopes)): its pending operations get their cancel actions
    /// in this step, the scopes below it are cancelled, and its `on_cancel!` handlers run as
    /// its code is left. The handle then resolves with whatever the block ends with. A block
    /// that already ended is not affected.
    pub fn cancel(&self, ctx: WorkflowContext<'_>) {
        ctx.cx
            .cancel_scope(self.scope, "cancelled through its handle");
    }
}

impl<T> Clone for ScopeHandle<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ScopeHandle<T> {}

impl<T> std::fmt::Debug for ScopeHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScopeHandle({}, scope #{})", self.op, self.scope.0)
    }
}

impl<T> Operation for ScopeHandle<T> {
    type Output = Result<T, crate::WorkflowError>;
    fn begin(self) -> crate::OpId {
        self.op
    }
}

/// A scope's cancellation signal; `.await` it inside a `#[workflow]`.
#[must_use = "waiting for cancellation does nothing until it is awaited"]
pub struct CancelledCall<'a> {
    ctx: WorkflowContext<'a>,
}

/// Implemented by everything a `#[workflow]` can `.await`. The generated machine calls
/// [`Operation::begin`] where the source awaits, keeps the returned id in its state, and polls
/// the id in later steps.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a workflow operation",
    label = "only workflow operations can be awaited inside `#[workflow]`",
    note = "await `ctx.activity(..)`, `ctx.child(..)`, `ctx.sleep(..)` or `ctx.cancelled()`; a plain future would not survive a restart"
)]
pub trait Operation {
    /// What awaiting the operation yields.
    type Output;
    /// Starts the operation in the current step and returns its id.
    fn begin(self) -> crate::OpId;
}

impl<A: Activity> Operation for ActivityCall<'_, A> {
    type Output = Result<A::Output, crate::WorkflowError>;
    fn begin(self) -> crate::OpId {
        self.ctx
            .cx
            .schedule_activity(self.ctx.scope, A::NAME, self.input, self.options)
    }
}

impl Operation for SleepCall<'_> {
    type Output = Result<(), crate::WorkflowError>;
    fn begin(self) -> crate::OpId {
        self.ctx.cx.start_timer(self.ctx.scope, self.duration)
    }
}

impl Operation for CancelledCall<'_> {
    type Output = ();
    fn begin(self) -> crate::OpId {
        self.ctx.cx.cancel_signal(self.ctx.scope)
    }
}
