//! Options a workflow attaches to the operations it starts: timeouts, retries, what
//! cancellation does to a running activity or child workflow, and what happens to children
//! when their parent closes.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What cancelling a scope does to an activity started in it
/// ([R6](crate::semantics#r6-activities)).
///
/// | type | cancel sent to the activity | the awaiting call resolves |
/// |---|---|---|
/// | `TryCancel` (default) | yes | at once, with a cancellation error |
/// | `WaitCancellationCompleted` | yes | when the activity ends, with its own outcome |
/// | `Abandon` | no | at once, with a cancellation error |
///
/// A running activity only learns of a cancel when it calls
/// [`ActivityContext::heartbeat`](crate::ActivityContext::heartbeat). An activity that never
/// heartbeats is never interrupted; under `WaitCancellationCompleted` the workflow waits for it
/// to finish on its own, and `describe` says so. A local activity
/// ([R6.7](crate::semantics#r6-activities)) takes the same types, but nothing is sent
/// anywhere: the worker running it tells the function at once, without a heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivityCancellationType {
    /// Send the cancel and resolve the call at once with a cancellation error.
    #[default]
    TryCancel,
    /// Send the cancel and resolve the call when the activity ends.
    WaitCancellationCompleted,
    /// Do not tell the activity; resolve the call at once with a cancellation error.
    Abandon,
}

/// What cancelling a scope does to a child workflow started in it
/// ([R7](crate::semantics#r7-child-workflows)).
///
/// | type | cancel sent to the child | the awaiting call resolves |
/// |---|---|---|
/// | `Abandon` | no | at once, with a cancellation error |
/// | `TryCancel` | yes | at once, with a cancellation error |
/// | `WaitCancellationRequested` | yes | once the child has recorded the request, with a cancellation error |
/// | `WaitCancellationCompleted` (default) | yes | when the child closes, with its own outcome |
///
/// A child cancelled before it was started never starts, whatever the type. Under
/// `WaitCancellationCompleted` a child that handles the cancel and returns `Ok` gives the
/// parent its value; a child that closes Canceled gives a
/// [`ChildFailure::Canceled`](crate::ChildFailure::Canceled) error, which is a cancellation
/// (R2.2). What happens to children still running when the parent closes is decided
/// separately, by [`ParentClosePolicy`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildWorkflowCancellationType {
    /// Do not tell the child; resolve the call at once with a cancellation error. The child
    /// keeps running and its result is ignored.
    Abandon,
    /// Send the cancel to the child and resolve the call at once with a cancellation error.
    TryCancel,
    /// Send the cancel and resolve the call, with a cancellation error, once the child has
    /// recorded the request.
    WaitCancellationRequested,
    /// Send the cancel and resolve the call when the child closes, with its outcome.
    #[default]
    WaitCancellationCompleted,
}

/// What happens to a child workflow that is still running when its parent closes (R7),
/// whatever its [`ChildWorkflowCancellationType`]. The default is Temporal's.
///
/// | policy | what the child gets when the parent closes |
/// |---|---|
/// | `Terminate` (default) | terminated: no more of its code runs |
/// | `RequestCancel` | a cancel request, as from `client.cancel` (R1) |
/// | `Abandon` | nothing: it runs on by itself |
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParentClosePolicy {
    /// Terminate the child.
    #[default]
    Terminate,
    /// Request cancellation of the child; it reacts at its next step.
    RequestCancel,
    /// Leave the child running.
    Abandon,
}

/// How a failed activity attempt is retried. Mirrors Temporal's retry policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Delay before the second attempt.
    pub initial_interval: Duration,
    /// Each further delay is the previous one times this.
    pub backoff_coefficient: f64,
    /// Upper bound on the delay between attempts.
    pub maximum_interval: Duration,
    /// Total attempts allowed, the first included; `0` means unlimited (Temporal's default).
    pub maximum_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_interval: Duration::from_secs(1),
            backoff_coefficient: 2.0,
            maximum_interval: Duration::from_secs(100),
            maximum_attempts: 0,
        }
    }
}

impl RetryPolicy {
    /// A policy that runs the activity once and never retries.
    pub fn no_retries() -> Self {
        RetryPolicy {
            maximum_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Allows at most `attempts` attempts in total.
    pub fn with_maximum_attempts(mut self, attempts: u32) -> Self {
        self.maximum_attempts = attempts;
        self
    }

    /// Sets the first back-off delay.
    pub fn with_initial_interval(mut self, interval: Duration) -> Self {
        self.initial_interval = interval;
        self
    }

    /// The delay before attempt `next_attempt` (2 for the first retry), or `None` when the
    /// policy allows no further attempt.
    pub fn delay_before(&self, next_attempt: u32) -> Option<Duration> {
        if self.maximum_attempts != 0 && next_attempt > self.maximum_attempts {
            return None;
        }
        let exponent = next_attempt.saturating_sub(2).min(64) as i32;
        let secs = self.initial_interval.as_secs_f64() * self.backoff_coefficient.powi(exponent);
        let capped = secs.min(self.maximum_interval.as_secs_f64()).max(0.0);
        // Saturates instead of panicking for delays beyond `Duration`'s range.
        Some(Duration::try_from_secs_f64(capped).unwrap_or(self.maximum_interval))
    }
}

/// What an error that escapes a workflow does (WF `OnUnhandledException`,
/// [R13](crate::semantics#r13-unhandled-errors)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnhandledErrorAction {
    /// The workflow closes Failed (the default).
    #[default]
    Fail,
    /// The workflow is cancelled instead: its pending operations get their cancel actions,
    /// the cancellation handlers of the code the error leaves run, and it closes Canceled.
    Cancel,
}

/// What a start does when a workflow with the same id exists (Temporal's workflow id reuse
/// policy). A Running workflow's id is never reused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdReusePolicy {
    /// The start fails with [`ClientError::AlreadyExists`](crate::ClientError::AlreadyExists)
    /// while any workflow, running or closed, has the id.
    #[default]
    Reject,
    /// A closed workflow with the id is deleted, with its history, and the new one starts.
    AllowIfClosed,
    /// Like [`AllowIfClosed`](Self::AllowIfClosed), but a workflow that completed is kept
    /// (the start fails): only a failed, cancelled or terminated one makes way, so a job that
    /// succeeded once is not run again.
    AllowIfNotCompleted,
}

impl IdReusePolicy {
    /// The closed statuses that make way for a new workflow; empty for [`Reject`](Self::Reject).
    pub fn reusable_statuses(self) -> Vec<crate::WorkflowStatus> {
        use crate::WorkflowStatus::*;
        match self {
            IdReusePolicy::Reject => Vec::new(),
            IdReusePolicy::AllowIfClosed => vec![Completed, Canceled, Failed, Terminated],
            IdReusePolicy::AllowIfNotCompleted => vec![Canceled, Failed, Terminated],
        }
    }
}

/// How [`Client::start_with`](crate::Client::start_with) starts a workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartOptions {
    /// What happens when the id is taken.
    pub id_reuse: IdReusePolicy,
    /// How long the workflow may run, counted from its start, before it is cancelled
    /// ([R5.3](crate::semantics#r5-timeouts)); none by default.
    pub execution_timeout: Option<Duration>,
}

impl StartOptions {
    /// Sets the id reuse policy.
    pub fn id_reuse(mut self, policy: IdReusePolicy) -> Self {
        self.id_reuse = policy;
        self
    }

    /// Sets the workflow's execution timeout ([R5.3](crate::semantics#r5-timeouts)): once
    /// `timeout` has passed since the start (whether or not a worker ran the workflow
    /// meanwhile), the workflow gets a cancel request whose reason says "workflow execution
    /// timed out after ..". Its `on_cancel!` handlers, non-cancellable scopes and
    /// compensations run, and it closes Canceled (or Completed, if it handles the cancel).
    /// The deadline is stored with the workflow, so it holds across restarts.
    ///
    /// At least 1 ms and at most [`MAX_EXECUTION_TIMEOUT`]; the start fails with
    /// [`ClientError::InvalidOption`](crate::ClientError::InvalidOption) otherwise.
    ///
    /// ```
    /// use workflow_core::prelude::*;
    /// use workflow_core::StartOptions;
    ///
    /// #[workflow]
    /// async fn nap(ctx: WorkflowContext) -> Result<(), WorkflowError> {
    ///     ctx.sleep(Duration::from_secs(3600)).await?;
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::builder().register(nap).in_memory().build().await?;
    /// let options = StartOptions::default().execution_timeout(Duration::from_secs(30));
    /// let run = engine.client().start_with(nap, "nap-1", (), options).await?;
    /// let Outcome::Canceled(error) = run.outcome().await? else { panic!() };
    /// assert_eq!(error.to_string(), "cancelled: workflow execution timed out after 30s");
    /// # Ok(())
    /// # }
    /// ```
    pub fn execution_timeout(mut self, timeout: Duration) -> Self {
        self.execution_timeout = Some(timeout);
        self
    }
}

/// The longest execution timeout a workflow may be given (100 years of 365 days): longer is
/// taken for a mistake (a unit mixed up, `Duration::MAX`) and refused at the start.
pub const MAX_EXECUTION_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The start-to-close timeout of an activity attempt that sets neither a start-to-close nor a
/// heartbeat timeout: 10 minutes. Every attempt is bounded, so that one that never returns
/// and never heartbeats (after its workflow closed and no longer waits for it, say) does not
/// hold its task in the worker for good. Set [`ActivityOptions::start_to_close_timeout`]
/// for longer activities, or a heartbeat timeout for ones that report progress.
pub const DEFAULT_START_TO_CLOSE_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything the engine needs to know to run one activity call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActivityOptions {
    /// Longest time one attempt may run. When neither this nor
    /// [`heartbeat_timeout`](Self::heartbeat_timeout) is set, an attempt may run
    /// [`DEFAULT_START_TO_CLOSE_TIMEOUT`] (10 minutes); with only a heartbeat timeout, an
    /// attempt runs as long as it keeps heartbeating.
    pub start_to_close_timeout: Option<Duration>,
    /// Longest time between two heartbeats of a running attempt.
    pub heartbeat_timeout: Option<Duration>,
    /// Longest time from the call's scheduling to its end, all attempts and back-off waits
    /// included: no attempt starts after it, and a running attempt ends at it.
    #[serde(default)]
    pub schedule_to_close_timeout: Option<Duration>,
    /// Longest time from the call's scheduling to the start of its first attempt (a worker
    /// that was down, or a backlog after a restart, can delay it): past it, the call fails
    /// without running.
    #[serde(default)]
    pub schedule_to_start_timeout: Option<Duration>,
    /// How failed attempts are retried.
    pub retry: RetryPolicy,
    /// What a cancel does to this activity.
    pub cancellation: ActivityCancellationType,
}

/// The start-to-close timeout of a local activity attempt unless set
/// ([`LocalActivityOptions::start_to_close_timeout`]): 10 seconds. A local activity runs in the
/// worker that steps its workflow and is meant to be short; longer work is an activity.
pub const DEFAULT_LOCAL_START_TO_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest back-off a local activity waits out in the worker between two attempts
/// (Temporal's `LocalRetryThreshold`): 1 minute. A longer back-off is committed with a step
/// and waited out on a durable timer, so a worker that stops meanwhile loses nothing and the
/// next attempt runs on time wherever the workflow is held
/// ([R6.7](crate::semantics#r6-activities)).
pub const LOCAL_RETRY_THRESHOLD: Duration = Duration::from_secs(60);

/// How a local activity call runs (`ctx.local_activity(..)`,
/// [R6.7](crate::semantics#r6-activities)): the timeout of each attempt, how failed attempts
/// are retried, and what a cancel of its scope does.
///
/// A local activity has no task record, so it has none of the options that watch a task from
/// outside (heartbeat, schedule-to-start and schedule-to-close timeouts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalActivityOptions {
    /// Longest time one attempt may run; default [`DEFAULT_LOCAL_START_TO_CLOSE_TIMEOUT`].
    pub start_to_close_timeout: Duration,
    /// How failed attempts are retried. Back-offs up to [`LOCAL_RETRY_THRESHOLD`] are waited
    /// out in the worker; longer ones on a durable timer.
    pub retry: RetryPolicy,
    /// What a cancel of the call's scope does (R6.7): `TryCancel` and `Abandon` resolve the
    /// call at once, `WaitCancellationCompleted` when the function ends.
    pub cancellation: ActivityCancellationType,
}

impl Default for LocalActivityOptions {
    fn default() -> Self {
        LocalActivityOptions {
            start_to_close_timeout: DEFAULT_LOCAL_START_TO_CLOSE_TIMEOUT,
            retry: RetryPolicy::default(),
            cancellation: ActivityCancellationType::default(),
        }
    }
}

impl LocalActivityOptions {
    /// The same call as the activity runner runs it: no heartbeat, no schedule timeouts.
    pub(crate) fn as_activity_options(&self) -> ActivityOptions {
        ActivityOptions {
            start_to_close_timeout: Some(self.start_to_close_timeout),
            heartbeat_timeout: None,
            schedule_to_close_timeout: None,
            schedule_to_start_timeout: None,
            retry: self.retry.clone(),
            cancellation: self.cancellation,
        }
    }
}

impl ActivityOptions {
    /// The start-to-close timeout an attempt runs under: the one set, else
    /// [`DEFAULT_START_TO_CLOSE_TIMEOUT`] unless a heartbeat timeout bounds the attempt.
    pub fn effective_start_to_close_timeout(&self) -> Option<Duration> {
        match (self.start_to_close_timeout, self.heartbeat_timeout) {
            (Some(timeout), _) => Some(timeout),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_START_TO_CLOSE_TIMEOUT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attempt_is_bounded_by_a_timeout() {
        let mut options = ActivityOptions::default();
        assert_eq!(
            options.effective_start_to_close_timeout(),
            Some(DEFAULT_START_TO_CLOSE_TIMEOUT)
        );
        options.heartbeat_timeout = Some(Duration::from_secs(5));
        assert_eq!(options.effective_start_to_close_timeout(), None);
        options.start_to_close_timeout = Some(Duration::from_secs(3600));
        assert_eq!(
            options.effective_start_to_close_timeout(),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn retry_delays_grow_and_stop_at_the_attempt_limit() {
        let policy = RetryPolicy::default().with_maximum_attempts(4);
        assert_eq!(policy.delay_before(2), Some(Duration::from_secs(1)));
        assert_eq!(policy.delay_before(3), Some(Duration::from_secs(2)));
        assert_eq!(policy.delay_before(4), Some(Duration::from_secs(4)));
        assert_eq!(policy.delay_before(5), None);
        assert_eq!(RetryPolicy::no_retries().delay_before(2), None);
    }

    #[test]
    fn retry_delay_is_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay_before(40), Some(Duration::from_secs(100)));
    }
}
