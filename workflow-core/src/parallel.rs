//! Parallel branches (WF `Parallel`, [R11](crate::semantics#r11-parallel-branches)):
//! `ctx.parallel(condition, [async { .. }, ..])` runs every branch as its own nested state machine,
//! in its own cancellable scope under a scope of the whole block. After each branch ends the
//! completion condition is evaluated; once it holds, the branches still running are cancelled
//! (their handlers run) and the block completes when all of them have ended.

use crate::step::{ScopeId, StepContext};
use crate::WorkflowError;
use serde::{Deserialize, Serialize};

/// How far a parallel block is, as its completion condition sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParallelProgress {
    /// Number of branches.
    pub total: usize,
    /// Branches that returned `Ok`.
    pub completed: usize,
    /// Branches that returned an error that is not a cancellation.
    pub failed: usize,
    /// Branches that ended with a cancellation error.
    pub cancelled: usize,
}

impl ParallelProgress {
    /// Branches that have ended, however.
    pub fn ended(&self) -> usize {
        self.completed + self.failed + self.cancelled
    }

    /// Whether every branch has ended.
    pub fn all_ended(&self) -> bool {
        self.ended() == self.total
    }
}

/// What a parallel block yields: how each branch ended (`None` is impossible once the block
/// completed; kept for the order of branches).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParallelOutcome {
    /// Each branch's result, in the order the branches were written.
    pub results: Vec<Result<(), WorkflowError>>,
    /// Whether the completion condition held (and cut the remaining branches short).
    pub condition_met: bool,
}

/// A branch compiled into its own machine (implemented by the code `#[workflow]` generates).
#[doc(hidden)]
pub trait Branch {
    /// Runs the branch until it suspends (`None`) or ends.
    fn drive(&mut self, cx: &StepContext, scope: ScopeId) -> Option<Result<(), WorkflowError>>;
}

/// The runtime side of a parallel block, kept in the parent's state.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParallelRun {
    scope: ScopeId,
    branches: Vec<ScopeId>,
    results: Vec<Option<Result<(), WorkflowError>>>,
    condition_met: bool,
}

impl ParallelRun {
    /// Opens the block's scope under `parent` and one cancellable scope per branch under it.
    pub(crate) fn open(cx: &StepContext, parent: ScopeId, n: usize) -> Self {
        let scope = cx.open_scope(parent, crate::ScopeKind::Cancellable, None);
        let branches = (0..n)
            .map(|_| cx.open_scope(scope, crate::ScopeKind::Cancellable, None))
            .collect();
        ParallelRun {
            scope,
            branches,
            results: vec![None; n],
            condition_met: false,
        }
    }

    /// The scope of branch `i`.
    pub fn branch_scope(&self, i: usize) -> ScopeId {
        self.branches.get(i).copied().unwrap_or(self.scope)
    }

    fn progress(&self) -> ParallelProgress {
        let mut p = ParallelProgress {
            total: self.results.len(),
            completed: 0,
            failed: 0,
            cancelled: 0,
        };
        for r in self.results.iter().flatten() {
            match r {
                Ok(()) => p.completed += 1,
                Err(e) if crate::IsCancellation::is_cancellation(e) => p.cancelled += 1,
                Err(_) => p.failed += 1,
            }
        }
        p
    }

    /// Drives the branches still running until none makes progress in this step. `None`
    /// while some branch is suspended; the outcome once all have ended.
    pub(crate) fn drive(
        &mut self,
        cx: &StepContext,
        branches: &mut [&mut dyn Branch],
        condition: &dyn Fn(&ParallelProgress) -> bool,
    ) -> Option<ParallelOutcome> {
        loop {
            let mut progressed = false;
            for (i, branch) in branches.iter_mut().enumerate() {
                if self.results.get(i).is_none_or(|r| r.is_some()) {
                    continue;
                }
                let scope = self.branch_scope(i);
                let Some(end) = branch.drive(cx, scope) else {
                    continue;
                };
                progressed = true;
                cx.close_scope(scope);
                self.results[i] = Some(end);
                if !self.condition_met && condition(&self.progress()) {
                    // R11: the others are cancelled; their handlers run as they end.
                    self.condition_met = true;
                    for (j, r) in self.results.iter().enumerate() {
                        if r.is_none() {
                            cx.cancel_scope(
                                self.branch_scope(j),
                                "the parallel block's completion condition holds",
                            );
                        }
                    }
                }
            }
            if self.results.iter().all(Option::is_some) {
                cx.close_scope(self.scope);
                return Some(ParallelOutcome {
                    results: self.results.iter().flatten().cloned().collect(),
                    condition_met: self.condition_met,
                });
            }
            if !progressed {
                return None;
            }
        }
    }
}
