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
    create_is_unique_and_starts_the_history(store).await;
    r1_4_second_cancel_request_enqueues_nothing(store).await;
    commit_checks_the_version_and_applies_everything(store).await;
    commit_keeps_unconsumed_events_and_cancels_tasks(store).await;
    terminate_closes(store).await;
    after_terminate_closes(store).await;
    lists_by_status_in_id_order(store).await;
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
        .record_heartbeat("v", OpId(1), Some(serde_json::json!(5)), 30)
        .await
        .unwrap();
    store.record_task_attempt("v", OpId(1), 2).await.unwrap();
    assert!(matches!(
        store.record_task_attempt("v", OpId(77), 1).await,
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
    let waiting = store.workflows_to_step().await.unwrap();
    assert!(waiting.contains(&"k".to_string()), "{waiting:?}");
    assert!(!waiting.contains(&"v".to_string()), "closed: {waiting:?}");
    assert!(
        waiting.contains(&"a".to_string()),
        "never stepped: {waiting:?}"
    );
    let tasks = store.tasks("k").await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert!(tasks[0].cancel_requested && tasks[0].notify_running);
    store.set_stuck("k", Some(boom())).await.unwrap();
    // Stuck: not stepped again for the events it already failed on.
    assert!(!store
        .workflows_to_step()
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
    store.set_stuck("t2", Some(boom())).await.unwrap();
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
