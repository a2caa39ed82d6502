//! The behaviour every [`Store`] must have, as checks any implementation's tests can run.

use super::*;
use crate::ActivityOptions;

pub(crate) fn new_workflow(id: &str) -> NewWorkflow {
    NewWorkflow {
        id: id.to_string(),
        workflow_type: "wf".to_string(),
        schema: u64::MAX - 7,
        snapshot: serde_json::json!({"machine": "Start"}).into(),
        state_name: "Start".to_string(),
        input: serde_json::json!(1),
        at_ms: 10,
        parent: None,
        lease: None,
    }
}

pub(crate) fn commit(id: &str, version: u64) -> StepCommit {
    StepCommit {
        workflow_id: id.to_string(),
        expected_version: version,
        snapshot: serde_json::json!({"machine": "Next"}).into(),
        state_name: "Next".to_string(),
        history: vec![EventKind::Log {
            message: "hi".to_string(),
        }],
        at_ms: 20,
        consumed_inbox: Vec::new(),
        new_tasks: Vec::new(),
        cancelled_tasks: Vec::new(),
        removed_tasks: Vec::new(),
        new_timers: Vec::new(),
        removed_timers: Vec::new(),
        close: None,
        fence: None,
        new_workflows: Vec::new(),
        outbox: Vec::new(),
    }
}

fn boom() -> WorkflowFault {
    WorkflowFault::Panicked {
        state: "Next".into(),
        message: "boom".into(),
    }
}

fn task(id: &str, op: u64) -> TaskRecord {
    TaskRecord {
        workflow_id: id.to_string(),
        op: OpId(op),
        activity: "act".to_string(),
        input: serde_json::json!({"n": op}),
        options: ActivityOptions::default(),
        attempt: 0,
        heartbeat_details: None,
        last_heartbeat_ms: None,
        scheduled_at_ms: 20,
        cancel_requested: false,
        notify_running: false,
    }
}

/// Runs every check on a fresh, empty store.
pub(crate) async fn check_all(store: &dyn Store) {
    // First: its claims expect no other unowned workflow in the store.
    leases_fence_every_write_of_a_worker_that_was_taken_over(store).await;
    create_is_unique_and_starts_the_history(store).await;
    r1_4_second_cancel_request_enqueues_nothing(store).await;
    commit_checks_the_version_and_applies_everything(store).await;
    commit_keeps_unconsumed_events_and_cancels_tasks(store).await;
    terminate_closes(store).await;
    after_terminate_closes(store).await;
    lists_by_status_in_id_order(store).await;
    a_step_creates_its_children_and_fills_the_outbox_in_one_commit(store).await;
    purge_deletes_only_closed_workflows_that_closed_before_the_cutoff(store).await;
}

/// Uses ids `p*`. Retention and id reuse (issue 11.9).
async fn purge_deletes_only_closed_workflows_that_closed_before_the_cutoff(store: &dyn Store) {
    // p-old-1 and p-old-2 close at 1 and 2 (before any workflow of the other checks), p-new
    // at 500; p-running never closes.
    for (id, closed_at) in [("p-old-1", 1), ("p-old-2", 2), ("p-new", 500)] {
        store.create_workflow(new_workflow(id)).await.unwrap();
        store
            .enqueue_event(id, Event::CancelRequested { reason: "r".into() })
            .await
            .unwrap();
        store.terminate(id, "done", closed_at).await.unwrap();
    }
    let mut child = new_workflow("p-running");
    child.parent = Some(ParentLink {
        workflow_id: "p-new".to_string(),
        op: OpId(3),
    });
    store.create_workflow(child).await.unwrap();
    store
        .enqueue_event("p-running", Event::CancelRequested { reason: "r".into() })
        .await
        .unwrap();
    let mut purge = Purge::closed_before(1_000);
    purge.dry_run = true;
    purge.limit = 2;
    let mut would = store.purge_closed(&purge).await.unwrap();
    assert_eq!(
        would,
        ["p-old-1", "p-old-2"],
        "oldest close first, at most the limit"
    );
    // A dry run deletes nothing.
    store.load_workflow("p-old-1").await.unwrap();

    purge.dry_run = false;
    purge.closed_before_ms = 3;
    purge.statuses = vec![crate::WorkflowStatus::Completed];
    assert!(
        store.purge_closed(&purge).await.unwrap().is_empty(),
        "a status filter holds"
    );
    purge.statuses = vec![crate::WorkflowStatus::Terminated];
    would = store.purge_closed(&purge).await.unwrap();
    would.sort();
    assert_eq!(would, ["p-old-1", "p-old-2"]);
    for id in ["p-old-1", "p-old-2"] {
        assert!(matches!(
            store.load_workflow(id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(store
            .history(id)
            .await
            .map(|h| h.is_empty())
            .unwrap_or(true));
    }
    // The id of a purged workflow is free again; a workflow that closed later is kept, and
    // a Running one is never purged, whatever the cutoff.
    store
        .create_workflow(new_workflow("p-old-1"))
        .await
        .unwrap();
    assert_eq!(
        store.history("p-old-1").await.unwrap().len(),
        1,
        "a fresh history"
    );
    purge = Purge::closed_before(u64::MAX);
    purge.id = Some("p-running".to_string());
    assert!(store.purge_closed(&purge).await.unwrap().is_empty());
    purge.id = Some("p-new".to_string());
    assert_eq!(store.purge_closed(&purge).await.unwrap(), ["p-new"]);
    let orphan = store.load_workflow("p-running").await.unwrap();
    assert_eq!(
        orphan.parent, None,
        "the child of a purged parent reports to nobody"
    );
    assert_eq!(store.read_inbox("p-running").await.unwrap().len(), 1);
}

/// Uses ids `a*`.
async fn create_is_unique_and_starts_the_history(store: &dyn Store) {
    store.create_workflow(new_workflow("a")).await.unwrap();
    assert!(matches!(
        store.create_workflow(new_workflow("a")).await,
        Err(StoreError::AlreadyExists(id)) if id == "a"
    ));
    let rec = store.load_workflow("a").await.unwrap();
    assert_eq!((rec.status, rec.version), (WorkflowStatus::Running, 0));
    assert_eq!(rec.schema, u64::MAX - 7, "fingerprints use all 64 bits");
    assert_eq!(rec.snapshot, serde_json::json!({"machine": "Start"}).into());
    assert_eq!((rec.created_at_ms, rec.updated_at_ms), (10, 10));
    let history = store.history("a").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].seq, 1);
    assert!(matches!(history[0].kind, EventKind::WorkflowStarted { .. }));
    assert!(matches!(
        store.load_workflow("zz").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.history("zz").await,
        Err(StoreError::NotFound(_))
    ));
    let mut child = new_workflow("a-child");
    child.parent = Some(ParentLink {
        workflow_id: "a".to_string(),
        op: OpId(4),
    });
    store.create_workflow(child.clone()).await.unwrap();
    assert_eq!(
        store.load_workflow("a-child").await.unwrap().parent,
        child.parent
    );
}

/// Uses ids `c*`.
async fn r1_4_second_cancel_request_enqueues_nothing(store: &dyn Store) {
    store.create_workflow(new_workflow("c")).await.unwrap();
    assert!(store.request_cancel("c", "why").await.unwrap());
    assert!(!store.request_cancel("c", "again").await.unwrap());
    let inbox = store.read_inbox("c").await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(
        inbox[0].event,
        Event::CancelRequested {
            reason: "why".to_string()
        }
    );
    assert_eq!(
        store
            .load_workflow("c")
            .await
            .unwrap()
            .cancel_reason
            .as_deref(),
        Some("why")
    );
    assert!(matches!(
        store.request_cancel("nope", "").await,
        Err(StoreError::NotFound(_))
    ));
}

/// Uses ids `v*`.
async fn commit_checks_the_version_and_applies_everything(store: &dyn Store) {
    store.create_workflow(new_workflow("v")).await.unwrap();
    let seq = store
        .enqueue_event("v", Event::TimerFired { op: OpId(9) })
        .await
        .unwrap();
    let mut c = commit("v", 0);
    c.consumed_inbox = vec![seq];
    c.new_tasks = vec![task("v", 1)];
    c.new_timers = vec![TimerRecord {
        workflow_id: "v".to_string(),
        op: OpId(2),
        fire_at_ms: 99,
    }];
    assert_eq!(store.commit_step(c).await.unwrap(), 1);
    assert!(matches!(
        store.commit_step(commit("v", 0)).await,
        Err(StoreError::Conflict {
            expected: 0,
            found: 1,
            ..
        })
    ));
    let rec = store.load_workflow("v").await.unwrap();
    assert_eq!(rec.state_name, "Next");
    assert_eq!(rec.updated_at_ms, 20);
    assert!(store.read_inbox("v").await.unwrap().is_empty());
    let running = store.running_workflows().await.unwrap();
    let v = running.iter().find(|r| r.record.id == "v").unwrap();
    assert_eq!(v.tasks, vec![task("v", 1)]);
    assert_eq!(v.timers.len(), 1);
    assert_eq!(v.timers[0].fire_at_ms, 99);
    store
        .record_heartbeat("v", OpId(1), Some(serde_json::json!(5)), 30, None)
        .await
        .unwrap();
    store
        .record_task_attempt("v", OpId(1), 2, None)
        .await
        .unwrap();
    assert!(matches!(
        store.record_task_attempt("v", OpId(77), 1, None).await,
        Err(StoreError::NotFound(_))
    ));
    let t = &store.tasks("v").await.unwrap()[0];
    assert_eq!(t.attempt, 2);
    assert_eq!(t.heartbeat_details, Some(serde_json::json!(5)));
    assert_eq!(t.last_heartbeat_ms, Some(30));

    let mut c = commit("v", 1);
    c.close = Some(WorkflowClose::Completed {
        result: serde_json::json!("ok"),
    });
    store.commit_step(c).await.unwrap();
    let rec = store.load_workflow("v").await.unwrap();
    assert_eq!(rec.status, WorkflowStatus::Completed);
    assert_eq!(
        rec.close,
        Some(WorkflowClose::Completed {
            result: serde_json::json!("ok")
        })
    );
    assert_eq!(store.history("v").await.unwrap().len(), 3);
    assert!(store
        .running_workflows()
        .await
        .unwrap()
        .iter()
        .all(|r| r.record.id != "v"));
    assert!(store.tasks("v").await.unwrap().is_empty());
    assert!(matches!(
        store
            .enqueue_event("v", Event::TimerFired { op: OpId(2) })
            .await,
        Err(StoreError::AlreadyClosed {
            status: WorkflowStatus::Completed,
            ..
        })
    ));
}

/// Uses ids `k*`.
async fn commit_keeps_unconsumed_events_and_cancels_tasks(store: &dyn Store) {
    store.create_workflow(new_workflow("k")).await.unwrap();
    let mut c = commit("k", 0);
    c.new_tasks = vec![task("k", 1), task("k", 2)];
    store.commit_step(c).await.unwrap();
    let first = store
        .enqueue_event("k", Event::TimerFired { op: OpId(5) })
        .await
        .unwrap();
    let second = store
        .enqueue_event("k", Event::TimerFired { op: OpId(6) })
        .await
        .unwrap();
    assert!(second > first, "inbox sequence numbers increase");
    let mut c = commit("k", 1);
    c.consumed_inbox = vec![first];
    c.cancelled_tasks = vec![TaskCancel {
        op: OpId(1),
        notify_running: true,
    }];
    c.removed_tasks = vec![OpId(2)];
    store.commit_step(c).await.unwrap();
    let inbox = store.read_inbox("k").await.unwrap();
    assert_eq!(
        inbox.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![second]
    );
    // Only the workflows a worker holds are its to step.
    assert!(!store
        .workflows_to_step("wk")
        .await
        .unwrap()
        .contains(&"k".to_string()));
    store
        .claim_workflows(&lease("wk", 60_000), 1_000)
        .await
        .unwrap();
    let waiting = store.workflows_to_step("wk").await.unwrap();
    assert!(waiting.contains(&"k".to_string()), "{waiting:?}");
    assert!(!waiting.contains(&"v".to_string()), "closed: {waiting:?}");
    assert!(
        waiting.contains(&"a".to_string()),
        "never stepped: {waiting:?}"
    );
    let tasks = store.tasks("k").await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert!(tasks[0].cancel_requested && tasks[0].notify_running);
    store.set_stuck("k", Some(boom()), None).await.unwrap();
    // Stuck: not stepped again for the events it already failed on.
    assert!(!store
        .workflows_to_step("wk")
        .await
        .unwrap()
        .contains(&"k".to_string()));
    assert_eq!(store.load_workflow("k").await.unwrap().stuck, Some(boom()));
    // A committed step clears the mark.
    store.commit_step(commit("k", 2)).await.unwrap();
    assert_eq!(store.load_workflow("k").await.unwrap().stuck, None);
}

/// Uses ids `t*`: `t1` terminated, `t2` running and stuck.
pub(crate) async fn terminate_closes(store: &dyn Store) {
    store.create_workflow(new_workflow("t1")).await.unwrap();
    store.create_workflow(new_workflow("t2")).await.unwrap();
    store.set_stuck("t2", Some(boom()), None).await.unwrap();
    store.terminate("t1", "enough", 50).await.unwrap();
    assert!(matches!(
        store.terminate("t1", "again", 60).await,
        Err(StoreError::AlreadyClosed { .. })
    ));
    // Ignored once closed.
    store
        .set_stuck(
            "t1",
            Some(WorkflowFault::Engine {
                message: "late".into(),
            }),
            None,
        )
        .await
        .unwrap();
}

/// What [`terminate_closes`] left, read back (possibly from a copy of the store).
pub(crate) async fn after_terminate_closes(store: &dyn Store) {
    let t1 = store.load_workflow("t1").await.unwrap();
    assert_eq!(t1.status, WorkflowStatus::Terminated);
    assert_eq!(t1.stuck, None);
    assert_eq!(store.load_workflow("t2").await.unwrap().stuck, Some(boom()));
    let history = store.history("t1").await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!((history[1].seq, history[1].at_ms), (2, 50));
}

/// Uses whatever the other checks created.
async fn lists_by_status_in_id_order(store: &dyn Store) {
    let all = store.list_workflows(None).await.unwrap();
    let ids: Vec<_> = all.iter().map(|w| w.id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let running = store
        .list_workflows(Some(WorkflowStatus::Running))
        .await
        .unwrap();
    assert!(!running.is_empty());
    assert!(running.iter().all(|w| w.status == WorkflowStatus::Running));
    assert!(running.len() < all.len());
}

fn lease(owner: &str, duration_ms: u64) -> LeaseRequest {
    LeaseRequest {
        owner: owner.to_string(),
        duration_ms,
    }
}

fn fence(owner: &str, epoch: u64) -> Fence {
    Fence {
        owner: owner.to_string(),
        epoch,
    }
}

fn is_lease_lost(result: Result<impl std::fmt::Debug, StoreError>, holder: Option<(&str, u64)>) {
    match result {
        Err(StoreError::LeaseLost { holder: found, .. }) => assert_eq!(
            found,
            holder.map(|(o, e)| (o.to_string(), e)),
            "the refusal names the current holder"
        ),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
}

/// Uses ids `l*`. The protocol of the module's "Leases and fencing": claims are exclusive and
/// bump the epoch, an expired lease is taken over, every fenced write of the old holder is
/// refused and changes nothing, renewal reports what a worker still holds, release hands
/// workflows over at once, and a closing step ends the lease.
async fn leases_fence_every_write_of_a_worker_that_was_taken_over(store: &dyn Store) {
    store.create_workflow(new_workflow("l1")).await.unwrap();
    let mut held = new_workflow("l2");
    held.lease = Some(lease("w1", 60_000));
    store.create_workflow(held).await.unwrap();
    let mut expiring = new_workflow("l3");
    expiring.lease = Some(lease("w1", 0));
    store.create_workflow(expiring).await.unwrap();
    let l2 = store.load_workflow("l2").await.unwrap().lease.unwrap();
    assert_eq!((l2.owner.as_str(), l2.epoch), ("w1", 1));
    assert_eq!(store.load_workflow("l1").await.unwrap().lease, None);

    // w2 gets the unowned one and the expired one, never the live lease of w1.
    let claimed = store
        .claim_workflows(&lease("w2", 60_000), 10)
        .await
        .unwrap();
    let mut got: Vec<(String, u64)> = claimed
        .iter()
        .map(|w| {
            let l = w
                .record
                .lease
                .as_ref()
                .expect("a claimed workflow has its lease");
            assert_eq!(l.owner, "w2");
            (w.record.id.clone(), l.epoch)
        })
        .collect();
    got.sort();
    assert_eq!(got, [("l1".to_string(), 1), ("l3".to_string(), 2)]);
    assert!(store
        .claim_workflows(&lease("w3", 60_000), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .claim_workflows(&lease("w3", 60_000), 0)
            .await
            .unwrap(),
        Vec::new()
    );

    // The old holder of l3 can no longer write anything for it.
    store
        .commit_step(StepCommit {
            new_tasks: vec![task("l3", 1)],
            fence: Some(fence("w2", 2)),
            ..commit("l3", 0)
        })
        .await
        .unwrap();
    let mut stale = commit("l3", 1);
    stale.fence = Some(fence("w1", 1));
    is_lease_lost(store.commit_step(stale).await, Some(("w2", 2)));
    is_lease_lost(
        store
            .record_task_attempt("l3", OpId(1), 2, Some(&fence("w1", 1)))
            .await,
        Some(("w2", 2)),
    );
    is_lease_lost(
        store
            .record_heartbeat(
                "l3",
                OpId(1),
                Some(serde_json::json!(9)),
                30,
                Some(&fence("w1", 1)),
            )
            .await,
        Some(("w2", 2)),
    );
    is_lease_lost(
        store
            .set_stuck("l3", Some(boom()), Some(&fence("w1", 1)))
            .await,
        Some(("w2", 2)),
    );
    let rec = store.load_workflow("l3").await.unwrap();
    assert_eq!(
        (rec.version, rec.stuck),
        (1, None),
        "refused writes change nothing"
    );
    let tasks = store.tasks("l3").await.unwrap();
    assert_eq!((tasks[0].attempt, tasks[0].last_heartbeat_ms), (0, None));
    // The holder's own fenced writes go through.
    store
        .record_task_attempt("l3", OpId(1), 2, Some(&fence("w2", 2)))
        .await
        .unwrap();
    store
        .record_heartbeat("l3", OpId(1), None, 31, Some(&fence("w2", 2)))
        .await
        .unwrap();
    assert_eq!(
        store.tasks("l3").await.unwrap()[0].last_heartbeat_ms,
        Some(31)
    );

    // Renewal tells each worker what it still holds.
    let mut w2 = store.renew_leases(&lease("w2", 60_000)).await.unwrap();
    w2.sort();
    assert_eq!(w2, [("l1".to_string(), 1), ("l3".to_string(), 2)]);
    assert_eq!(
        store.renew_leases(&lease("w1", 60_000)).await.unwrap(),
        [("l2".to_string(), 1)]
    );
    assert_eq!(store.workflows_to_step("w1").await.unwrap(), ["l2"]);
    assert_eq!(store.workflows_to_step("w2").await.unwrap(), ["l1"]);
    store
        .enqueue_event("l3", Event::TimerFired { op: OpId(9) })
        .await
        .unwrap();
    assert_eq!(store.workflows_to_step("w2").await.unwrap(), ["l1", "l3"]);

    // A graceful release hands over at once, with a new epoch.
    assert_eq!(store.release_leases("w2").await.unwrap(), 2);
    assert_eq!(store.load_workflow("l1").await.unwrap().lease, None);
    let mut again: Vec<(String, u64)> = store
        .claim_workflows(&lease("w3", 60_000), 1)
        .await
        .unwrap()
        .into_iter()
        .chain(
            store
                .claim_workflows(&lease("w3", 60_000), 5)
                .await
                .unwrap(),
        )
        .map(|w| (w.record.id, w.record.lease.unwrap().epoch))
        .collect();
    again.sort();
    assert_eq!(again, [("l1".to_string(), 2), ("l3".to_string(), 3)]);
    assert!(store
        .claim_workflows(&lease("w4", 60_000), 5)
        .await
        .unwrap()
        .is_empty());

    // A closing step ends the lease; a closed workflow is never claimed.
    store
        .commit_step(StepCommit {
            close: Some(WorkflowClose::Completed {
                result: serde_json::json!(null),
            }),
            fence: Some(fence("w3", 2)),
            ..commit("l1", 0)
        })
        .await
        .unwrap();
    assert_eq!(store.load_workflow("l1").await.unwrap().lease, None);
    assert_eq!(store.release_leases("w3").await.unwrap(), 1);
    let last: Vec<String> = store
        .claim_workflows(&lease("w4", 60_000), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.record.id)
        .collect();
    assert_eq!(last, ["l3"]);
    // Leave nothing leased for the checks that follow.
    store.terminate("l2", "done", 40).await.unwrap();
    store.terminate("l3", "done", 40).await.unwrap();
    assert!(store
        .renew_leases(&lease("w1", 60_000))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .renew_leases(&lease("w4", 60_000))
        .await
        .unwrap()
        .is_empty());
}

/// Uses ids `n*`. A step's child workflows are created in its transaction (an id already taken
/// is left alone) and its outbox reaches other Running workflows' inboxes; a refused step
/// creates and sends nothing.
async fn a_step_creates_its_children_and_fills_the_outbox_in_one_commit(store: &dyn Store) {
    for id in ["n-parent", "n-taken", "n-closed"] {
        store.create_workflow(new_workflow(id)).await.unwrap();
    }
    store.terminate("n-closed", "gone", 15).await.unwrap();
    let link = ParentLink {
        workflow_id: "n-parent".to_string(),
        op: OpId(3),
    };
    let child = |id: &str| NewWorkflow {
        parent: Some(link.clone()),
        lease: Some(lease("w9", 60_000)),
        ..new_workflow(id)
    };
    let wake = Event::TimerFired { op: OpId(1) };
    let mut refused = commit("n-parent", 7);
    refused.new_workflows = vec![child("n-never")];
    refused.outbox = vec![("n-taken".to_string(), wake.clone())];
    assert!(matches!(
        store.commit_step(refused).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.load_workflow("n-never").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.read_inbox("n-taken").await.unwrap().is_empty());

    let mut step = commit("n-parent", 0);
    step.new_workflows = vec![child("n-child"), child("n-taken")];
    step.outbox = vec![
        ("n-taken".to_string(), wake.clone()),
        ("n-closed".to_string(), wake.clone()),
        ("n-missing".to_string(), wake.clone()),
    ];
    assert_eq!(store.commit_step(step).await.unwrap(), 1);
    let created = store.load_workflow("n-child").await.unwrap();
    assert_eq!(
        (created.status, created.version, created.parent.as_ref()),
        (WorkflowStatus::Running, 0, Some(&link))
    );
    let held = created.lease.expect("created leased");
    assert_eq!((held.owner.as_str(), held.epoch), ("w9", 1));
    let history = store.history("n-child").await.unwrap();
    assert!(matches!(
        history[..],
        [HistoryEvent {
            kind: EventKind::WorkflowStarted { .. },
            ..
        }]
    ));
    let taken = store.load_workflow("n-taken").await.unwrap();
    assert_eq!(
        (taken.parent, taken.lease),
        (None, None),
        "an existing row is left alone"
    );
    let inbox = store.read_inbox("n-taken").await.unwrap();
    assert_eq!(inbox.iter().map(|e| &e.event).collect::<Vec<_>>(), [&wake]);
    assert!(store.read_inbox("n-closed").await.unwrap().is_empty());
}

/// The running workflows [`make_damageable`] makes, each with an activity task (op#4), a
/// timer (op#5) and an inbox event, for a SQL store's test to damage with [`DAMAGE_SQL`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const DAMAGEABLE: [&str; 7] = [
    "d-good",
    "d-status",
    "d-task",
    "d-options",
    "d-details",
    "d-inbox",
    "d-history",
];

/// Damage every SQL store can hold (its text columns are UTF-8 and its numbers numbers on
/// PostgreSQL): JSON that does not decode, an unknown status. `d-closed` is a completed
/// workflow (see [`make_damageable`]).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const DAMAGE_SQL: &str = "
    UPDATE workflows SET status = 'bogus' WHERE id = 'd-status';
    UPDATE workflows SET close = '{oops' WHERE id = 'd-closed';
    UPDATE tasks SET input = 'not json' WHERE workflow_id = 'd-task';
    UPDATE tasks SET options = '{\"retry\": 3}' WHERE workflow_id = 'd-options';
    UPDATE tasks SET heartbeat_details = 'not json' WHERE workflow_id = 'd-details';
    UPDATE inbox SET event = 'not json' WHERE workflow_id = 'd-inbox';
    UPDATE history SET event = 'not json' WHERE workflow_id = 'd-history' AND seq = 1;
";

/// Makes the workflows of [`DAMAGEABLE`] and `more` (the same way), and `d-closed`, a
/// completed one, in a fresh store.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) async fn make_damageable(store: &dyn Store, more: &[&str]) {
    for id in DAMAGEABLE.iter().chain(more) {
        store.create_workflow(new_workflow(id)).await.unwrap();
        let mut step = commit(id, 0);
        step.new_tasks = vec![task(id, 4)];
        step.new_timers = vec![TimerRecord {
            workflow_id: id.to_string(),
            op: OpId(5),
            fire_at_ms: 99,
        }];
        store.commit_step(step).await.unwrap();
        store
            .enqueue_event(id, Event::TimerFired { op: OpId(5) })
            .await
            .unwrap();
    }
    store
        .create_workflow(new_workflow("d-closed"))
        .await
        .unwrap();
    let mut close = commit("d-closed", 0);
    close.close = Some(WorkflowClose::Completed {
        result: serde_json::json!(7),
    });
    store.commit_step(close).await.unwrap();
}

/// `what` of a [`WorkflowFault::DamagedRecord`], or a panic naming `context`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn damaged_what(fault: Option<&WorkflowFault>, context: &str) -> String {
    match fault {
        Some(WorkflowFault::DamagedRecord { what, .. }) => what.clone(),
        other => panic!("{context}: expected a damaged record, got {other:?}"),
    }
}

/// The fault of a [`StoreError::Damaged`] answer for workflow `id`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn damaged_answer<T: std::fmt::Debug>(
    answer: Result<T, StoreError>,
    id: &str,
) -> String {
    match answer {
        Err(StoreError::Damaged { id: of, fault }) if of == id => damaged_what(Some(&fault), id),
        other => panic!("`{id}`: expected a damaged answer, got {other:?}"),
    }
}

/// After [`make_damageable`] and [`DAMAGE_SQL`]: every read answers, for every workflow,
/// each damaged row failing only its own workflow with a fault naming it; an unknown status
/// reads as Running, is claimed by nobody and can be terminated. Returns what
/// `running_workflows` answered, for the store's own checks.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) async fn damaged_rows_fail_only_their_workflow(
    store: &dyn Store,
) -> std::collections::HashMap<String, RunningWorkflow> {
    // Listing and loading show every workflow; the row's own faults are its `stuck`.
    let listed = store.list_workflows(None).await.unwrap();
    let listed: std::collections::HashMap<_, _> =
        listed.into_iter().map(|r| (r.id.clone(), r)).collect();
    for id in DAMAGEABLE.iter().chain(&["d-closed"]) {
        assert!(listed.contains_key(*id), "{id} is listed");
        assert_eq!(store.load_workflow(id).await.unwrap(), listed[*id]);
    }
    let status = &listed["d-status"];
    assert_eq!(status.status, WorkflowStatus::Running);
    assert_eq!(damaged_what(status.stuck.as_ref(), "d-status"), "status");
    assert!(
        status.stuck.as_ref().unwrap().to_string().contains("bogus"),
        "{:?}",
        status.stuck
    );
    let closed = &listed["d-closed"];
    assert_eq!(
        (closed.status, &closed.close),
        (WorkflowStatus::Completed, &None)
    );
    assert_eq!(damaged_what(closed.stuck.as_ref(), "d-closed"), "close");
    assert_eq!(listed["d-good"].stuck, None);
    assert_eq!(
        listed["d-task"].stuck, None,
        "a task's damage is not the row's"
    );

    // Recovery reads every Running workflow; the damaged ones say why, with nothing to
    // resume from.
    let running: std::collections::HashMap<String, RunningWorkflow> = store
        .running_workflows()
        .await
        .unwrap()
        .into_iter()
        .map(|w| (w.record.id.clone(), w))
        .collect();
    assert!(!running.contains_key("d-status"), "claimed by nobody");
    let good = &running["d-good"];
    assert_eq!(good.damaged, None);
    assert_eq!(
        (good.tasks.len(), good.timers.len(), good.inbox.len()),
        (1, 1, 1)
    );
    assert_eq!(running["d-history"].damaged, None);
    for (id, what) in [
        ("d-task", "activity task op#4 input"),
        ("d-options", "activity task op#4 options"),
        ("d-details", "activity task op#4 heartbeat details"),
    ] {
        let w = &running[id];
        assert_eq!(damaged_what(w.damaged.as_ref(), id), what);
        assert!(w.tasks.is_empty() && w.timers.is_empty() && w.inbox.is_empty());
    }
    let inbox = damaged_what(running["d-inbox"].damaged.as_ref(), "d-inbox");
    assert!(inbox.starts_with("inbox event "), "{inbox}");

    // Per-workflow reads answer `Damaged` for that workflow alone.
    assert_eq!(
        damaged_answer(store.tasks("d-task").await, "d-task"),
        "activity task op#4 input"
    );
    assert_eq!(store.tasks("d-good").await.unwrap().len(), 1);
    assert_eq!(
        damaged_answer(store.read_inbox("d-inbox").await, "d-inbox"),
        inbox
    );
    assert_eq!(
        damaged_answer(store.load_for_step("d-inbox", None).await, "d-inbox"),
        inbox
    );
    assert_eq!(
        damaged_answer(store.load_for_step("d-status", None).await, "d-status"),
        "status"
    );
    let (record, events) = store.load_for_step("d-good", None).await.unwrap();
    assert_eq!((record.version, events.len()), (1, 1));

    // The history shows a damaged entry in its place.
    let history = store.history("d-history").await.unwrap();
    assert_eq!(history.len(), store.history("d-good").await.unwrap().len());
    assert!(
        matches!(&history[0].kind, EventKind::Damaged { message } if message.contains("not json")),
        "{:?}",
        history[0]
    );
    assert_eq!(history[0].seq, 1);
    assert_eq!(history[1..], store.history("d-good").await.unwrap()[1..]);

    // A claim takes the same workflows, damaged ones flagged, and the holder can mark them.
    let claimed: std::collections::HashMap<String, RunningWorkflow> = store
        .claim_workflows(&lease("d-worker", 60_000), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|w| (w.record.id.clone(), w))
        .collect();
    let mut ids: Vec<&String> = claimed.keys().collect();
    ids.sort();
    let mut expected: Vec<&String> = running.keys().collect();
    expected.sort();
    assert_eq!(ids, expected);
    for (id, w) in &claimed {
        assert_eq!(w.damaged, running[id].damaged, "{id}");
    }
    let task = &claimed["d-task"];
    let fence = task.record.lease.as_ref().unwrap().fence();
    store
        .set_stuck("d-task", task.damaged.clone(), Some(&fence))
        .await
        .unwrap();
    assert_eq!(
        store.load_workflow("d-task").await.unwrap().stuck,
        task.damaged
    );

    // The operator's way out of an unknown status.
    store
        .terminate("d-status", "status damaged", 50)
        .await
        .unwrap();
    let terminated = store.load_workflow("d-status").await.unwrap();
    assert_eq!(terminated.status, WorkflowStatus::Terminated);
    assert!(
        store
            .history("d-status")
            .await
            .unwrap()
            .last()
            .map(|e| &e.kind)
            == Some(&EventKind::WorkflowTerminated {
                reason: "status damaged".to_string()
            })
    );
    running
}
