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
    ParentClosePolicy, RetryPolicy, Workflow,
};
use std::time::Duration;

/// The context of a running workflow, or of one of its scopes.
///
/// It is `Copy`: pass it around freely. A context belongs to one scope: the workflow's root
/// scope for the `ctx` parameter, a fresh disconnected scope for `ctx.disconnected()` and for
/// the context an `on_cancel!` handler receives.
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

    /// Starts workflow `workflow` as a child of this one under `id`, and yields its output
    /// when it closes (CANCELLATION.md R7). Await it inside a `#[workflow]`, or `.start()` it
    /// and await the handle later; configure it first with the builder methods.
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

impl<T, const N: usize> RaceSet for [OpHandle<T>; N] {
    fn ops(self) -> Vec<crate::OpId> {
        self.iter().map(|h| h.op).collect()
    }
}

impl<T> RaceSet for Vec<OpHandle<T>> {
    fn ops(self) -> Vec<crate::OpId> {
        self.iter().map(|h| h.op).collect()
    }
}

macro_rules! race_set_for_tuples {
    ($(($($t:ident $h:ident),+))+) => {$(
        impl<$($t),+> RaceSet for ($(OpHandle<$t>,)+) {
            fn ops(self) -> Vec<crate::OpId> {
                let ($($h,)+) = self;
                vec![$($h.op),+]
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
    pub fn is<T>(&self, handle: OpHandle<T>) -> bool {
        handle.op == self.winner
    }

    /// The result of `handle`, as awaiting it would have given, if it won the race (the race
    /// consumed it: awaiting the winner's handle again fails).
    pub fn get<T: crate::__private::FromResolution>(&self, handle: OpHandle<T>) -> Option<T> {
        self.is(handle)
            .then(|| T::from_resolution(self.result.clone()))
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
    pub fn get<T: crate::__private::FromResolution>(&self, handle: OpHandle<T>) -> Option<T> {
        self.results
            .iter()
            .find(|r| r.op == handle.op)
            .map(|r| T::from_resolution(r.result.clone()))
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
