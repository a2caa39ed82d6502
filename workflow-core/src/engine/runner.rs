//! The activity runner: one tokio task per scheduled activity, running its attempts with timeouts,
//! a heartbeat watchdog, retries and cancellation ([R6](crate::semantics#r6-activities)), then
//! delivering one event to the workflow's next step.

use super::local::LocalRun;
use super::{lock, EngineInner};
use crate::activity::{AttemptState, StopReason, TaskControl};
use crate::store::Fence;
use crate::{
    ActivityContext, ActivityError, ActivityFailure, ActivityInfo, ActivityOptions, Event,
    LocalActivityRun, OpId, StoreError, TimeoutKind, LOCAL_RETRY_THRESHOLD,
};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// One scheduled activity to run.
pub(crate) struct ActivityJob {
    pub(crate) workflow_id: String,
    pub(crate) op: OpId,
    pub(crate) activity: String,
    pub(crate) input: serde_json::Value,
    pub(crate) options: ActivityOptions,
    /// The attempt number to start with (1, or the interrupted attempt after a restart).
    pub(crate) first_attempt: u32,
    /// Engine time the call was scheduled (committed), ms since the Unix epoch: the start
    /// of its schedule-to-start and schedule-to-close timeouts.
    pub(crate) scheduled_at_ms: u64,
    /// Heartbeat details recorded by an earlier attempt.
    pub(crate) previous_details: Option<serde_json::Value>,
    /// A cancel recorded before this runner was created (`Some(notify_running)`).
    pub(crate) cancel: Option<bool>,
    /// The lease this runner works under, set by [`EngineInner::start_activity`]: its writes
    /// carry it, and its result is delivered only while the engine still holds the workflow
    /// at that epoch (not after losing it and claiming it again).
    pub(crate) fence: Option<Fence>,
    /// `Some` for a local activity (R6.7): no task record is read or written, a stop reaches
    /// the running attempt at once, and its end is an [`Event::LocalActivityEnded`].
    pub(crate) local: Option<LocalRun>,
}

/// How a call's attempts ended.
pub(crate) enum RunEnd {
    /// Attempt `attempt`, the last, returned, failed for good, or was stopped.
    Done {
        result: Result<serde_json::Value, ActivityFailure>,
        attempt: u32,
    },
    /// Attempt `attempt` is due after `delay`, a back-off longer than
    /// [`LOCAL_RETRY_THRESHOLD`] (local activities only).
    Backoff { attempt: u32, delay: Duration },
}

impl RunEnd {
    fn failed(attempt: u32, failure: ActivityFailure) -> RunEnd {
        RunEnd::Done {
            result: Err(failure),
            attempt,
        }
    }
}

/// How one attempt ended.
enum AttemptEnd {
    Returned(Result<serde_json::Value, ActivityError>),
    Panicked(String),
    TimedOut(TimeoutKind),
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl EngineInner {
    /// Registers the task's control and spawns its runner.
    pub(crate) fn start_activity(self: &Arc<Self>, mut job: ActivityJob) {
        let Some(fence) = self.fence(&job.workflow_id) else {
            return; // not held here (any more): its holder runs it
        };
        let epoch = fence.epoch;
        job.fence = Some(fence);
        let control = Arc::new(TaskControl::new(
            job.options.cancellation == crate::ActivityCancellationType::Abandon,
            epoch,
        ));
        if let Some(notify_running) = job.cancel {
            control.cancel(notify_running);
        }
        {
            let mut tasks = lock(&self.tasks);
            let entry = tasks.entry(job.workflow_id.clone()).or_default();
            match entry.get(&job.op) {
                // Already running in this engine, under this lease.
                Some(running) if running.epoch == epoch => return,
                // A runner of an earlier holding of this engine (claimed again since): its
                // result would be dropped as stale, so it stops and this one takes over.
                Some(stale) => stale.stop_for(StopReason::TakenOver, true),
                None => {}
            }
            entry.insert(job.op, control.clone());
        }
        let inner = self.clone();
        let (id, op) = (job.workflow_id.clone(), job.op);
        if self
            .spawn(async move { inner.run_activity(job, control).await })
            .is_none()
        {
            self.forget_task(&id, op, None);
        }
    }

    /// Delivers a `CancelActivity` command (R6.1, R6.2, Abandon).
    pub(crate) fn cancel_activity(
        &self,
        id: &str,
        op: OpId,
        notify_running: bool,
        reason: Option<String>,
    ) {
        let control = lock(&self.tasks)
            .get(id)
            .and_then(|tasks| tasks.get(&op))
            .cloned();
        match control {
            Some(control) => {
                control.stop_for(StopReason::CancelRequested { reason }, notify_running)
            }
            // Its runner already reported; the result is on its way to the inbox.
            None => {
                tracing::debug!(workflow = id, %op, "cancel for an activity that is not running")
            }
        }
    }

    /// Forgets task `op` of workflow `id`: its runner `control` ended (only that runner's
    /// entry: a newer runner of the same task may have replaced it after a re-claim), or,
    /// with `None`, whichever runner is registered.
    pub(crate) fn forget_task(&self, id: &str, op: OpId, control: Option<&Arc<TaskControl>>) {
        let mut tasks = lock(&self.tasks);
        if let Some(entry) = tasks.get_mut(id) {
            let ours = match (entry.get(&op), control) {
                (Some(found), Some(control)) => Arc::ptr_eq(found, control),
                (found, None) => found.is_some(),
                (None, Some(_)) => false,
            };
            if ours {
                entry.remove(&op);
            }
            if entry.is_empty() {
                tasks.remove(id);
            }
        }
    }

    async fn run_activity(self: Arc<Self>, job: ActivityJob, control: Arc<TaskControl>) {
        let mut failures = job
            .local
            .as_ref()
            .map(|local| local.failures.clone())
            .unwrap_or_default();
        let Some(end) = self.run_attempts(&job, &control, &mut failures).await else {
            self.forget_task(&job.workflow_id, job.op, Some(&control));
            return;
        };
        let op = job.op;
        let event = match (end, &job.local) {
            (RunEnd::Done { result, attempt }, Some(_)) => Event::LocalActivityEnded {
                op,
                result,
                attempts: attempt,
                failures,
            },
            // Only a local activity's runner backs off this way.
            (RunEnd::Backoff { attempt, delay }, _) => Event::LocalActivityBackoff {
                op,
                attempt,
                retry_at_ms: self
                    .clock
                    .now_ms()
                    .saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
                failures,
            },
            (
                RunEnd::Done {
                    result: Ok(result), ..
                },
                None,
            ) => {
                tracing::info!(workflow = %job.workflow_id, %op, activity = %job.activity, "activity completed");
                Event::ActivityCompleted { op, result }
            }
            (
                RunEnd::Done {
                    result: Err(failure),
                    ..
                },
                None,
            ) => {
                tracing::info!(workflow = %job.workflow_id, %op, activity = %job.activity, %failure, "activity failed");
                Event::ActivityFailed { op, failure }
            }
        };
        let epoch = job.fence.as_ref().map(|f| f.epoch);
        self.deliver_local(&job.workflow_id, event, epoch);
        self.forget_task(&job.workflow_id, job.op, Some(&control));
    }

    /// Runs attempts until one succeeds, the failure is final, or a cancel stops it; `None`
    /// when the task disappeared (its workflow closed) before an attempt could start.
    async fn run_attempts(
        self: &Arc<Self>,
        job: &ActivityJob,
        control: &Arc<TaskControl>,
        failures: &mut Vec<ActivityFailure>,
    ) -> Option<RunEnd> {
        let op = job.op;
        let Some(activity) = self.activities.get(job.activity.as_str()).cloned() else {
            return Some(RunEnd::failed(
                job.first_attempt.max(1),
                ActivityFailure::Application {
                    message: format!(
                        "activity `{}` is not registered with this engine; register it with \
                         `Engine::builder().activity({})`",
                        job.activity, job.activity
                    ),
                    non_retryable: true,
                },
            ));
        };
        let mut attempt = job.first_attempt.max(1);
        let mut details = job.previous_details.clone();
        let after_scheduling = |timeout: Option<Duration>| {
            timeout.map(|t| {
                let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
                job.scheduled_at_ms.saturating_add(ms)
            })
        };
        // No attempt starts once the call's schedule-to-close deadline passed, and none runs
        // past it.
        let close_by = after_scheduling(job.options.schedule_to_close_timeout);
        let close_deadline = close_by.map(|ms| self.clock.instant_at(ms));
        // The first attempt must start (or, after its worker died, start again) in time.
        if attempt == 1 {
            let start_by = after_scheduling(job.options.schedule_to_start_timeout);
            if start_by.is_some_and(|ms| self.clock.now_ms() >= ms) {
                return Some(RunEnd::failed(
                    attempt,
                    ActivityFailure::Timeout {
                        kind: TimeoutKind::ScheduleToStart,
                    },
                ));
            }
        }
        loop {
            if close_by.is_some_and(|ms| self.clock.now_ms() >= ms) {
                return Some(RunEnd::failed(
                    attempt,
                    ActivityFailure::Timeout {
                        kind: TimeoutKind::ScheduleToClose,
                    },
                ));
            }
            // The first attempt of a new task is already recorded with the task: checking
            // that the task is still there (its workflow was not closed since) is a read.
            let fence = job.fence.clone()?;
            if self.fence(&job.workflow_id).as_ref() != Some(&fence) {
                return None; // lost to another worker (or held anew): not this runner's to run
            }
            // A local activity has no task record to check or write (R6.7).
            let recorded = if job.local.is_some() {
                Ok(())
            } else if attempt == 1 {
                self.task_still_stored(&job.workflow_id, op).await
            } else {
                self.store
                    .record_task_attempt(&job.workflow_id, op, attempt, Some(&fence))
                    .await
            };
            match recorded {
                Ok(()) => {}
                // The workflow closed or was terminated after this task was committed: no
                // attempt may start, and there is nobody to report to.
                Err(StoreError::NotFound(_)) => return None,
                Err(StoreError::LeaseLost { .. }) => return None,
                Err(e) => {
                    tracing::warn!(workflow = %job.workflow_id, %op, "could not record the attempt: {e}")
                }
            }
            // R6.1 / R6.4: a cancelled task never starts another attempt.
            if control.stop.is_cancelled() {
                return Some(RunEnd::failed(attempt, ActivityFailure::Cancelled));
            }
            // A local activity runs beside the step that waits for it: a stop reaches it at
            // once, not at its next heartbeat (R6.7).
            let state = Arc::new(match job.local {
                Some(_) => AttemptState::told_at_once(control),
                None => AttemptState::default(),
            });
            let info = ActivityInfo {
                workflow_id: job.workflow_id.clone(),
                op,
                activity: job.activity.clone(),
                attempt,
            };
            let ctx = ActivityContext::new(info, details.clone(), control.clone(), state.clone());
            let fut = match activity.start(ctx, job.input.clone()) {
                Ok(fut) => fut,
                Err(message) => {
                    return Some(RunEnd::failed(
                        attempt,
                        ActivityFailure::Application {
                            message,
                            non_retryable: true,
                        },
                    ))
                }
            };
            let span = tracing::info_span!(
                "activity_attempt",
                workflow = %job.workflow_id,
                %op,
                activity = %job.activity,
                attempt
            );
            let end = self
                .supervise(job, fut, &state, close_deadline)
                .instrument(span)
                .await;
            if let Some(last) = state.last_details() {
                details = Some(last);
            }
            let failure = match end {
                AttemptEnd::Returned(Ok(result)) => {
                    return Some(RunEnd::Done {
                        result: Ok(result),
                        attempt,
                    });
                }
                AttemptEnd::Returned(Err(ActivityError::Cancelled))
                    if control.cancel.is_cancelled() =>
                {
                    return Some(RunEnd::failed(attempt, ActivityFailure::Cancelled));
                }
                // R6.5: a cancellation nobody asked for is a failure.
                AttemptEnd::Returned(Err(ActivityError::Cancelled)) => {
                    ActivityFailure::Application {
                        message: "activity returned a cancellation error but no cancel was \
                                  requested"
                            .to_string(),
                        non_retryable: true,
                    }
                }
                AttemptEnd::Returned(Err(ActivityError::Application {
                    message,
                    non_retryable,
                })) => ActivityFailure::Application {
                    message,
                    non_retryable,
                },
                AttemptEnd::Panicked(message) => ActivityFailure::Application {
                    message: format!("activity panicked: {message}"),
                    non_retryable: false,
                },
                AttemptEnd::TimedOut(kind) => ActivityFailure::Timeout { kind },
            };
            tracing::info!(workflow = %job.workflow_id, %op, activity = %job.activity, attempt, %failure, "attempt failed");
            let final_failure = matches!(
                failure,
                ActivityFailure::Application {
                    non_retryable: true,
                    ..
                } | ActivityFailure::Timeout {
                    kind: TimeoutKind::ScheduleToClose
                }
            );
            // After a cancel the activity's own error is its outcome (WaitCancellationCompleted).
            if final_failure || control.stop.is_cancelled() {
                return Some(RunEnd::failed(attempt, failure));
            }
            let Some(delay) = job.options.retry.delay_before(attempt + 1) else {
                return Some(RunEnd::failed(attempt, failure));
            };
            if job.local.is_some() {
                LocalActivityRun::keep_failures(failures, vec![failure]);
                // R6.7: a long back-off is committed and waited out on a durable timer.
                if delay > LOCAL_RETRY_THRESHOLD {
                    return Some(RunEnd::Backoff {
                        attempt: attempt + 1,
                        delay,
                    });
                }
            }
            // R6.4: a cancel stops a retry waiting in back-off.
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                // The next attempt is the one that never runs.
                _ = control.stop.cancelled() => {
                    return Some(RunEnd::failed(attempt + 1, ActivityFailure::Cancelled))
                }
                // The loop's check reports the schedule-to-close timeout.
                _ = until(close_deadline) => {}
            }
            attempt += 1;
        }
    }

    /// `Ok` if task `op` of workflow `id` is still stored; `NotFound` if its workflow closed
    /// (or was terminated) and dropped it.
    async fn task_still_stored(&self, id: &str, op: OpId) -> Result<(), StoreError> {
        if self.store.tasks(id).await?.iter().any(|t| t.op == op) {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!(
                "task {op} of workflow `{id}`"
            )))
        }
    }

    /// Records the latest heartbeat of an attempt in the store. A heartbeat refused because
    /// the workflow closed (terminated by another process, say) tells the attempt so at its
    /// next heartbeat; one refused because another worker took the workflow over drops the
    /// workflow here, which stops the attempt (its result could not be committed).
    async fn write_heartbeat(self: &Arc<Self>, job: &ActivityJob, state: &AttemptState) {
        let details = state.last_details();
        let at_ms = self.clock.now_ms();
        let Some(fence) = &job.fence else {
            return;
        };
        let Err(e) = self
            .store
            .record_heartbeat(&job.workflow_id, job.op, details, at_ms, Some(fence))
            .await
        else {
            return;
        };
        // A close ends the lease too, so a closed workflow's refusal can read as a lost
        // lease: the row says which.
        let closed = match &e {
            StoreError::AlreadyClosed { status, .. } => Some(Some(*status)),
            StoreError::NotFound(_) => Some(None),
            StoreError::LeaseLost { .. } => {
                match self.store.load_workflow(&job.workflow_id).await {
                    Ok(record) if record.status.is_closed() => Some(Some(record.status)),
                    Err(StoreError::NotFound(_)) => Some(None),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(status) = closed {
            tracing::info!(workflow = %job.workflow_id, op = %job.op, "the workflow closed; the running attempt is told at its next heartbeat");
            // Tells this attempt too: its control is among the workflow's tasks.
            self.on_closed(&job.workflow_id, status);
        } else if !self.lease_lost(&job.workflow_id, &e) {
            tracing::warn!(workflow = %job.workflow_id, op = %job.op, "could not record a heartbeat: {e}");
        }
    }

    /// Runs one attempt against its start-to-close timeout and heartbeat watchdog (R6.4),
    /// recording heartbeats in the store as they come.
    async fn supervise(
        self: &Arc<Self>,
        job: &ActivityJob,
        fut: crate::BoxFuture<Result<serde_json::Value, ActivityError>>,
        state: &AttemptState,
        close_deadline: Option<Instant>,
    ) -> AttemptEnd {
        let fut = AssertUnwindSafe(fut).catch_unwind();
        tokio::pin!(fut);
        let start = Instant::now();
        // A deadline too far to represent is no deadline (never a panic).
        let start_to_close = job
            .options
            .effective_start_to_close_timeout()
            .and_then(|d| start.checked_add(d));
        let heartbeat_timeout: Option<Duration> = job.options.heartbeat_timeout;
        let mut heartbeat_deadline = heartbeat_timeout.and_then(|d| start.checked_add(d));
        let mut writing: Option<
            std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>,
        > = None;
        let mut beat_waiting = false;
        let end = loop {
            tokio::select! {
                biased;
                end = &mut fut => {
                    break match end {
                        Ok(result) => AttemptEnd::Returned(result),
                        Err(payload) => AttemptEnd::Panicked(
                            payload
                                .downcast_ref::<&str>()
                                .map(|s| s.to_string())
                                .or_else(|| payload.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "a panic with a non-string payload".to_string()),
                        ),
                    };
                }
                // A local activity's heartbeat is only its way to hear a stop: nothing is
                // written, and it has no heartbeat timeout.
                _ = state.beat.notified(), if job.local.is_none() => {
                    heartbeat_deadline = heartbeat_timeout.and_then(|d| Instant::now().checked_add(d));
                    // The activity keeps running while its heartbeat is written; beats that
                    // come meanwhile are folded into one more write of the latest details.
                    if writing.is_none() {
                        writing = Some(Box::pin(self.write_heartbeat(job, state)));
                    } else {
                        beat_waiting = true;
                    }
                }
                _ = async { writing.as_mut().expect("guarded by the condition").await }, if writing.is_some() => {
                    writing = None;
                    if std::mem::take(&mut beat_waiting) {
                        writing = Some(Box::pin(self.write_heartbeat(job, state)));
                    }
                }
                _ = until(start_to_close) => break AttemptEnd::TimedOut(TimeoutKind::StartToClose),
                _ = until(heartbeat_deadline) => break AttemptEnd::TimedOut(TimeoutKind::Heartbeat),
                _ = until(close_deadline) => break AttemptEnd::TimedOut(TimeoutKind::ScheduleToClose),
            }
        };
        // The last heartbeat is stored before the attempt's end is reported: a write in
        // flight finishes, and a beat not written yet (folded into the next write, or made
        // in the very poll that ended the attempt) is written now.
        if let Some(write) = writing.take() {
            write.await;
        }
        if job.local.is_none() && (beat_waiting || state.beat.notified().now_or_never().is_some()) {
            self.write_heartbeat(job, state).await;
        }
        end
    }
}
