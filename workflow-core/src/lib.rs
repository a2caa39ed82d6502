//! Durable workflows whose cancellation behaviour is correct by construction.
//!
//! Write a workflow as an `async fn` marked [`#[workflow]`](macro@workflow). The macro compiles
//! it into an explicit, serde-serializable state machine: an enum with one variant per
//! suspension point holding only the live locals, plus the branches that run cancellation
//! handlers (`on_cancel!`) with a disconnected context. The [`Engine`] runs those machines,
//! runs activities and timers, delivers cancellation, and commits every step, so a workflow
//! resumes in a fresh engine from its snapshot without replaying anything.
//!
//! ```
//! use workflow_core::prelude::*;
//!
//! #[activity]
//! async fn greet(_ctx: ActivityContext, name: String) -> Result<String, ActivityError> {
//!     Ok(format!("hello {name}"))
//! }
//!
//! #[workflow]
//! async fn greeter(ctx: WorkflowContext, name: String) -> Result<String, WorkflowError> {
//!     ctx.sleep(Duration::from_secs(3600)).await?;      // a durable timer
//!     let greeting = ctx.activity(greet, name).await?;  // kept in the state as it is live
//!     Ok(greeting)
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // `in_memory()` for this example; by default the engine stores workflows in a SQLite
//! // file (`WF_DB`, or `workflows.db`), so they survive restarts.
//! let engine = Engine::builder()
//!     .register(greeter)
//!     .activity(greet)
//!     .in_memory()
//!     .build()
//!     .await?;
//! let run = engine.client().start(greeter, "greet-1", "ada".to_string()).await?;
//! assert_eq!(run.outcome().await?, Outcome::Completed("hello ada".to_string()));
//! # Ok(())
//! # }
//! ```
//!
//! See the README for a tour, [`semantics`] for the cancellation rules (R1.1 … R13) that the
//! docs and tests cite, and [`WorkflowContext`] for every form a workflow can await.
#![warn(missing_docs)]

mod activity;
#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod context;
pub mod dry_run;
mod engine;
mod error;
mod history;
pub mod json_limits;
mod options;
mod parallel;
mod snapshot;
mod step;
mod store;
#[cfg(feature = "cli")]
mod terminal;
mod time;
mod workflow;

#[doc(hidden)]
pub mod __private;

// The rules live in one Markdown file, read on GitHub and in the package as well as here.
#[doc = include_str!("../SEMANTICS.md")]
pub mod semantics {}

pub use activity::{ActivityContext, ActivityInfo, StopReason};
pub use client::{Client, Description, Outcome, OutcomeWithCleanup, WorkflowRun, WorkflowStatus};
pub use context::{
    ActivityCall, CancelExternalCall, CancelledCall, ChildCall, Handle, JoinCall, Joined,
    LocalActivityCall, OpHandle, Operation, RaceCall, RaceSet, Raced, ScopeHandle, SleepCall,
    WorkflowContext,
};
pub use engine::{
    Engine, EngineBuilder, DEFAULT_ACTIVITY_GRACE, DEFAULT_CACHED_MACHINES, DEFAULT_DATABASE,
    DEFAULT_LEASE,
};
pub use error::{
    ActivityError, ActivityFailure, ChildFailure, ClientError, IsCancellation, StoreError,
    TimeoutKind, WorkflowError, WorkflowFault,
};
pub use history::{EventKind, HistoryEvent};
pub use options::{
    ActivityCancellationType, ActivityOptions, ChildWorkflowCancellationType, IdReusePolicy,
    LocalActivityOptions, ParentClosePolicy, RetryPolicy, StartOptions, UnhandledErrorAction,
    DEFAULT_LOCAL_START_TO_CLOSE_TIMEOUT, DEFAULT_START_TO_CLOSE_TIMEOUT, LOCAL_RETRY_THRESHOLD,
    MAX_EXECUTION_TIMEOUT,
};
pub use parallel::{ParallelOutcome, ParallelProgress};
pub use snapshot::Snapshot;
pub use step::{
    ChildOutcome, Command, Event, ExecutionTimeout, Instance, InvalidInstance, LocalActivityRun,
    OpId, OpKind, OpRecord, OpStatus, PendingOperation, RunningChild, ScopeId, ScopeKind,
    ScopeRecord, StartedScope, StepContext, StepOutput, MAX_OP_ID,
};
/// Test support for the PostgreSQL store: a fresh schema per test.
#[cfg(feature = "postgres")]
#[doc(hidden)]
pub use store::postgres::testing as postgres_testing;
#[cfg(feature = "postgres")]
pub use store::PostgresStore;
pub use store::{
    is_postgres_url, open_location, Fence, InboxEntry, Lease, LeaseRequest, MemoryStore,
    NewWorkflow, ParentLink, Purge, RunningWorkflow, StepCommit, Store, StoreChange, TaskCancel,
    TaskRecord, TimerRecord, WorkflowClose, WorkflowRecord,
};
#[cfg(feature = "sqlite")]
pub use store::{SqliteOptions, SqliteStore};
pub use time::Clock;
pub use workflow::{
    Activity, BoxFuture, DynMachine, DynWorkflow, ErrorRecord, Registered, StateGraph, StateKind,
    StateNode, Step, Transition, Workflow, WorkflowFailure, WorkflowMachine,
};
pub use workflow_macros::{activity, on_cancel, workflow};

/// Everything a workflow or activity author needs, in one `use`.
pub mod prelude {
    pub use crate::{
        activity, on_cancel, workflow, ActivityCancellationType, ActivityContext, ActivityError,
        ChildWorkflowCancellationType, Client, Engine, IsCancellation, OpHandle, Outcome,
        ParentClosePolicy, RetryPolicy, ScopeHandle, UnhandledErrorAction, WorkflowContext,
        WorkflowError, WorkflowStatus,
    };
    pub use std::time::Duration;
}
