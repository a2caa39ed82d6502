//! The traits the macros implement ([`Activity`], [`Workflow`], [`WorkflowMachine`]), the state
//! graph a workflow describes itself with, and the type-erased forms the engine stores in its
//! registry.

use crate::step::StepContext;
use crate::{ActivityContext, ActivityError, IsCancellation, WorkflowError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::{self, Display};
use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future, as returned by [`Activity::run`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A named, typed activity. Implemented by `#[activity]` on an
/// `async fn(ActivityContext, Input) -> Result<Output, ActivityError>`.
pub trait Activity: Copy + Send + Sync + 'static {
    /// The name the activity is registered and scheduled under.
    const NAME: &'static str;
    /// What the activity takes.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// What the activity returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// Runs one attempt.
    fn run(
        self,
        ctx: ActivityContext,
        input: Self::Input,
    ) -> BoxFuture<Result<Self::Output, ActivityError>>;
}

/// The bounds on a workflow's error type: it must say whether it is a cancellation (R2), be
/// storable, printable, and convertible from the errors operations resolve with.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error type of a workflow",
    label = "a workflow's error must implement `IsCancellation`, `From<WorkflowError>`, `Display`, `Serialize` and `Deserialize`",
    note = "use `workflow_core::WorkflowError`, or implement those traits for your own error type (`IsCancellation` decides whether the workflow closes Canceled or Failed)"
)]
pub trait WorkflowFailure:
    IsCancellation + From<WorkflowError> + Serialize + DeserializeOwned + Display + Send + 'static
{
}

impl<E> WorkflowFailure for E where
    E: IsCancellation
        + From<WorkflowError>
        + Serialize
        + DeserializeOwned
        + Display
        + Send
        + 'static
{
}

/// The result of resuming a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    /// Suspended: waiting for operations that have not resolved.
    Pending,
    /// Finished with this output.
    Ready(T),
}

/// A workflow compiled into a state machine: the enum `#[workflow]` generates.
///
/// `resume` is pure. It reads resolved operations from the [`StepContext`], starts new ones
/// through it, and returns [`Step::Pending`] at the first operation that has not resolved.
pub trait WorkflowMachine: Serialize + DeserializeOwned + Send + 'static {
    /// What the workflow function returns.
    type Output;
    /// Runs the machine until it suspends or finishes.
    fn resume(&mut self, cx: &StepContext) -> Step<Self::Output>;
    /// The name of the current state (a variant of the enum).
    fn state_name(&self) -> &'static str;
}

/// A workflow type. `#[workflow] async fn checkout(..)` generates a unit struct `checkout`
/// implementing this trait and an enum `CheckoutState` implementing [`WorkflowMachine`].
pub trait Workflow: Copy + Send + Sync + 'static {
    /// The name it is registered and stored under.
    const NAME: &'static str;
    /// A fingerprint of the state enum's layout. A snapshot taken under another fingerprint
    /// is not resumed.
    const SCHEMA: u64;
    /// What the workflow takes.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// What it returns on success.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// What it returns on failure.
    type Error: WorkflowFailure;
    /// The generated state machine.
    type State: WorkflowMachine<Output = Result<Self::Output, Self::Error>>;
    /// The machine in its start state.
    fn start(input: Self::Input) -> Self::State;
    /// The compiled state graph, cancellation branches included.
    fn graph() -> StateGraph;
}

/// What a state of the graph is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateKind {
    /// The machine before its first step.
    Start,
    /// Suspended at an `.await` of the workflow body.
    Await,
    /// Suspended at an `.await` inside a cancellation handler (a cancel branch).
    Handler,
    /// Finished.
    Finished,
}

/// One state of the compiled machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateNode {
    /// Variant name.
    pub name: String,
    /// What kind of state.
    pub kind: StateKind,
    /// The operation awaited there, as written in the source.
    pub awaits: String,
    /// The locals the variant stores.
    pub fields: Vec<String>,
}

/// An edge of the compiled machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// Source state.
    pub from: String,
    /// Target state.
    pub to: String,
    /// True for edges that only a cancellation takes (into a handler).
    pub on_cancel: bool,
}

/// The state graph of a compiled workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateGraph {
    /// Workflow name.
    pub workflow: String,
    /// All states, start first.
    pub states: Vec<StateNode>,
    /// All transitions.
    pub transitions: Vec<Transition>,
}

impl StateGraph {
    /// The graph as a Mermaid `stateDiagram-v2`.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("stateDiagram-v2\n");
        for s in &self.states {
            if !s.awaits.is_empty() {
                out.push_str(&format!(
                    "    {}: {} ({})\n",
                    s.name,
                    s.name,
                    s.awaits.replace(':', "#58;")
                ));
            }
        }
        out.push_str(&format!(
            "    [*] --> {}\n",
            self.states.first().map_or("Start", |s| &s.name)
        ));
        for t in &self.transitions {
            let label = if t.on_cancel { ": on cancel" } else { "" };
            out.push_str(&format!("    {} --> {}{}\n", t.from, t.to, label));
        }
        out.push_str("    Finished --> [*]\n");
        out
    }

    /// The graph in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut out = format!("digraph \"{}\" {{\n", self.workflow);
        for s in &self.states {
            let style = if s.kind == StateKind::Handler {
                ", style=dashed"
            } else {
                ""
            };
            out.push_str(&format!(
                "    \"{}\" [label=\"{}\\n{}\"{}];\n",
                s.name,
                s.name,
                s.awaits.replace('"', "'"),
                style
            ));
        }
        for t in &self.transitions {
            let style = if t.on_cancel {
                " [label=\"on cancel\", style=dashed]"
            } else {
                ""
            };
            out.push_str(&format!("    \"{}\" -> \"{}\"{};\n", t.from, t.to, style));
        }
        out.push_str("}\n");
        out
    }
}

impl fmt::Display for StateGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "workflow `{}`", self.workflow)?;
        for s in &self.states {
            let next: Vec<String> = self
                .transitions
                .iter()
                .filter(|t| t.from == s.name)
                .map(|t| {
                    if t.on_cancel {
                        format!("{} (on cancel)", t.to)
                    } else {
                        t.to.clone()
                    }
                })
                .collect();
            write!(f, "  {:<24}", s.name)?;
            if !s.awaits.is_empty() {
                write!(f, " awaits {}", s.awaits)?;
            }
            if !s.fields.is_empty() {
                write!(f, " holds {{{}}}", s.fields.join(", "))?;
            }
            if !next.is_empty() {
                write!(f, " -> {}", next.join(" | "))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// A workflow error in stored form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// `Display` of the error.
    pub message: String,
    /// Whether it counts as a cancellation.
    pub is_cancellation: bool,
    /// The error itself, as JSON.
    pub error: serde_json::Value,
}

/// A workflow type with its types erased, as the engine's registry holds it.
pub trait DynWorkflow: Send + Sync {
    /// Registered name.
    fn name(&self) -> &'static str;
    /// Schema fingerprint.
    fn schema(&self) -> u64;
    /// A machine in its start state, from a JSON input.
    fn start(&self, input: serde_json::Value) -> Result<Box<dyn DynMachine>, String>;
    /// A machine restored from its state's JSON text.
    fn restore(&self, state: &str) -> Result<Box<dyn DynMachine>, String>;
    /// The state graph.
    fn graph(&self) -> StateGraph;
}

/// A machine with its types erased.
pub trait DynMachine: Send {
    /// Runs the machine until it suspends or finishes.
    fn resume(&mut self, cx: &StepContext) -> Step<Result<serde_json::Value, ErrorRecord>>;
    /// The machine's state as JSON text.
    fn snapshot(&self) -> Result<crate::Snapshot, String>;
    /// Name of the current state.
    fn state_name(&self) -> &'static str;
}

/// Wraps a [`Workflow`] for the registry.
pub struct Registered<W>(pub W);

struct ErasedMachine<W: Workflow>(W::State);

impl<W: Workflow> DynWorkflow for Registered<W> {
    fn name(&self) -> &'static str {
        W::NAME
    }
    fn schema(&self) -> u64 {
        W::SCHEMA
    }
    fn start(&self, input: serde_json::Value) -> Result<Box<dyn DynMachine>, String> {
        let input: W::Input = serde_json::from_value(input).map_err(|e| {
            format!(
                "the input does not match workflow `{}`'s input type: {e}",
                W::NAME
            )
        })?;
        Ok(Box::new(ErasedMachine::<W>(W::start(input))))
    }
    fn restore(&self, state: &str) -> Result<Box<dyn DynMachine>, String> {
        let state: W::State = serde_json::from_str(state).map_err(|e| {
            format!(
                "the snapshot of workflow `{}` does not decode: {e}",
                W::NAME
            )
        })?;
        Ok(Box::new(ErasedMachine::<W>(state)))
    }
    fn graph(&self) -> StateGraph {
        W::graph()
    }
}

impl<W: Workflow> DynMachine for ErasedMachine<W> {
    fn resume(&mut self, cx: &StepContext) -> Step<Result<serde_json::Value, ErrorRecord>> {
        // Where the step resumes, for the sentences that record a failed cleanup (R4.3).
        cx.resuming(W::NAME, self.0.state_name());
        match self.0.resume(cx) {
            Step::Pending => Step::Pending,
            Step::Ready(Ok(output)) => Step::Ready(serde_json::to_value(&output).map_err(|e| {
                let err = WorkflowError::Decode {
                    what: format!("the output of workflow `{}`", W::NAME),
                    message: e.to_string(),
                };
                ErrorRecord {
                    message: err.to_string(),
                    is_cancellation: false,
                    error: serde_json::to_value(&err).unwrap_or_default(),
                }
            })),
            Step::Ready(Err(error)) => Step::Ready(Err(ErrorRecord {
                message: error.to_string(),
                is_cancellation: error.is_cancellation(),
                error: serde_json::to_value(&error).unwrap_or(serde_json::Value::Null),
            })),
        }
    }
    fn snapshot(&self) -> Result<crate::Snapshot, String> {
        crate::Snapshot::of(&self.0).map_err(|e| e.to_string())
    }
    fn state_name(&self) -> &'static str {
        self.0.state_name()
    }
}
