//! Checks a decoded [`Instance`] before a step trusts it.
//!
//! A snapshot is data: a damaged row, a hand-edited file or a bug in another version can
//! give a runtime state that decodes but describes no state the engine could have reached,
//! such as a scope tree with a cycle (cancelling it would walk the cycle forever) or an
//! operation counter at the top of its range (the next operation would overflow it). The
//! engine checks every snapshot it decodes and records one that fails as
//! [`WorkflowFault::CorruptSnapshot`](crate::WorkflowFault::CorruptSnapshot) on its
//! workflow alone.
//!
//! What a reachable state looks like, and so what is checked:
//! - scope 0 is the root: kind `Root`, no parent; no other scope is a root;
//! - a disconnected scope has no parent; a cancellable or non-cancellable scope has a parent
//!   that was opened before it (a smaller id), which makes the scopes a forest of trees;
//! - operation ids are below `next_op`, and `next_op` is at most [`MAX_OP_ID`], so creating
//!   operations can never overflow it;
//! - every scope an operation, a timeout or a handler names exists, and a race or join names
//!   only operations created before it;
//! - a started scope's kept block is awaited through an operation of that scope;
//! - a local activity whose call still waits for it has its run record (what a restart runs
//!   again, R6.7), and every run record belongs to such a call, with an attempt of at least 1;
//! - only a disconnected scope is a cancellation handler's;
//! - an execution timeout lies between 1 ms and `MAX_EXECUTION_TIMEOUT`, its deadline is not
//!   before it (a start before 1970), and its timer is below `next_op` and not in the
//!   operation table.

use super::instance::{Instance, OpId, OpKind, OpStatus, ScopeId, ScopeKind};
use crate::options::MAX_EXECUTION_TIMEOUT;

/// The largest operation counter a snapshot may hold: 2^53, the largest integer every JSON
/// reader keeps exactly. A workflow would need to create an operation every nanosecond for
/// about a hundred days to reach it.
pub const MAX_OP_ID: u64 = 1 << 53;

/// Why a decoded runtime state is not one the engine could have written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("its runtime state is inconsistent: {0}")]
pub struct InvalidInstance(String);

fn invalid(message: impl Into<String>) -> Result<(), InvalidInstance> {
    Err(InvalidInstance(message.into()))
}

impl Instance {
    /// Checks that this runtime state is one the engine could have reached (see the module
    /// documentation). Runs in time linear in the size of the state.
    pub fn validate(&self) -> Result<(), InvalidInstance> {
        self.validate_scopes()?;
        self.validate_ops()?;
        self.validate_local_activities()?;
        self.validate_execution_timeout()
    }

    fn validate_local_activities(&self) -> Result<(), InvalidInstance> {
        for (op, run) in &self.local_activities {
            match self.ops.get(op) {
                Some(rec)
                    if matches!(rec.kind, OpKind::LocalActivity { .. })
                        && matches!(rec.status, OpStatus::Pending | OpStatus::CancelRequested) => {}
                _ => {
                    return invalid(format!(
                        "the local activity run of {op} belongs to no local activity call that \
                         waits for it"
                    ))
                }
            }
            if run.attempt == 0 {
                return invalid(format!("the local activity run of {op} is at attempt 0"));
            }
        }
        let unrecorded = self.ops.iter().find(|(op, rec)| {
            matches!(rec.kind, OpKind::LocalActivity { .. })
                && matches!(rec.status, OpStatus::Pending | OpStatus::CancelRequested)
                && !self.local_activities.contains_key(op)
        });
        if let Some((op, _)) = unrecorded {
            return invalid(format!(
                "local activity {op} waits, but its run (input, options) is not recorded: it \
                 could never run again"
            ));
        }
        Ok(())
    }

    fn validate_scopes(&self) -> Result<(), InvalidInstance> {
        if self.scopes.is_empty() {
            return invalid("it has no root scope");
        }
        if u32::try_from(self.scopes.len()).is_err() {
            return invalid(format!(
                "{} scopes is more than a workflow can open",
                self.scopes.len()
            ));
        }
        for (i, scope) in self.scopes.iter().enumerate() {
            match (i, scope.kind, scope.parent) {
                (0, ScopeKind::Root, None) => {}
                (0, kind, parent) => {
                    return invalid(format!(
                        "scope 0 must be the root scope without a parent, found {kind:?} with \
                         parent {parent:?}"
                    ))
                }
                (_, ScopeKind::Root, _) => {
                    return invalid(format!("scope {i} is a second root scope"))
                }
                (_, ScopeKind::Disconnected, None) => {}
                (_, ScopeKind::Disconnected, Some(p)) => {
                    return invalid(format!(
                        "disconnected scope {i} has a parent (scope {})",
                        p.0
                    ))
                }
                (_, ScopeKind::Cancellable | ScopeKind::NonCancellable, Some(p))
                    if (p.0 as usize) < i => {}
                (_, kind, parent) => {
                    return invalid(format!(
                        "{kind:?} scope {i} must have a parent opened before it, found {parent:?}"
                    ))
                }
            }
            if scope.handler.is_some() && scope.kind != ScopeKind::Disconnected {
                return invalid(format!(
                    "{:?} scope {i} is marked as a cancellation handler's, which only a \
                     disconnected scope is",
                    scope.kind
                ));
            }
        }
        Ok(())
    }

    fn validate_execution_timeout(&self) -> Result<(), InvalidInstance> {
        let Some(timeout) = &self.execution_timeout else {
            return Ok(());
        };
        let longest = MAX_EXECUTION_TIMEOUT.as_millis() as u64;
        if !(1..=longest).contains(&timeout.after_ms) {
            return invalid(format!(
                "its execution timeout of {} ms is outside 1..={longest} ms",
                timeout.after_ms
            ));
        }
        if timeout.deadline_ms < timeout.after_ms {
            return invalid(format!(
                "its execution deadline {} ms is less than its timeout of {} ms: no start \
                 gives it",
                timeout.deadline_ms, timeout.after_ms
            ));
        }
        if let Some(op) = timeout.timer {
            if op.0 >= self.next_op {
                return invalid(format!(
                    "its execution timeout's timer {op} is not below its operation counter {}",
                    self.next_op
                ));
            }
            if self.ops.contains_key(&op) {
                return invalid(format!(
                    "its execution timeout's timer {op} is also in its operation table"
                ));
            }
        }
        Ok(())
    }

    fn validate_ops(&self) -> Result<(), InvalidInstance> {
        if self.next_op == 0 || self.next_op > MAX_OP_ID {
            return invalid(format!(
                "its operation counter {} is outside 1..={MAX_OP_ID}",
                self.next_op
            ));
        }
        let known_scope = |s: ScopeId| (s.0 as usize) < self.scopes.len();
        let below_next = |op: OpId| op.0 < self.next_op;
        for (op, rec) in &self.ops {
            if !below_next(*op) {
                return invalid(format!(
                    "{op} is not below its operation counter {}",
                    self.next_op
                ));
            }
            if !known_scope(rec.scope) {
                return invalid(format!(
                    "{op} belongs to scope {}, which does not exist",
                    rec.scope.0
                ));
            }
            match &rec.kind {
                OpKind::Timer {
                    timeout_of: Some(scope),
                    ..
                } if !known_scope(*scope) => {
                    return invalid(format!(
                        "timer {op} is the timeout of scope {}, which does not exist",
                        scope.0
                    ))
                }
                OpKind::Scope { scope } if !known_scope(*scope) => {
                    return invalid(format!(
                        "{op} awaits the block of scope {}, which does not exist",
                        scope.0
                    ))
                }
                OpKind::Race { ops } | OpKind::Join { ops } => {
                    if let Some(bad) = ops.iter().find(|o| **o >= *op) {
                        return invalid(format!(
                            "{op} waits for {bad}, which was not created before it"
                        ));
                    }
                }
                _ => {}
            }
        }
        if let Some(op) = self.children.keys().find(|op| !below_next(**op)) {
            return invalid(format!(
                "child {op} is not below its operation counter {}",
                self.next_op
            ));
        }
        let handlers = self
            .closing
            .iter()
            .flat_map(|c| c.queue.iter())
            .chain(self.explicit.iter());
        for run in handlers {
            if !known_scope(run.scope) {
                return invalid(format!(
                    "a handler of compensable block #{} runs in scope {}, which does not exist",
                    run.site, run.scope.0
                ));
            }
        }
        for run in &self.started_scopes {
            let awaited = self.ops.get(&run.op).map(|rec| &rec.kind);
            if awaited != Some(&OpKind::Scope { scope: run.scope }) {
                return invalid(format!(
                    "the started scope {} is awaited through {}, which is not its operation",
                    run.scope.0, run.op
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An instance decoded from `value` (a default instance with `edit` applied).
    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> Instance {
        let mut value = serde_json::to_value(Instance::default()).unwrap();
        edit(&mut value);
        serde_json::from_value(value).unwrap()
    }

    fn rejected(edit: impl FnOnce(&mut serde_json::Value), says: &str) {
        let err = edited(edit).validate().unwrap_err().to_string();
        assert!(err.contains(says), "expected `{says}` in: {err}");
    }

    /// A state with a nested tree, a disconnected scope, operations, a race and a timeout.
    fn busy() -> serde_json::Value {
        json!({
            "next_op": 5,
            "scopes": [
                {"kind": "Root"},
                {"kind": "Cancellable", "parent": 0},
                {"kind": "NonCancellable", "parent": 1},
                {"kind": "Disconnected"},
                {"kind": "Cancellable", "parent": 2}
            ],
            "ops": {
                "1": {"kind": "CancelSignal", "scope": 4, "status": "Pending"},
                "2": {"kind": {"Timer": {"duration_ms": 5, "fire_at_ms": 9, "timeout_of": 1}},
                      "scope": 1, "status": "Pending"},
                "4": {"kind": {"Race": {"ops": [1, 2]}}, "scope": 3, "status": "Pending"}
            }
        })
    }

    #[test]
    fn states_the_engine_writes_are_valid() {
        Instance::default().validate().unwrap();
        let busy: Instance = serde_json::from_value(busy()).unwrap();
        busy.validate().unwrap();
    }

    #[test]
    fn a_scope_tree_with_a_cycle_is_invalid() {
        // The damage the issue reports: the root made its own parent.
        rejected(
            |v| v["scopes"][0] = json!({"kind": "Cancellable", "parent": 0}),
            "scope 0",
        );
        // Two scopes parenting each other.
        rejected(
            |v| {
                v["scopes"] = json!([
                    {"kind": "Root"},
                    {"kind": "Cancellable", "parent": 2},
                    {"kind": "Cancellable", "parent": 1}
                ])
            },
            "scope 1 must have a parent opened before it",
        );
        rejected(
            |v| v["scopes"] = json!([{"kind": "Root"}, {"kind": "NonCancellable", "parent": 1}]),
            "scope 1 must have a parent opened before it",
        );
    }

    #[test]
    fn scopes_must_have_the_parents_their_kind_needs() {
        rejected(|v| v["scopes"] = json!([]), "no root scope");
        rejected(
            |v| v["scopes"][0] = json!({"kind": "Disconnected"}),
            "scope 0 must be the root",
        );
        rejected(
            |v| v["scopes"] = json!([{"kind": "Root"}, {"kind": "Root"}]),
            "second root",
        );
        rejected(
            |v| v["scopes"] = json!([{"kind": "Root"}, {"kind": "Disconnected", "parent": 0}]),
            "disconnected scope 1 has a parent",
        );
        rejected(
            |v| v["scopes"] = json!([{"kind": "Root"}, {"kind": "Cancellable"}]),
            "Cancellable scope 1 must have a parent",
        );
    }

    #[test]
    fn r4_3_only_a_disconnected_scope_is_a_cancellation_handlers() {
        edited(|v| {
            v["scopes"] =
                json!([{"kind": "Root"}, {"kind": "Disconnected", "handler": "on_cancel#0"}])
        })
        .validate()
        .unwrap();
        rejected(
            |v| v["scopes"] = json!([{"kind": "Root"}, {"kind": "Cancellable", "parent": 0, "handler": "on_cancel#0"}]),
            "Cancellable scope 1 is marked as a cancellation handler's",
        );
        rejected(
            |v| v["scopes"][0]["handler"] = json!("on_cancel#0"),
            "Root scope 0 is marked",
        );
    }

    #[test]
    fn r5_3_a_damaged_execution_timeout_is_invalid() {
        let timeout = |t: serde_json::Value| {
            move |v: &mut serde_json::Value| {
                v["next_op"] = json!(3);
                v["execution_timeout"] = t;
            }
        };
        edited(timeout(
            json!({"after_ms": 30_000, "deadline_ms": 1_030_000, "timer": 2}),
        ))
        .validate()
        .unwrap();
        rejected(
            timeout(json!({"after_ms": 0, "deadline_ms": 1_000_000})),
            "execution timeout of 0 ms is outside",
        );
        rejected(
            timeout(json!({"after_ms": u64::MAX, "deadline_ms": u64::MAX})),
            "is outside 1..=3153600000000 ms",
        );
        rejected(
            timeout(json!({"after_ms": 30_000, "deadline_ms": 5})),
            "deadline 5 ms is less than its timeout of 30000 ms",
        );
        rejected(
            timeout(json!({"after_ms": 30_000, "deadline_ms": 1_030_000, "timer": 3})),
            "timer op#3 is not below its operation counter 3",
        );
        rejected(
            |v| {
                timeout(json!({"after_ms": 30_000, "deadline_ms": 1_030_000, "timer": 1}))(v);
                v["ops"] = json!({"1": {"kind": "CancelSignal", "scope": 0, "status": "Pending"}});
            },
            "timer op#1 is also in its operation table",
        );
    }

    #[test]
    fn an_operation_counter_that_could_overflow_is_invalid() {
        rejected(|v| v["next_op"] = json!(u64::MAX), "operation counter");
        rejected(|v| v["next_op"] = json!(MAX_OP_ID + 1), "operation counter");
        rejected(|v| v["next_op"] = json!(0), "operation counter");
        edited(|v| v["next_op"] = json!(MAX_OP_ID))
            .validate()
            .unwrap();
    }

    #[test]
    fn operations_name_only_ids_and_scopes_that_exist() {
        let mut v = busy();
        v["next_op"] = json!(4);
        rejected(|x| *x = v, "op#4 is not below its operation counter 4");
        rejected(
            |x| {
                *x = busy();
                x["ops"]["1"]["scope"] = json!(9);
            },
            "op#1 belongs to scope 9",
        );
        rejected(
            |x| {
                *x = busy();
                x["ops"]["2"]["kind"]["Timer"]["timeout_of"] = json!(7);
            },
            "timeout of scope 7",
        );
        rejected(
            |x| {
                *x = busy();
                x["ops"]["4"]["kind"] = json!({"Join": {"ops": [1, 4]}});
            },
            "op#4 waits for op#4",
        );
        rejected(
            |x| {
                *x = busy();
                x["children"] =
                    json!({"7": {"workflow": "w", "id": "c", "parent_close": "Terminate"}});
            },
            "child op#7",
        );
    }

    #[test]
    fn a_started_scope_must_be_awaited_through_its_own_operation() {
        let with_started = |op: u64, scope: u32| {
            move |x: &mut serde_json::Value| {
                *x = busy();
                x["ops"]["3"] = json!({"kind": {"Scope": {"scope": 1}}, "scope": 0,
                                       "status": "Pending"});
                x["started_scopes"] =
                    json!([{"site": 0, "op": op, "scope": scope, "state": "Start"}]);
            }
        };
        edited(with_started(3, 1)).validate().unwrap();
        rejected(
            with_started(3, 2),
            "started scope 2 is awaited through op#3",
        );
        rejected(
            with_started(1, 1),
            "started scope 1 is awaited through op#1",
        );
        rejected(
            |x| {
                *x = busy();
                x["ops"]["3"] = json!({"kind": {"Scope": {"scope": 8}}, "scope": 0,
                                       "status": "Pending"});
            },
            "op#3 awaits the block of scope 8",
        );
    }

    #[test]
    fn r6_7_a_local_activity_call_and_its_run_record_go_together() {
        let call = json!({"kind": {"LocalActivity": {"activity": "a", "cancellation": "TryCancel"}},
                          "scope": 0, "status": "Pending"});
        let run = json!({"input": null, "options": {}});
        let with = |ops: serde_json::Value, runs: serde_json::Value| {
            move |v: &mut serde_json::Value| {
                v["next_op"] = json!(3);
                v["ops"] = ops;
                v["local_activities"] = runs;
            }
        };
        edited(with(json!({"1": call.clone()}), json!({"1": run.clone()})))
            .validate()
            .unwrap();
        rejected(
            with(json!({"1": call.clone()}), json!({})),
            "local activity op#1 waits, but its run",
        );
        rejected(
            with(json!({}), json!({"2": run.clone()})),
            "the local activity run of op#2 belongs to no local activity call",
        );
        let mut resolved = call.clone();
        resolved["status"] = json!({"Resolved": {"Ok": 1}});
        rejected(
            with(json!({"1": resolved}), json!({"1": run.clone()})),
            "the local activity run of op#1 belongs to no",
        );
        let mut zero = run.clone();
        zero["attempt"] = json!(0);
        rejected(with(json!({"1": call}), json!({"1": zero})), "at attempt 0");
    }
}
