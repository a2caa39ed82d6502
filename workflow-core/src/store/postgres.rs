//! [`PostgresStore`]: the five tables in a PostgreSQL schema, shared by any number of workers
//! and clients.
//!
//! # Connecting and the schema
//!
//! [`PostgresStore::connect`] takes a libpq-style URL, `postgres://user[:password]@host[:port]/db`.
//! The tables live in one schema: the first one of the connection's `search_path`. A URL
//! chooses it with the standard `options` parameter, `?options=-c%20search_path%3Dorders`
//! (`-c search_path=orders`, URL-encoded), and that schema is created if it does not exist;
//! without it, the server's default (normally `public`) is used. Several independent workflow
//! databases can therefore share one PostgreSQL database, one schema each. Every statement
//! names its tables with the schema, so nothing depends on the search path once connected.
//!
//! # Schema
//!
//! Applied at connect by numbered migrations ([`MIGRATIONS`]), the way the SQLite store does:
//! the number applied is kept in our table `workflow_meta` (key `schema_version`). Migrations
//! run in one transaction under a transaction-level advisory lock derived from the schema
//! name, so workers starting together do not race (the second one finds the work done). A
//! schema that holds tables but not `workflow_meta` is another program's and is refused
//! untouched; so is a schema whose version is newer than this build knows.
//!
//! ```sql
//! workflow_meta(key TEXT PRIMARY KEY, value TEXT)         -- schema_version
//! workflows(id TEXT PRIMARY KEY, workflow_type, schema_fingerprint BIGINT, status, snapshot
//!           TEXT, version BIGINT, state_name, cancel_reason, stuck TEXT, close TEXT,
//!           created_at_ms, updated_at_ms, parent_id, parent_op, stuck_inbox_seq,
//!           owner TEXT NULL, lease_epoch BIGINT DEFAULT 0, lease_until_ms BIGINT NULL)
//!   -- indexes: (status, id); claimable: (COALESCE(lease_until_ms, 0)) WHERE running;
//!   --          (owner, id) WHERE owner IS NOT NULL
//! history(workflow_id, seq, at_ms, event TEXT)            -- key (workflow_id, seq)
//! inbox(seq BIGINT IDENTITY PRIMARY KEY, workflow_id, event TEXT)  -- index (workflow_id, seq)
//! tasks(workflow_id, op, activity, input, options, attempt, heartbeat_details,
//!       last_heartbeat_ms, scheduled_at_ms, cancel_requested, notify_running)
//!                                                         -- key (workflow_id, op)
//! timers(workflow_id, op, fire_at_ms)                     -- key (workflow_id, op)
//! ```
//!
//! JSON columns are `TEXT` holding the serde form of the records of [`crate::store`] (a
//! snapshot comes back byte for byte as it was written); ids use the `C` collation, so "ordered
//! by id" is byte order as in the other stores; 64-bit unsigned numbers (schema fingerprints,
//! versions, times) are stored bit for bit in `BIGINT`.
//!
//! # Transactions and round trips
//!
//! Every [`Store`] method is one transaction, and most are one statement (data-modifying
//! `WITH` queries) and one round trip. Where a write must see everything committed before it
//! took the workflow's row lock (a closing step and `terminate` delete the remaining inbox, a
//! cancel request reports the status it found), `BEGIN`, a `SELECT … FOR UPDATE`, the write
//! and `COMMIT` are sent together, pipelined on one connection: still one round trip. An
//! ordinary step's commit is a single statement: the row update with the version and fence
//! checks, and the history, inbox, task and timer changes, batched with arrays (`unnest`,
//! `= ANY`). It holds only the parts the step needs (a part with nothing to do still costs
//! its executor setup, which made a step with 9 parts about twice as costly as one with the
//! update and the history alone), so there is one statement per shape of step, built at its
//! first use. Statements are prepared once per pooled connection (`deadpool-postgres`).
//!
//! # Leases
//!
//! The lease columns implement the module's "Leases and fencing" on the *server's* clock
//! (`clock_timestamp()`, in ms since the Unix epoch), never the worker's.
//! [`claim_workflows`](Store::claim_workflows) takes free or expired rows with
//! `FOR UPDATE SKIP LOCKED`, so concurrent claimers get disjoint rows, and bumps
//! `lease_epoch`; a fenced write locks the workflow row and applies only while its owner and
//! epoch are the fence's, refusing with [`StoreError::LeaseLost`] (naming the holder)
//! otherwise. A closing step, `terminate` and [`release_leases`](Store::release_leases)
//! clear the owner; the epoch outlives the lease.
//!
//! # Notifications
//!
//! [`Store::changes`] listens (`LISTEN`) on a dedicated connection, outside the pool, on a
//! channel named after the schema (`wf_<schema>_<hash>`), started at the first call and
//! stopped when the last clone of the store is dropped; it reconnects with back-off when the
//! connection drops, and sends [`StoreChange::Any`] each time it (re)starts listening, since
//! hints may have been missed meanwhile. Writers send a `pg_notify` in the same transaction,
//! only for what other processes must learn, saying what it is so that each receiver does
//! only the work it asks for: `+` for a workflow created without an owner or leases released
//! ([`StoreChange::Claimable`]: workers claim), `e:<id>` for an event or a cancel request
//! ([`StoreChange::Event`]: its holder steps it), `c:<id>` for a workflow closed by a step or
//! by `terminate` ([`StoreChange::Closed`]: clients read the outcome). An ordinary step sends
//! none: `NOTIFY` serialises the commits that send one. A receiver that lags gets
//! `RecvError::Lagged`, which means "any".

use super::rows::{
    self, int, json, stored_lease, stored_status, uint, Damage, RawHistory, RawInbox, RawTask,
    RawTimer, RawWorkflow,
};
use super::{
    Fence, InboxEntry, LeaseRequest, NewWorkflow, Purge, RunningWorkflow, StepCommit, Store,
    StoreChange, TaskRecord, TimerRecord, WorkflowClose, WorkflowRecord,
};
use crate::history::{EventKind, HistoryEvent};
use crate::{Event, OpId, StoreError, WorkflowFault, WorkflowStatus};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{AsyncMessage, NoTls, Row, Statement};
use tokio_util::sync::CancellationToken;

/// The migrations, in order; migration `i` (from 0) brings `schema_version` to `i + 1`.
/// `{s}` stands for the schema (a quoted identifier).
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE {s}.workflow_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE {s}.workflows (
    id                 TEXT COLLATE \"C\" PRIMARY KEY,
    workflow_type      TEXT NOT NULL,
    schema_fingerprint BIGINT NOT NULL,
    status             TEXT NOT NULL,
    snapshot           TEXT NOT NULL,
    version            BIGINT NOT NULL,
    state_name         TEXT NOT NULL,
    cancel_reason      TEXT,
    stuck              TEXT,
    close              TEXT,
    created_at_ms      BIGINT NOT NULL,
    updated_at_ms      BIGINT NOT NULL,
    parent_id          TEXT COLLATE \"C\",
    parent_op          BIGINT,
    stuck_inbox_seq    BIGINT,
    owner              TEXT,
    lease_epoch        BIGINT NOT NULL DEFAULT 0,
    lease_until_ms     BIGINT
) WITH (fillfactor = 70);
CREATE INDEX workflows_by_status ON {s}.workflows (status, id);
CREATE INDEX workflows_claimable ON {s}.workflows ((COALESCE(lease_until_ms, 0)))
    WHERE status = 'running';
CREATE INDEX workflows_by_owner ON {s}.workflows (owner, id) WHERE owner IS NOT NULL;
CREATE TABLE {s}.history (
    workflow_id TEXT COLLATE \"C\" NOT NULL,
    seq         BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    event       TEXT NOT NULL,
    PRIMARY KEY (workflow_id, seq)
);
CREATE TABLE {s}.inbox (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id TEXT COLLATE \"C\" NOT NULL,
    event       TEXT NOT NULL
);
CREATE INDEX inbox_by_workflow ON {s}.inbox (workflow_id, seq);
CREATE TABLE {s}.tasks (
    workflow_id       TEXT COLLATE \"C\" NOT NULL,
    op                BIGINT NOT NULL,
    activity          TEXT NOT NULL,
    input             TEXT NOT NULL,
    options           TEXT NOT NULL,
    attempt           BIGINT NOT NULL,
    heartbeat_details TEXT,
    last_heartbeat_ms BIGINT,
    scheduled_at_ms   BIGINT NOT NULL,
    cancel_requested  BOOLEAN NOT NULL,
    notify_running    BOOLEAN NOT NULL,
    PRIMARY KEY (workflow_id, op)
);
CREATE TABLE {s}.timers (
    workflow_id TEXT COLLATE \"C\" NOT NULL,
    op          BIGINT NOT NULL,
    fire_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, op)
);
CREATE INDEX timers_by_deadline ON {s}.timers (fire_at_ms);
",
    "
-- Retention: closed workflows by the time they closed (a closed row's last update).
CREATE INDEX workflows_closed ON {s}.workflows (updated_at_ms) WHERE status <> 'running';
",
];

/// The table of ours that marks a schema as a workflow database.
const META_TABLE: &str = "workflow_meta";

/// How many connections the pool keeps at most.
const POOL_SIZE: usize = 16;

/// The longest lease a request can ask for (about 30,000 years): keeps `now + duration` in
/// a `BIGINT`.
const MAX_LEASE_MS: i64 = 1_000_000_000_000_000;

/// How many hints a [`Store::changes`] receiver may fall behind before it lags.
const CHANGES_CAPACITY: usize = 1024;

/// The rows whose workflow is open to requests (an event, a cancel request, a stuck mark,
/// `terminate`): every status but the closed ones, so that a workflow whose stored status is
/// unknown (damaged) counts as Running, as [`stored_status`] reads it, and can be terminated.
const OPEN: &str = "lower(status) NOT IN ('completed', 'canceled', 'cancelled', 'failed', \
     'terminated')";

/// The store's clock, in ms since the Unix epoch, evaluated once per statement.
const NOW_MS: &str = "(SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint)";

/// The columns of a workflow row, in the order [`RawWorkflow::read`] reads them.
const WORKFLOW_COLUMNS: [&str; 17] = [
    "id",
    "workflow_type",
    "schema_fingerprint",
    "status",
    "snapshot",
    "version",
    "state_name",
    "cancel_reason",
    "stuck",
    "close",
    "created_at_ms",
    "updated_at_ms",
    "parent_id",
    "parent_op",
    "owner",
    "lease_epoch",
    "lease_until_ms",
];

/// The columns of a task row after its `workflow_id`, in the order [`read_task`] reads them.
const TASK_COLUMNS: &str = "op, activity, input, options, attempt, heartbeat_details, \
     last_heartbeat_ms, scheduled_at_ms, cancel_requested, notify_running";

/// The workflow columns, each prefixed with `prefix` (a table alias and a dot, or nothing);
/// with `cached`, the snapshot is replaced by JSON `null` when `version = cached`.
fn workflow_columns(prefix: &str, cached: Option<&str>) -> String {
    WORKFLOW_COLUMNS
        .iter()
        .map(|c| match (*c, cached) {
            ("snapshot", Some(param)) => {
                format!("CASE WHEN {prefix}version = {param} THEN 'null' ELSE {prefix}snapshot END")
            }
            _ => format!("{prefix}{c}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `pg_notify` payload saying what happened to the workflow whose id is in `column`:
/// `e:<id>` an event for it, `c:<id>` it closed ([`change_of`] reads them back), or `*`
/// (anything) for an id too long for a notification (PostgreSQL takes up to 8000 bytes).
fn payload(kind: char, column: &str) -> String {
    format!("CASE WHEN octet_length({column}) < 7900 THEN '{kind}:' || {column} ELSE '*' END")
}

/// Every statement the store runs, with the schema and channel filled in.
struct Queries {
    lock_workflow: String,
    create: String,
    load: String,
    load_for_step: String,
    list: String,
    enqueue: String,
    read_inbox: String,
    request_cancel: String,
    /// The commit statements made so far, by the parts of a step they apply
    /// ([`Queries::commit`]).
    commits: Mutex<HashMap<u16, Arc<CommitSql>>>,
    /// The schema (quoted) and the channel (a literal), for the commit statements.
    schema_sql: String,
    chan_sql: String,
    task_attempt: String,
    heartbeat: String,
    set_stuck: String,
    terminate: String,
    /// The closed workflows a purge selects ($1 closed before, $2 id or NULL, $3 limit,
    /// $4 statuses), oldest close first; `purge` deletes them with their rows.
    purge_select: String,
    purge: String,
    running: String,
    running_tasks: String,
    running_timers: String,
    running_inbox: String,
    these_tasks: String,
    these_timers: String,
    these_inbox: String,
    tasks: String,
    history: String,
    to_step: String,
    claim: String,
    renew: String,
    release: String,
    /// Gives up the lease of $1 if it is still $2's at epoch $3.
    release_one: String,
    /// Locks the workflow rows of several ids, in id order.
    lock_workflows: String,
}

impl Queries {
    fn new(s: &str, channel: &str) -> Queries {
        let now = NOW_MS;
        let cols = workflow_columns("", None);
        let w_cols = workflow_columns("w.", None);
        let chan = format!("'{}'", channel.replace('\'', "''"));
        // A task write fenced by its workflow's lease ($1 id, $2 op; `owner`/`epoch` the
        // fence's parameters): the answer says whether the workflow exists, its lease, and
        // whether the task was updated (see `fence_check_row`).
        let fenced_task_update = |set: &str, owner: &str, epoch: &str| {
            format!(
                "WITH w AS (
                    SELECT owner, lease_epoch FROM {s}.workflows WHERE id = $1 FOR SHARE
                ), upd AS (
                    UPDATE {s}.tasks SET {set}
                    WHERE workflow_id = $1 AND op = $2
                      AND ({owner}::text IS NULL OR EXISTS (SELECT 1 FROM w
                          WHERE owner = {owner}::text AND lease_epoch = {epoch}::bigint))
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM w), w.owner, w.lease_epoch,
                    (SELECT count(*) FROM upd)
                FROM (SELECT 1) one LEFT JOIN w ON true"
            )
        };
        let notify_event = |column: &str| format!("pg_notify({chan}, {})", payload('e', column));
        let notify_closed = |column: &str| format!("pg_notify({chan}, {})", payload('c', column));
        // A workflow no worker holds: any worker may claim it, whichever it is.
        let notify_claimable = format!("pg_notify({chan}, '+')");
        let fenced = |owner: &str, epoch: &str| {
            format!("({owner}::text IS NULL OR (owner = {owner}::text AND lease_epoch = {epoch}::bigint))")
        };
        Queries {
            lock_workflow: format!("SELECT status FROM {s}.workflows WHERE id = $1 FOR UPDATE"),
            lock_workflows: format!(
                "SELECT id FROM {s}.workflows WHERE id = ANY($1) ORDER BY id FOR UPDATE"
            ),
            // $1 id, $2 type, $3 fingerprint, $4 snapshot, $5 state, $6 at, $7 parent id,
            // $8 parent op, $9 owner, $10 lease ms, $11 WorkflowStarted.
            create: format!(
                "WITH ins AS (
                    INSERT INTO {s}.workflows (id, workflow_type, schema_fingerprint, status,
                        snapshot, version, state_name, created_at_ms, updated_at_ms, parent_id,
                        parent_op, owner, lease_epoch, lease_until_ms)
                    VALUES ($1, $2, $3, 'running', $4, 0, $5, $6, $6, $7, $8, $9::text,
                        CASE WHEN $9::text IS NULL THEN 0 ELSE 1 END,
                        CASE WHEN $9::text IS NULL THEN NULL ELSE {now} + $10::bigint END)
                    ON CONFLICT (id) DO NOTHING
                    RETURNING id, owner
                ), hist AS (
                    INSERT INTO {s}.history (workflow_id, seq, at_ms, event)
                    SELECT id, 1, $6, $11 FROM ins
                )
                SELECT (SELECT count(*) FROM ins),
                    (SELECT count({notify_claimable}) FROM ins WHERE owner IS NULL)"
            ),
            load: format!("SELECT {cols} FROM {s}.workflows WHERE id = $1"),
            load_for_step: format!(
                "SELECT {}, i.seqs, i.events FROM {s}.workflows w
                 CROSS JOIN LATERAL (SELECT array_agg(seq ORDER BY seq) AS seqs,
                     array_agg(event ORDER BY seq) AS events
                     FROM {s}.inbox WHERE workflow_id = w.id) i
                 WHERE w.id = $1",
                workflow_columns("w.", Some("$2::bigint"))
            ),
            list: format!(
                "SELECT {cols} FROM {s}.workflows WHERE $1::text IS NULL OR status = $1::text \
                 ORDER BY id"
            ),
            // The share lock waits for a step that is closing the workflow, and makes that
            // step wait for this event, which it then deletes with the rest of the inbox.
            enqueue: format!(
                "WITH w AS (SELECT id, status FROM {s}.workflows WHERE id = $1 FOR SHARE),
                ins AS (
                    INSERT INTO {s}.inbox (workflow_id, event)
                    SELECT id, $2 FROM w WHERE {OPEN}
                    RETURNING seq, workflow_id
                )
                SELECT w.status, (SELECT seq FROM ins), (SELECT count({}) FROM ins) FROM w",
                notify_event("workflow_id")
            ),
            read_inbox: format!(
                "SELECT i.seq, i.event FROM {s}.workflows w
                 LEFT JOIN {s}.inbox i ON i.workflow_id = w.id
                 WHERE w.id = $1 ORDER BY i.seq"
            ),
            // After `lock_workflow`. $1 id, $2 reason, $3 the CancelRequested event.
            purge_select: format!(
                "SELECT id FROM {s}.workflows WHERE status <> 'running' AND status = ANY($4) \
                 AND updated_at_ms < $1 AND ($2::text IS NULL OR id = $2::text) \
                 ORDER BY updated_at_ms, id LIMIT $3"
            ),
            // Rows a concurrent purge (another worker's retention) holds are skipped.
            purge: format!(
                "WITH victims AS (
                    SELECT id FROM {s}.workflows WHERE status <> 'running' AND status = ANY($4)
                        AND updated_at_ms < $1 AND ($2::text IS NULL OR id = $2::text)
                    ORDER BY updated_at_ms, id LIMIT $3 FOR UPDATE SKIP LOCKED
                ), h AS (
                    DELETE FROM {s}.history WHERE workflow_id IN (SELECT id FROM victims)
                ), i AS (
                    DELETE FROM {s}.inbox WHERE workflow_id IN (SELECT id FROM victims)
                ), t AS (
                    DELETE FROM {s}.tasks WHERE workflow_id IN (SELECT id FROM victims)
                ), m AS (
                    DELETE FROM {s}.timers WHERE workflow_id IN (SELECT id FROM victims)
                ), orphans AS (
                    UPDATE {s}.workflows SET parent_id = NULL, parent_op = NULL
                    WHERE parent_id IN (SELECT id FROM victims)
                        AND id NOT IN (SELECT id FROM victims)
                )
                DELETE FROM {s}.workflows WHERE id IN (SELECT id FROM victims) RETURNING id"
            ),
            request_cancel: format!(
                "WITH upd AS (
                    UPDATE {s}.workflows SET cancel_reason = $2
                    WHERE id = $1 AND {OPEN} AND cancel_reason IS NULL
                    RETURNING id
                ), ins AS (
                    INSERT INTO {s}.inbox (workflow_id, event) SELECT id, $3 FROM upd
                    RETURNING workflow_id
                )
                SELECT (SELECT count(*) FROM upd), (SELECT count({}) FROM ins)",
                notify_event("workflow_id")
            ),
            commits: Mutex::default(),
            schema_sql: s.to_string(),
            chan_sql: chan.clone(),
            // $1 id, $2 op, $3 attempt, $4/$5 fence.
            task_attempt: fenced_task_update("attempt = $3", "$4", "$5"),
            // $1 id, $2 op, $3 details, $4 at, $5/$6 fence.
            heartbeat: fenced_task_update(
                "heartbeat_details = COALESCE($3::text, heartbeat_details), last_heartbeat_ms = $4",
                "$5",
                "$6",
            ),
            // $1 id, $2 fault, $3/$4 fence.
            set_stuck: format!(
                "WITH w AS (
                    SELECT status, owner, lease_epoch FROM {s}.workflows WHERE id = $1 FOR UPDATE
                ), upd AS (
                    UPDATE {s}.workflows SET stuck = $2::text,
                        stuck_inbox_seq = CASE WHEN $2::text IS NULL THEN NULL ELSE
                            (SELECT COALESCE(MAX(seq), 0) FROM {s}.inbox WHERE workflow_id = $1)
                        END
                    WHERE id = $1 AND EXISTS (SELECT 1 FROM w
                        WHERE {OPEN} AND {})
                    RETURNING 1
                )
                SELECT w.status, w.owner, w.lease_epoch, (SELECT count(*) FROM upd) FROM w",
                fenced("$3", "$4")
            ),
            // After `lock_workflow`. $1 id, $2 close, $3 at, $4 WorkflowTerminated.
            terminate: format!(
                "WITH upd AS (
                    UPDATE {s}.workflows SET status = 'terminated', close = $2,
                        updated_at_ms = $3, owner = NULL, lease_until_ms = NULL
                    WHERE id = $1 AND {OPEN}
                    RETURNING id
                ), hist AS (
                    INSERT INTO {s}.history (workflow_id, seq, at_ms, event)
                    SELECT upd.id, h.n + 1, $3, $4 FROM upd,
                        (SELECT COALESCE(MAX(seq), 0) AS n FROM {s}.history
                         WHERE workflow_id = $1) h
                ), inbox_gone AS (
                    DELETE FROM {s}.inbox WHERE workflow_id = $1 AND EXISTS (SELECT 1 FROM upd)
                ), tasks_gone AS (
                    DELETE FROM {s}.tasks WHERE workflow_id = $1 AND EXISTS (SELECT 1 FROM upd)
                ), timers_gone AS (
                    DELETE FROM {s}.timers WHERE workflow_id = $1 AND EXISTS (SELECT 1 FROM upd)
                )
                SELECT (SELECT count(*) FROM upd), (SELECT count({}) FROM upd)",
                notify_closed("id")
            ),
            running: format!(
                "SELECT {cols} FROM {s}.workflows WHERE status = 'running' ORDER BY id"
            ),
            running_tasks: format!(
                "SELECT t.workflow_id, {} FROM {s}.tasks t
                 JOIN {s}.workflows w ON w.id = t.workflow_id AND w.status = 'running'
                 ORDER BY t.workflow_id, t.op",
                prefixed("t.", TASK_COLUMNS)
            ),
            running_timers: format!(
                "SELECT t.workflow_id, t.op, t.fire_at_ms FROM {s}.timers t
                 JOIN {s}.workflows w ON w.id = t.workflow_id AND w.status = 'running'
                 ORDER BY t.workflow_id, t.op"
            ),
            running_inbox: format!(
                "SELECT i.workflow_id, i.seq, i.event FROM {s}.inbox i
                 JOIN {s}.workflows w ON w.id = i.workflow_id AND w.status = 'running'
                 ORDER BY i.seq"
            ),
            these_tasks: format!(
                "SELECT workflow_id, {TASK_COLUMNS} FROM {s}.tasks
                 WHERE workflow_id = ANY($1::text[]) ORDER BY workflow_id, op"
            ),
            these_timers: format!(
                "SELECT workflow_id, op, fire_at_ms FROM {s}.timers
                 WHERE workflow_id = ANY($1::text[]) ORDER BY workflow_id, op"
            ),
            these_inbox: format!(
                "SELECT workflow_id, seq, event FROM {s}.inbox
                 WHERE workflow_id = ANY($1::text[]) ORDER BY seq"
            ),
            tasks: format!(
                "SELECT t.workflow_id, {} FROM {s}.workflows w
                 LEFT JOIN {s}.tasks t ON t.workflow_id = w.id
                 WHERE w.id = $1 ORDER BY t.op",
                prefixed("t.", TASK_COLUMNS)
            ),
            history: format!(
                "SELECT h.seq, h.at_ms, h.event FROM {s}.workflows w
                 LEFT JOIN {s}.history h ON h.workflow_id = w.id
                 WHERE w.id = $1 ORDER BY h.seq"
            ),
            to_step: format!(
                "SELECT id FROM {s}.workflows w
                 WHERE owner = $1 AND status = 'running' AND CASE
                     WHEN stuck IS NULL THEN version = 0 OR EXISTS
                         (SELECT 1 FROM {s}.inbox i WHERE i.workflow_id = w.id)
                     ELSE EXISTS (SELECT 1 FROM {s}.inbox i WHERE i.workflow_id = w.id
                         AND i.seq > COALESCE(w.stuck_inbox_seq, 0))
                 END
                 ORDER BY id"
            ),
            // $1 owner, $2 lease ms, $3 limit. The expression and the literal status match
            // the `workflows_claimable` index.
            claim: format!(
                "UPDATE {s}.workflows w
                 SET owner = $1, lease_epoch = w.lease_epoch + 1, lease_until_ms = {now} + $2
                 FROM (
                     SELECT id FROM {s}.workflows
                     WHERE status = 'running' AND COALESCE(lease_until_ms, 0) <= {now}
                     ORDER BY COALESCE(lease_until_ms, 0)
                     LIMIT $3
                     FOR UPDATE SKIP LOCKED
                 ) picked
                 WHERE w.id = picked.id
                 RETURNING {w_cols}"
            ),
            // Statements that lock several workflow rows take the locks in id order, as
            // `lock_workflows` does for a step that writes to other workflows: two of them
            // can never wait on each other (a deadlock).
            renew: format!(
                "UPDATE {s}.workflows w SET lease_until_ms = {now} + $2
                 FROM (SELECT id FROM {s}.workflows WHERE owner = $1 AND status = 'running'
                       ORDER BY id FOR UPDATE) l
                 WHERE w.id = l.id AND w.owner = $1 AND w.status = 'running'
                 RETURNING w.id, w.lease_epoch"
            ),
            release_one: format!(
                "WITH rel AS (
                    UPDATE {s}.workflows SET owner = NULL, lease_until_ms = NULL
                    WHERE id = $1 AND owner = $2 AND lease_epoch = $3 RETURNING 1
                )
                SELECT count(*), (SELECT count({notify_claimable}) FROM rel) FROM rel"
            ),
            release: format!(
                "WITH rel AS (
                    UPDATE {s}.workflows w SET owner = NULL, lease_until_ms = NULL
                    FROM (SELECT id FROM {s}.workflows WHERE owner = $1 ORDER BY id FOR UPDATE) l
                    WHERE w.id = l.id AND w.owner = $1 RETURNING 1
                )
                SELECT count(*),
                    (SELECT count({notify_claimable}) FROM (SELECT 1 FROM rel LIMIT 1) one)
                FROM rel"
            ),
        }
    }

    /// The statement that commits a step made of `parts`, built at its first use.
    fn commit(&self, parts: Parts) -> Arc<CommitSql> {
        let mut made = self.commits.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(
            made.entry(parts.0)
                .or_insert_with(|| Arc::new(commit_sql(&self.schema_sql, &self.chan_sql, parts))),
        )
    }
}

/// Which parts a step's commit statement has: each step pays only for what it changes (a
/// part with nothing to do still costs its executor setup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Parts(u16);

impl Parts {
    const CLOSING: Parts = Parts(1);
    const FENCED: Parts = Parts(1 << 1);
    const HISTORY: Parts = Parts(1 << 2);
    const CONSUMED: Parts = Parts(1 << 3);
    const NEW_TASKS: Parts = Parts(1 << 4);
    const CANCELS: Parts = Parts(1 << 5);
    const REMOVED_TASKS: Parts = Parts(1 << 6);
    const NEW_TIMERS: Parts = Parts(1 << 7);
    const REMOVED_TIMERS: Parts = Parts(1 << 8);

    fn has(self, part: Parts) -> bool {
        self.0 & part.0 != 0
    }

    fn with(self, part: Parts, on: bool) -> Parts {
        if on {
            Parts(self.0 | part.0)
        } else {
            self
        }
    }
}

/// A value a commit statement takes as a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Id,
    Expected,
    Snapshot,
    State,
    At,
    Status,
    Close,
    FenceOwner,
    FenceEpoch,
    History,
    Consumed,
    TaskOp,
    TaskActivity,
    TaskInput,
    TaskOptions,
    TaskAttempt,
    TaskDetails,
    TaskLastHeartbeat,
    TaskScheduled,
    TaskCancel,
    TaskNotify,
    CancelOp,
    CancelNotify,
    RemovedTasks,
    TimerOp,
    TimerFire,
    RemovedTimers,
}

impl Slot {
    fn sql_type(self) -> &'static str {
        match self {
            Slot::Id | Slot::Snapshot | Slot::State | Slot::Status | Slot::Close => "text",
            Slot::FenceOwner => "text",
            Slot::Expected | Slot::At | Slot::FenceEpoch => "bigint",
            Slot::History | Slot::TaskActivity | Slot::TaskInput | Slot::TaskOptions => "text[]",
            Slot::TaskDetails => "text[]",
            Slot::Consumed | Slot::TaskOp | Slot::TaskAttempt | Slot::TaskLastHeartbeat => {
                "bigint[]"
            }
            Slot::TaskScheduled | Slot::CancelOp | Slot::RemovedTasks => "bigint[]",
            Slot::TimerOp | Slot::TimerFire | Slot::RemovedTimers => "bigint[]",
            Slot::TaskCancel | Slot::TaskNotify | Slot::CancelNotify => "boolean[]",
        }
    }
}

/// A commit statement and the values it takes, in parameter order.
#[derive(Debug)]
struct CommitSql {
    sql: String,
    slots: Vec<Slot>,
}

/// A step's commit, one statement with the `parts` the step needs. The row is locked first
/// (`cur`), every other part applies only if the update `upd` did (version, status and fence
/// checked), and the answer says what was found so that a refusal can be told apart:
/// `status, version, owner, lease_epoch` as found, the new version (NULL when refused), and
/// the notifications sent.
fn commit_sql(s: &str, chan: &str, parts: Parts) -> CommitSql {
    let mut slots: Vec<Slot> = Vec::new();
    let mut param = |slot: Slot| {
        let n = match slots.iter().position(|s| *s == slot) {
            Some(i) => i + 1,
            None => {
                slots.push(slot);
                slots.len()
            }
        };
        format!("${n}::{}", slot.sql_type())
    };
    let id = param(Slot::Id);
    let expected = param(Slot::Expected);
    let snapshot = param(Slot::Snapshot);
    let state = param(Slot::State);
    let at = param(Slot::At);
    let closing = parts.has(Parts::CLOSING);
    let close = if closing {
        format!(
            ", status = {}, close = {}, owner = NULL, lease_until_ms = NULL",
            param(Slot::Status),
            param(Slot::Close)
        )
    } else {
        String::new()
    };
    let fence = if parts.has(Parts::FENCED) {
        format!(
            " AND owner = {} AND lease_epoch = {}",
            param(Slot::FenceOwner),
            param(Slot::FenceEpoch)
        )
    } else {
        String::new()
    };
    let mut sql = format!(
        "WITH cur AS (
            SELECT status, version, owner, lease_epoch FROM {s}.workflows
            WHERE id = {id} FOR UPDATE
        ), upd AS (
            UPDATE {s}.workflows SET version = version + 1, snapshot = {snapshot},
                state_name = {state}, stuck = NULL, stuck_inbox_seq = NULL,
                updated_at_ms = {at}{close}
            WHERE id = {id} AND EXISTS (SELECT 1 FROM cur
                WHERE status = 'running' AND version = {expected}{fence})
            RETURNING id, version
        )"
    );
    let applied = "EXISTS (SELECT 1 FROM upd)";
    if parts.has(Parts::HISTORY) {
        sql.push_str(&format!(
            ", hist AS (
                INSERT INTO {s}.history (workflow_id, seq, at_ms, event)
                SELECT upd.id, h.n + e.ord, {at}, e.event
                FROM upd,
                    (SELECT COALESCE(MAX(seq), 0) AS n FROM {s}.history WHERE workflow_id = {id}) h,
                    unnest({}) WITH ORDINALITY AS e(event, ord)
            )",
            param(Slot::History)
        ));
    }
    if closing {
        // The rest of the workflow's inbox, tasks and timers go with it.
        for table in ["inbox", "tasks", "timers"] {
            sql.push_str(&format!(
                ", {table}_gone AS (
                    DELETE FROM {s}.{table} WHERE workflow_id = {id} AND {applied}
                )"
            ));
        }
    } else {
        if parts.has(Parts::CONSUMED) {
            sql.push_str(&format!(
                ", inbox_gone AS (
                    DELETE FROM {s}.inbox
                    WHERE workflow_id = {id} AND seq = ANY({}) AND {applied}
                )",
                param(Slot::Consumed)
            ));
        }
        if parts.has(Parts::NEW_TASKS) {
            let columns = [
                Slot::TaskOp,
                Slot::TaskActivity,
                Slot::TaskInput,
                Slot::TaskOptions,
                Slot::TaskAttempt,
                Slot::TaskDetails,
                Slot::TaskLastHeartbeat,
                Slot::TaskScheduled,
                Slot::TaskCancel,
                Slot::TaskNotify,
            ]
            .map(&mut param)
            .join(", ");
            sql.push_str(&format!(
                ", tasks_new AS (
                    INSERT INTO {s}.tasks (workflow_id, {TASK_COLUMNS})
                    SELECT upd.id, t.* FROM upd, unnest({columns}) AS t({TASK_COLUMNS})
                    ON CONFLICT (workflow_id, op) DO UPDATE SET activity = excluded.activity,
                        input = excluded.input, options = excluded.options,
                        attempt = excluded.attempt,
                        heartbeat_details = excluded.heartbeat_details,
                        last_heartbeat_ms = excluded.last_heartbeat_ms,
                        scheduled_at_ms = excluded.scheduled_at_ms,
                        cancel_requested = excluded.cancel_requested,
                        notify_running = excluded.notify_running
                )"
            ));
        }
        if parts.has(Parts::CANCELS) {
            sql.push_str(&format!(
                ", tasks_cancelled AS (
                    UPDATE {s}.tasks t SET cancel_requested = true,
                        notify_running = t.notify_running OR c.notify
                    FROM unnest({}, {}) AS c(op, notify)
                    WHERE t.workflow_id = {id} AND t.op = c.op AND {applied}
                )",
                param(Slot::CancelOp),
                param(Slot::CancelNotify)
            ));
        }
        if parts.has(Parts::REMOVED_TASKS) {
            sql.push_str(&format!(
                ", tasks_gone AS (
                    DELETE FROM {s}.tasks
                    WHERE workflow_id = {id} AND op = ANY({}) AND {applied}
                )",
                param(Slot::RemovedTasks)
            ));
        }
        if parts.has(Parts::NEW_TIMERS) {
            sql.push_str(&format!(
                ", timers_new AS (
                    INSERT INTO {s}.timers (workflow_id, op, fire_at_ms)
                    SELECT upd.id, t.op, t.fire_at_ms FROM upd,
                        unnest({}, {}) AS t(op, fire_at_ms)
                    ON CONFLICT (workflow_id, op) DO UPDATE SET fire_at_ms = excluded.fire_at_ms
                )",
                param(Slot::TimerOp),
                param(Slot::TimerFire)
            ));
        }
        if parts.has(Parts::REMOVED_TIMERS) {
            sql.push_str(&format!(
                ", timers_gone AS (
                    DELETE FROM {s}.timers
                    WHERE workflow_id = {id} AND op = ANY({}) AND {applied}
                )",
                param(Slot::RemovedTimers)
            ));
        }
    }
    let notify = if closing {
        format!(
            "(SELECT count(pg_notify({chan}, {})) FROM upd)",
            payload('c', "upd.id")
        )
    } else {
        "0::bigint".to_string()
    };
    sql.push_str(&format!(
        "
        SELECT cur.status, cur.version, cur.owner, cur.lease_epoch,
            (SELECT version FROM upd), {notify}
        FROM cur"
    ));
    CommitSql { sql, slots }
}

/// `columns` (comma-separated) each prefixed with `prefix`.
fn prefixed(prefix: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{prefix}{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The durable [`Store`] on PostgreSQL: a schema of one database, shared safely by any
/// number of worker processes (each workflow stepped by the one holding its lease) and
/// clients.
///
/// Connect with a libpq-style URL, `postgres://user[:password]@host[:port]/db`; choose a
/// schema other than the server's default with `?options=-c%20search_path%3Dname` (created if
/// missing). The tables are created and upgraded by numbered migrations at connect; a schema
/// holding another program's tables, or a newer version of ours, is refused untouched. Leases
/// run on the server's clock; wake-ups are `LISTEN/NOTIFY` hints (see [`Store::changes`]).
/// The schema is documented at the top of `workflow-core/src/store/postgres.rs`.
///
/// ```no_run
/// # async fn demo() -> Result<(), workflow_core::StoreError> {
/// use workflow_core::PostgresStore;
/// let store = PostgresStore::connect("postgres://app@db.internal/payments").await?;
/// # Ok(()) }
/// ```
///
/// Cloning is cheap: clones share the connection pool and the notification listener.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    sql: Queries,
    /// The schema holding the tables, unquoted.
    schema: String,
    /// `host:port/db`, for messages (never the password).
    place: String,
    /// The `LISTEN` channel of this schema.
    channel: String,
    /// The connection settings, for the listener's own connection.
    config: tokio_postgres::Config,
    /// The runtime `connect` ran on, to start the listener from a plain thread.
    runtime: tokio::runtime::Handle,
    listener: Mutex<Option<Listener>>,
    /// Stops the listener when the last clone of the store is dropped.
    stop: CancellationToken,
}

/// The running notification listener.
struct Listener {
    sender: broadcast::Sender<StoreChange>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("place", &self.inner.place)
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the PostgreSQL database at `url` (`postgres://user[:password]@host[:port]/db`,
    /// libpq style), creates the schema the URL names in its search path
    /// (`?options=-c%20search_path%3Dorders`) if needed, and applies the migrations it lacks.
    ///
    /// Fails with [`StoreError::Backend`] saying what to do when the URL does not parse, the
    /// server does not answer or refuses the connection, the schema holds another program's
    /// tables, or it was written by a newer version of this library; a refused schema is
    /// left untouched. Messages name the host, port, database and schema, never the password.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Backend(format!(
                "`{}` is not a PostgreSQL URL ({}); expected \
                 postgres://user[:password]@host[:port]/database[?options=-c%20search_path%3Dschema]",
                redact(url),
                error_text(&e)
            ))
        })?;
        let place = place_of(&config);
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(StoreError::Backend(format!(
                "PostgreSQL at {place}: this build connects without TLS, so sslmode=require \
                 cannot be met; use sslmode=disable or prefer (or a TLS-terminating proxy)"
            )));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("workflow-core");
        }
        let named = config.get_options().and_then(search_path_schema);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| {
                StoreError::Backend(format!(
                    "PostgreSQL at {place}: could not build the pool: {e}"
                ))
            })?;
        let user = config.get_user().unwrap_or("").to_string();
        let mut client = pool.get().await.map_err(|e| pool_error(&place, &user, e))?;
        let schema = prepare_schema(&mut client, named, &place).await?;
        drop(client);
        let channel = channel_name(&schema);
        let sql = Queries::new(&quote_ident(&schema), &channel);
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                sql,
                schema,
                place,
                channel,
                config,
                runtime: tokio::runtime::Handle::current(),
                listener: Mutex::new(None),
                stop: CancellationToken::new(),
            }),
        })
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// A pooled connection.
    async fn client(&self) -> Result<Object, StoreError> {
        let user = self.inner.config.get_user().unwrap_or("");
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| pool_error(&self.inner.place, user, e))
    }

    /// `sql` prepared on `client` (once per connection).
    async fn prepare(&self, client: &Object, sql: &str) -> Result<Statement, StoreError> {
        client
            .prepare_cached(sql)
            .await
            .map_err(|e| self.backend(&e))
    }

    /// The store error for an error PostgreSQL reported.
    fn backend(&self, e: &tokio_postgres::Error) -> StoreError {
        StoreError::Backend(format!(
            "workflow database (PostgreSQL at {}, schema `{}`): {}",
            self.inner.place,
            self.inner.schema,
            error_text(e)
        ))
    }

    /// Runs one statement and returns its rows.
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let stmt = self.prepare(&client, sql).await?;
        client
            .query(&stmt, params)
            .await
            .map_err(|e| self.backend(&e))
    }

    /// Runs one statement in a transaction committed without waiting for its WAL flush
    /// (`synchronous_commit = off`), in one round trip. For lease claims and renewals only:
    /// losing one to a server crash is safe, because every write that depends on a lease is
    /// fenced and committed durably, and a durable commit flushes the WAL written before it
    /// (the claim included). It takes the one sync to disk off the path of a new workflow.
    async fn query_without_flush(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let stmt = self.prepare(&client, sql).await?;
        let result = futures::try_join!(
            client.batch_execute("BEGIN; SET LOCAL synchronous_commit = off"),
            client.query(&stmt, params),
            client.batch_execute("COMMIT"),
        );
        match result {
            Ok((_, rows, _)) => Ok(rows),
            Err(e) => {
                abandon(client).await;
                Err(self.backend(&e))
            }
        }
    }

    /// Runs one statement that returns exactly one row.
    async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, StoreError> {
        let mut rows = self.query(sql, params).await?;
        match rows.len() {
            1 => Ok(rows.remove(0)),
            n => Err(StoreError::Backend(format!(
                "workflow database (PostgreSQL at {}, schema `{}`): a statement returned {n} \
                 rows where one was expected",
                self.inner.place, self.inner.schema
            ))),
        }
    }

    /// One transaction, in one round trip: `BEGIN`, [`Queries::lock_workflow`] on `id`, then
    /// `apply` with `params`, then `COMMIT`, pipelined on one connection. `apply` thus sees
    /// everything committed before the row lock was granted. Returns the locked row's status
    /// (`None`: no such workflow) and `apply`'s rows.
    async fn locked(
        &self,
        id: &str,
        apply: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Option<String>, Vec<Row>), StoreError> {
        let client = self.client().await?;
        let lock = self.prepare(&client, &self.inner.sql.lock_workflow).await?;
        let apply = self.prepare(&client, apply).await?;
        let lock_params: [&(dyn ToSql + Sync); 1] = [&id];
        let result = futures::try_join!(
            client.batch_execute("BEGIN"),
            client.query_opt(&lock, &lock_params),
            client.query(&apply, params),
            client.batch_execute("COMMIT"),
        );
        match result {
            Ok((_, locked, rows, _)) => {
                let status = locked
                    .map(|row| get::<String>(&row, 0, &format!("workflow `{id}`")))
                    .transpose()?;
                Ok((status, rows))
            }
            Err(e) => {
                abandon(client).await;
                Err(self.backend(&e))
            }
        }
    }

    /// Runs `queries` (each with its parameters) in one read-only snapshot, in one round
    /// trip.
    async fn snapshot_read(
        &self,
        queries: &[(&str, &[&(dyn ToSql + Sync)])],
    ) -> Result<Vec<Vec<Row>>, StoreError> {
        let client = self.client().await?;
        let mut stmts = Vec::with_capacity(queries.len());
        for (sql, _) in queries {
            stmts.push(self.prepare(&client, sql).await?);
        }
        // Polled in order, so sent in order: BEGIN, the queries, COMMIT.
        let reads = stmts
            .iter()
            .zip(queries)
            .map(|(stmt, (_, params))| client.query(stmt, params));
        let result = futures::try_join!(
            client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
            futures::future::try_join_all(reads),
            client.batch_execute("COMMIT"),
        );
        match result {
            Ok((_, rows, _)) => Ok(rows),
            Err(e) => {
                abandon(client).await;
                Err(self.backend(&e))
            }
        }
    }

    /// Tasks, timers and inbox of the workflows `ids`, grouped by workflow, from rows in the
    /// shape of [`Queries::these_tasks`] (and `running_tasks`), `these_timers`, `these_inbox`.
    /// A row that does not decode is noted as its workflow's damage.
    fn children(
        tasks: Vec<Row>,
        timers: Vec<Row>,
        inbox: Vec<Row>,
    ) -> Result<HashMap<String, Children>, StoreError> {
        let mut by_id: HashMap<String, Children> = HashMap::new();
        for row in &tasks {
            let id: String = get(row, 0, "a tasks row")?;
            let task = read_task(row, 1, &id)?.decode(&id);
            let children = by_id.entry(id).or_default();
            match task {
                Ok(task) => children.tasks.push(task),
                Err(fault) => children.damage.note(fault),
            }
        }
        for row in &timers {
            let id: String = get(row, 0, "a timers row")?;
            let owner = format!("timer of workflow `{id}`");
            let timer = RawTimer {
                op: Ok(get(row, 1, &owner)?),
                fire_at_ms: Ok(get(row, 2, &owner)?),
            }
            .decode(&id);
            let children = by_id.entry(id).or_default();
            match timer {
                Ok(timer) => children.timers.push(timer),
                Err(fault) => children.damage.note(fault),
            }
        }
        for row in &inbox {
            let id: String = get(row, 0, "an inbox row")?;
            let entry = read_inbox_entry(row, 1, &id)?.decode();
            let children = by_id.entry(id).or_default();
            match entry {
                Ok(entry) => children.inbox.push(entry),
                Err(fault) => children.damage.note(fault),
            }
        }
        Ok(by_id)
    }
}

/// A workflow's tasks, timers and inbox, as [`RunningWorkflow`] holds them, and the first
/// fault of a row of them that does not decode.
#[derive(Default)]
struct Children {
    tasks: Vec<TaskRecord>,
    timers: Vec<TimerRecord>,
    inbox: Vec<InboxEntry>,
    damage: Damage,
}

impl Children {
    /// The Running workflow of the decoded row `(record, fault)` with these.
    fn with(self, (record, fault): (WorkflowRecord, Option<WorkflowFault>)) -> RunningWorkflow {
        match self.damage.fault() {
            Some(damage) => {
                rows::running(record, fault, Err(damage), Ok(Vec::new()), Ok(Vec::new()))
            }
            None => rows::running(
                record,
                fault,
                Ok(self.tasks),
                Ok(self.timers),
                Ok(self.inbox),
            ),
        }
    }
}

/// After a failed pipeline: makes sure the connection does not go back to the pool inside a
/// transaction (a failure before `COMMIT` was sent), and drops it from the pool if even that
/// fails.
async fn abandon(client: Object) {
    if client.batch_execute("ROLLBACK").await.is_err() {
        let _ = Object::take(client);
    }
}

/// Creates the schema if the URL named one, refuses another program's schema or a newer
/// one, and applies the missing migrations: one transaction, under an advisory lock of the
/// schema. Returns the schema's name.
async fn prepare_schema(
    client: &mut Object,
    named: Option<String>,
    place: &str,
) -> Result<String, StoreError> {
    let fail = |e: tokio_postgres::Error| {
        StoreError::Backend(format!(
            "PostgreSQL at {place}: could not prepare the workflow schema: {}",
            error_text(&e)
        ))
    };
    let schema = match named {
        Some(schema) => schema,
        None => {
            let row = client
                .query_one("SELECT current_schema()::text", &[])
                .await
                .map_err(fail)?;
            match row.try_get::<_, Option<String>>(0) {
                Ok(Some(schema)) => schema,
                _ => {
                    return Err(StoreError::Backend(format!(
                        "PostgreSQL at {place}: the search path names no existing schema to \
                         keep the workflow tables in; add `?options=-c%20search_path%3DNAME` \
                         to the URL to choose (and create) one"
                    )))
                }
            }
        }
    };
    let quoted = quote_ident(&schema);
    let tx = client.transaction().await.map_err(fail)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lock_key(&format!("workflow-core migrations {schema}"))],
    )
    .await
    .map_err(fail)?;
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
                EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r'),
                (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S'))",
            &[&schema, &META_TABLE],
        )
        .await
        .map_err(fail)?;
    let read = |e: tokio_postgres::Error| fail(e);
    let (exists, ours, relations): (bool, bool, i64) = (
        row.try_get(0).map_err(read)?,
        row.try_get(1).map_err(read)?,
        row.try_get(2).map_err(read)?,
    );
    let applied = if ours {
        let row = tx
            .query_opt(
                &format!("SELECT value FROM {quoted}.{META_TABLE} WHERE key = 'schema_version'"),
                &[],
            )
            .await
            .map_err(fail)?;
        match row.map(|r| r.try_get::<_, String>(0)) {
            None => 0,
            Some(Ok(text)) => text.parse::<usize>().map_err(|_| {
                StoreError::Backend(format!(
                    "workflow database (PostgreSQL at {place}, schema `{schema}`) is damaged: \
                     its schema_version is `{text}`, not a number; restore it from a backup"
                ))
            })?,
            Some(Err(e)) => return Err(fail(e)),
        }
    } else if relations > 0 {
        return Err(StoreError::Backend(format!(
            "schema `{schema}` of PostgreSQL at {place} belongs to something else (it has \
             tables but no workflow schema); it was left untouched. Choose another schema with \
             `?options=-c%20search_path%3DNAME` in the URL, or another database"
        )));
    } else {
        0
    };
    let known = MIGRATIONS.len();
    if applied > known {
        return Err(StoreError::Backend(format!(
            "workflow database (PostgreSQL at {place}, schema `{schema}`) has schema version \
             {applied}, newer than this build understands ({known}); open it with a newer \
             version of workflow-core"
        )));
    }
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {quoted}"))
            .await
            .map_err(fail)?;
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(&sql.replace("{s}", &quoted))
            .await
            .map_err(fail)?;
        tx.execute(
            &format!(
                "INSERT INTO {quoted}.{META_TABLE} (key, value) VALUES ('schema_version', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            &[&(i + 1).to_string()],
        )
        .await
        .map_err(fail)?;
    }
    tx.commit().await.map_err(fail)?;
    Ok(schema)
}

/// The first schema of a `search_path` set in connection options (`-c search_path=a,b`,
/// `-csearch_path=a`, `--search_path=a`), unquoted as PostgreSQL reads it; `None` when the
/// options set none or its first entry is `$user`.
fn search_path_schema(options: &str) -> Option<String> {
    // Options are separated by unescaped whitespace; a backslash escapes the next character.
    let mut tokens = Vec::new();
    let mut token = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => token.extend(chars.next()),
            c if c.is_whitespace() => {
                if !token.is_empty() {
                    tokens.push(std::mem::take(&mut token));
                }
            }
            c => token.push(c),
        }
    }
    if !token.is_empty() {
        tokens.push(token);
    }
    let mut value = None;
    let mut tokens = tokens.into_iter();
    while let Some(token) = tokens.next() {
        let setting = if token == "-c" {
            tokens.next()
        } else if let Some(rest) = token.strip_prefix("--") {
            Some(rest.to_string())
        } else {
            token.strip_prefix("-c").map(str::to_string)
        };
        if let Some((name, val)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            if name
                .trim()
                .replace('-', "_")
                .eq_ignore_ascii_case("search_path")
            {
                value = Some(val.to_string());
            }
        }
    }
    let path = value?;
    let path = path.trim_start();
    let first = if let Some(rest) = path.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = rest.chars().peekable();
        loop {
            match chars.next()? {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    name.push('"');
                }
                '"' => break,
                c => name.push(c),
            }
        }
        name
    } else {
        path.split(',').next()?.trim().to_ascii_lowercase()
    };
    (!first.is_empty() && first != "$user").then_some(first)
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// FNV-1a: a hash that every process computes the same way (channel names, lock keys).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn lock_key(text: &str) -> i64 {
    fnv1a(text) as i64
}

/// The `LISTEN` channel of a schema: readable, at most 63 bytes, and distinct per schema
/// (the hash covers the exact name).
fn channel_name(schema: &str) -> String {
    let readable: String = schema
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("wf_{readable}_{:08x}", fnv1a(schema) as u32)
}

/// `host:port/database` of a configuration, for messages.
fn place_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// A URL with its password (in the user part or a `password=` parameter) masked.
fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                let (start, end) = (scheme_end + 3 + colon + 1, scheme_end + 3 + at);
                out.replace_range(start..end, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

/// The text of a PostgreSQL error: the server's message with its detail and hint, or the
/// client's error with its causes.
fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = db.message().to_string();
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The store error for a failure to get a connection.
fn pool_error(place: &str, user: &str, e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => connect_error(place, user, &e),
        other => StoreError::Backend(format!(
            "could not get a connection to PostgreSQL at {place}: {other}"
        )),
    }
}

/// The store error for a failed connection attempt, saying what to do.
fn connect_error(place: &str, user: &str, e: &tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => {
            let hint = match db.code().code() {
                "28P01" | "28000" => "check the user and password in the URL",
                "3D000" => "create the database (createdb) or fix its name in the URL",
                "53300" => {
                    "the server has too many connections; raise max_connections or \
                            run fewer workers"
                }
                _ => "check the URL and the server's settings",
            };
            StoreError::Backend(format!(
                "PostgreSQL at {place} refused the connection of user `{user}`: {}; {hint}",
                error_text(e)
            ))
        }
        None => StoreError::Backend(format!(
            "could not connect to PostgreSQL at {place}: {}; is the server running and \
             reachable?",
            error_text(e)
        )),
    }
}

/// A lease duration as the `BIGINT` added to the server's clock.
fn lease_ms(duration_ms: u64) -> i64 {
    i64::try_from(duration_ms)
        .unwrap_or(i64::MAX)
        .min(MAX_LEASE_MS)
}

/// Column `idx` of `row`, or an error naming `owner` (the workflow, task, …) and the column.
fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize, owner: &str) -> Result<T, StoreError> {
    row.try_get(idx).map_err(|e| {
        let column = row.columns().get(idx).map_or("?", |c| c.name());
        StoreError::Backend(format!(
            "{owner}: stored column `{column}` does not read: {}",
            error_text(&e)
        ))
    })
}

/// Reads the workflows columns of a row.
trait ReadRow {
    fn read(row: &Row) -> Result<RawWorkflow, StoreError>;
}

impl ReadRow for RawWorkflow {
    /// Reads the [`WORKFLOW_COLUMNS`] of `row`, from column 0. The columns are typed, so
    /// only the JSON columns and the status can hold what does not decode (see [`rows`]).
    fn read(row: &Row) -> Result<RawWorkflow, StoreError> {
        let id: String = get(row, 0, "a workflows row")?;
        let owner = format!("workflow `{id}`");
        let o = owner.as_str();
        Ok(RawWorkflow {
            workflow_type: get(row, 1, o)?,
            schema: Ok(get(row, 2, o)?),
            status: get(row, 3, o)?,
            snapshot: get(row, 4, o)?,
            version: Ok(get(row, 5, o)?),
            state_name: get(row, 6, o)?,
            cancel_reason: get(row, 7, o)?,
            stuck: get(row, 8, o)?,
            close: Ok(get(row, 9, o)?),
            created_at_ms: Ok(get(row, 10, o)?),
            updated_at_ms: Ok(get(row, 11, o)?),
            parent_id: Ok(get(row, 12, o)?),
            parent_op: Ok(get(row, 13, o)?),
            owner: get(row, 14, o)?,
            lease_epoch: Ok(get(row, 15, o)?),
            lease_until_ms: Ok(get(row, 16, o)?),
            id,
        })
    }
}

/// The decoded workflow row, and the fault of a column that does not decode (see
/// [`RawWorkflow::decode`]).
fn read_workflow(row: &Row) -> Result<(WorkflowRecord, Option<WorkflowFault>), StoreError> {
    Ok(RawWorkflow::read(row)?.decode())
}

/// A task from the [`TASK_COLUMNS`] of `row`, starting at column `at`, to decode.
fn read_task(row: &Row, at: usize, id: &str) -> Result<RawTask, StoreError> {
    let op: i64 = get(row, at, &format!("a task of workflow `{id}`"))?;
    let what = format!("task op#{op} of workflow `{id}`");
    let w = what.as_str();
    Ok(RawTask {
        op: Ok(op),
        activity: Ok(get(row, at + 1, w)?),
        input: Ok(get(row, at + 2, w)?),
        options: Ok(get(row, at + 3, w)?),
        attempt: Ok(get(row, at + 4, w)?),
        heartbeat_details: Ok(get(row, at + 5, w)?),
        last_heartbeat_ms: Ok(get(row, at + 6, w)?),
        scheduled_at_ms: Ok(get(row, at + 7, w)?),
        cancel_requested: Ok(get(row, at + 8, w)?),
        notify_running: Ok(get(row, at + 9, w)?),
    })
}

/// An inbox entry from columns `at` (seq) and `at + 1` (event) of `row`, to decode.
fn read_inbox_entry(row: &Row, at: usize, id: &str) -> Result<RawInbox, StoreError> {
    let owner = format!("inbox of workflow `{id}`");
    Ok(RawInbox {
        seq: Ok(get(row, at, &owner)?),
        event: Ok(get(row, at + 1, &owner)?),
    })
}

/// The rows of workflow `id` as decoded, or [`StoreError::Damaged`] naming the first that
/// does not decode.
fn whole<T>(
    id: &str,
    rows: impl IntoIterator<Item = Result<T, WorkflowFault>>,
) -> Result<Vec<T>, StoreError> {
    rows.into_iter()
        .collect::<Result<Vec<T>, WorkflowFault>>()
        .map_err(|fault| StoreError::Damaged {
            id: id.to_string(),
            fault,
        })
}

/// What a fenced write found on the workflow row: refuses the write with
/// [`StoreError::LeaseLost`] unless the stored lease is the fence's (as
/// [`check_fence`](super::check_fence)).
fn fence_check(
    id: &str,
    owner: Option<String>,
    epoch: i64,
    fence: Option<&Fence>,
) -> Result<(), StoreError> {
    super::check_fence(id, stored_lease(owner, epoch, None).as_ref(), fence)
}

/// [`fence_check`] on a fenced task write's answer: column 0 says whether the workflow row
/// exists, columns 1 and 2 hold its owner and epoch.
fn fence_check_row(id: &str, row: &Row, fence: Option<&Fence>) -> Result<(), StoreError> {
    let o = format!("workflow `{id}`");
    if get::<i64>(row, 0, &o)? > 0 {
        fence_check(
            id,
            get(row, 1, &o)?,
            get::<Option<i64>>(row, 2, &o)?.unwrap_or(0),
            fence,
        )?;
    }
    Ok(())
}

/// The fence as statement parameters.
fn fence_params(fence: Option<&Fence>) -> (Option<&str>, Option<i64>) {
    match fence {
        Some(f) => (Some(f.owner.as_str()), Some(int(f.epoch))),
        None => (None, None),
    }
}

/// A stored status as the writes see it: an unknown one is Running (see [`OPEN`]).
fn parse_status(status: &str) -> WorkflowStatus {
    stored_status(status).0
}

/// A step's task and timer changes as the commit statement's arrays, applied in the order
/// of [`StepCommit`] (new tasks, then cancels, then removals): the statement's parts cannot
/// see one another's rows, so each row is touched by one part only.
#[derive(Default)]
struct CommitArrays {
    history: Vec<String>,
    consumed: Vec<i64>,
    t_op: Vec<i64>,
    t_activity: Vec<String>,
    t_input: Vec<String>,
    t_options: Vec<String>,
    t_attempt: Vec<i64>,
    t_details: Vec<Option<String>>,
    t_last_heartbeat: Vec<Option<i64>>,
    t_scheduled: Vec<i64>,
    t_cancel: Vec<bool>,
    t_notify: Vec<bool>,
    c_op: Vec<i64>,
    c_notify: Vec<bool>,
    removed_tasks: Vec<i64>,
    timer_op: Vec<i64>,
    timer_fire: Vec<i64>,
    removed_timers: Vec<i64>,
}

impl CommitArrays {
    fn of(commit: &StepCommit) -> Result<CommitArrays, StoreError> {
        let mut a = CommitArrays {
            history: commit.history.iter().map(json).collect::<Result<_, _>>()?,
            consumed: commit.consumed_inbox.iter().map(|s| int(*s)).collect(),
            removed_tasks: commit.removed_tasks.iter().map(|op| int(op.0)).collect(),
            removed_timers: commit.removed_timers.iter().map(|op| int(op.0)).collect(),
            ..CommitArrays::default()
        };
        // The last new task of an op wins; cancels apply to it; a removal deletes it.
        let mut new_tasks: BTreeMap<u64, TaskRecord> = BTreeMap::new();
        for task in &commit.new_tasks {
            new_tasks.insert(task.op.0, task.clone());
        }
        let mut cancels: BTreeMap<u64, bool> = BTreeMap::new();
        for cancel in &commit.cancelled_tasks {
            match new_tasks.get_mut(&cancel.op.0) {
                Some(task) => {
                    task.cancel_requested = true;
                    task.notify_running |= cancel.notify_running;
                }
                None => *cancels.entry(cancel.op.0).or_default() |= cancel.notify_running,
            }
        }
        for op in &commit.removed_tasks {
            new_tasks.remove(&op.0);
            cancels.remove(&op.0);
        }
        for task in new_tasks.into_values() {
            a.t_op.push(int(task.op.0));
            a.t_activity.push(task.activity);
            a.t_input.push(json(&task.input)?);
            a.t_options.push(json(&task.options)?);
            a.t_attempt.push(i64::from(task.attempt));
            a.t_details
                .push(task.heartbeat_details.as_ref().map(json).transpose()?);
            a.t_last_heartbeat.push(task.last_heartbeat_ms.map(int));
            a.t_scheduled.push(int(task.scheduled_at_ms));
            a.t_cancel.push(task.cancel_requested);
            a.t_notify.push(task.notify_running);
        }
        for (op, notify) in cancels {
            a.c_op.push(int(op));
            a.c_notify.push(notify);
        }
        let mut timers: BTreeMap<u64, u64> = BTreeMap::new();
        for timer in &commit.new_timers {
            timers.insert(timer.op.0, timer.fire_at_ms);
        }
        for op in &commit.removed_timers {
            timers.remove(&op.0);
        }
        for (op, fire_at_ms) in timers {
            a.timer_op.push(int(op));
            a.timer_fire.push(int(fire_at_ms));
        }
        Ok(a)
    }
}

/// Everything a step's commit statement takes.
struct CommitValues<'a> {
    commit: &'a StepCommit,
    arrays: CommitArrays,
    snapshot: &'a str,
    expected: i64,
    at: i64,
    status: &'static str,
    close: Option<String>,
    fence_owner: Option<&'a str>,
    fence_epoch: Option<i64>,
}

impl<'a> CommitValues<'a> {
    fn of(commit: &'a StepCommit) -> Result<CommitValues<'a>, StoreError> {
        let (fence_owner, fence_epoch) = fence_params(commit.fence.as_ref());
        let (status, close) = match &commit.close {
            Some(close) => (close.status(), Some(json(close)?)),
            None => (WorkflowStatus::Running, None),
        };
        Ok(CommitValues {
            commit,
            arrays: CommitArrays::of(commit)?,
            snapshot: commit.snapshot.as_str(),
            expected: int(commit.expected_version),
            at: int(commit.at_ms),
            status: status.as_str(),
            close,
            fence_owner,
            fence_epoch,
        })
    }

    /// The parts of the commit statement this step needs.
    fn parts(&self) -> Parts {
        let a = &self.arrays;
        Parts::default()
            .with(Parts::CLOSING, self.close.is_some())
            .with(Parts::FENCED, self.fence_owner.is_some())
            .with(Parts::HISTORY, !a.history.is_empty())
            .with(Parts::CONSUMED, !a.consumed.is_empty())
            .with(Parts::NEW_TASKS, !a.t_op.is_empty())
            .with(Parts::CANCELS, !a.c_op.is_empty())
            .with(Parts::REMOVED_TASKS, !a.removed_tasks.is_empty())
            .with(Parts::NEW_TIMERS, !a.timer_op.is_empty())
            .with(Parts::REMOVED_TIMERS, !a.removed_timers.is_empty())
    }

    /// The values of `slots`, in order.
    fn params(&self, slots: &[Slot]) -> Vec<&(dyn ToSql + Sync)> {
        let a = &self.arrays;
        slots
            .iter()
            .map(|slot| -> &(dyn ToSql + Sync) {
                match slot {
                    Slot::Id => &self.commit.workflow_id,
                    Slot::Expected => &self.expected,
                    Slot::Snapshot => &self.snapshot,
                    Slot::State => &self.commit.state_name,
                    Slot::At => &self.at,
                    Slot::Status => &self.status,
                    Slot::Close => &self.close,
                    Slot::FenceOwner => &self.fence_owner,
                    Slot::FenceEpoch => &self.fence_epoch,
                    Slot::History => &a.history,
                    Slot::Consumed => &a.consumed,
                    Slot::TaskOp => &a.t_op,
                    Slot::TaskActivity => &a.t_activity,
                    Slot::TaskInput => &a.t_input,
                    Slot::TaskOptions => &a.t_options,
                    Slot::TaskAttempt => &a.t_attempt,
                    Slot::TaskDetails => &a.t_details,
                    Slot::TaskLastHeartbeat => &a.t_last_heartbeat,
                    Slot::TaskScheduled => &a.t_scheduled,
                    Slot::TaskCancel => &a.t_cancel,
                    Slot::TaskNotify => &a.t_notify,
                    Slot::CancelOp => &a.c_op,
                    Slot::CancelNotify => &a.c_notify,
                    Slot::RemovedTasks => &a.removed_tasks,
                    Slot::TimerOp => &a.timer_op,
                    Slot::TimerFire => &a.timer_fire,
                    Slot::RemovedTimers => &a.removed_timers,
                }
            })
            .collect()
    }
}

/// What the commit statement's row says: the new version, or why the step was refused.
fn commit_outcome(commit: &StepCommit, rows: &[Row]) -> Result<u64, StoreError> {
    let id = commit.workflow_id.as_str();
    let Some(row) = rows.first() else {
        return Err(StoreError::NotFound(id.to_string()));
    };
    let owner = format!("workflow `{id}`");
    let o = owner.as_str();
    if let Some(version) = get::<Option<i64>>(row, 4, o)? {
        return Ok(uint(version));
    }
    fence_check(id, get(row, 2, o)?, get(row, 3, o)?, commit.fence.as_ref())?;
    let (status, unknown) = stored_status(&get::<String>(row, 0, o)?);
    // The statement steps only a row stored `running`.
    if let Some(fault) = unknown {
        return Err(StoreError::Damaged {
            id: id.to_string(),
            fault,
        });
    }
    if status != WorkflowStatus::Running {
        return Err(StoreError::AlreadyClosed {
            id: id.to_string(),
            status,
        });
    }
    let found = uint(get(row, 1, o)?);
    Err(StoreError::Conflict {
        id: id.to_string(),
        expected: commit.expected_version,
        found,
    })
}

/// The parameters of `Queries::create` for a new workflow.
struct CreateValues<'a> {
    workflow: &'a NewWorkflow,
    snapshot: &'a str,
    schema: i64,
    at: i64,
    parent_id: Option<&'a str>,
    parent_op: Option<i64>,
    owner: Option<&'a str>,
    duration: i64,
    started: String,
}

impl<'a> CreateValues<'a> {
    fn of(workflow: &'a NewWorkflow) -> Result<CreateValues<'a>, StoreError> {
        Ok(CreateValues {
            workflow,
            snapshot: workflow.snapshot.as_str(),
            schema: int(workflow.schema),
            at: int(workflow.at_ms),
            parent_id: workflow.parent.as_ref().map(|p| p.workflow_id.as_str()),
            parent_op: workflow.parent.as_ref().map(|p| int(p.op.0)),
            owner: workflow.lease.as_ref().map(|l| l.owner.as_str()),
            duration: workflow
                .lease
                .as_ref()
                .map_or(0, |l| lease_ms(l.duration_ms)),
            started: json(&EventKind::WorkflowStarted {
                workflow: workflow.workflow_type.clone(),
                input: workflow.input.clone(),
            })?,
        })
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 11] {
        [
            &self.workflow.id,
            &self.workflow.workflow_type,
            &self.schema,
            &self.snapshot,
            &self.workflow.state_name,
            &self.at,
            &self.parent_id,
            &self.parent_op,
            &self.owner,
            &self.duration,
            &self.started,
        ]
    }
}

impl PostgresStore {
    /// A step that also creates child workflows or sends events to other workflows: the
    /// step's statement, the children and the events in one transaction (a few round trips,
    /// on the rare steps that start or close a child).
    async fn commit_with_others(
        &self,
        commit: &StepCommit,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let id = commit.workflow_id.as_str();
        let mut events = Vec::with_capacity(commit.outbox.len());
        for (other, event) in &commit.outbox {
            events.push((other.as_str(), json(event)?));
        }
        let mut children = Vec::with_capacity(commit.new_workflows.len());
        for child in &commit.new_workflows {
            children.push(CreateValues::of(child)?);
        }
        let client = self.client().await?;
        // Every row this transaction writes to, locked first and in id order, as the other
        // statements that lock several rows do (renewal, release): no deadlock between them.
        // The step's own row is locked too, so that a closing step's inbox deletion sees
        // every event committed before it.
        let mut rows_to_lock: Vec<&str> = commit.outbox.iter().map(|(o, _)| o.as_str()).collect();
        rows_to_lock.push(id);
        rows_to_lock.sort_unstable();
        rows_to_lock.dedup();
        let step = async {
            client.batch_execute("BEGIN").await?;
            let lock = client
                .prepare_cached(&self.inner.sql.lock_workflows)
                .await?;
            client.query(&lock, &[&rows_to_lock]).await?;
            let step = client.prepare_cached(statement).await?;
            client.query(&step, params).await
        }
        .await;
        let version = match step
            .map_err(|e| self.backend(&e))
            .and_then(|rows| commit_outcome(commit, &rows))
        {
            Ok(version) => version,
            Err(refused) => {
                abandon(client).await;
                return Err(refused);
            }
        };
        let rest = async {
            let create = client.prepare_cached(&self.inner.sql.create).await?;
            for child in &children {
                // An id already taken is left alone (`ON CONFLICT DO NOTHING`).
                client.query(&create, &child.params()).await?;
            }
            let enqueue = client.prepare_cached(&self.inner.sql.enqueue).await?;
            for (other, event) in &events {
                // Dropped by the statement itself when `other` is closed or gone; it wakes
                // the holder of `other`.
                client.query(&enqueue, &[other, event]).await?;
            }
            client.batch_execute("COMMIT").await
        }
        .await;
        match rest {
            Ok(()) => Ok(version),
            Err(e) => {
                abandon(client).await;
                Err(self.backend(&e))
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn create_workflow(&self, workflow: NewWorkflow) -> Result<(), StoreError> {
        let values = CreateValues::of(&workflow)?;
        let row = self
            .query_one(&self.inner.sql.create, &values.params())
            .await?;
        let created: i64 = get(&row, 0, &format!("workflow `{}`", workflow.id))?;
        if created == 0 {
            return Err(StoreError::AlreadyExists(workflow.id));
        }
        Ok(())
    }

    async fn load_workflow(&self, id: &str) -> Result<WorkflowRecord, StoreError> {
        let rows = self.query(&self.inner.sql.load, &[&id]).await?;
        match rows.first() {
            Some(row) => Ok(read_workflow(row)?.0),
            None => Err(StoreError::NotFound(id.to_string())),
        }
    }

    async fn load_for_step(
        &self,
        id: &str,
        cached: Option<u64>,
    ) -> Result<(WorkflowRecord, Vec<InboxEntry>), StoreError> {
        let cached = cached.map(int);
        let rows = self
            .query(&self.inner.sql.load_for_step, &[&id, &cached])
            .await?;
        let Some(row) = rows.first() else {
            return Err(StoreError::NotFound(id.to_string()));
        };
        let (record, fault) = read_workflow(row)?;
        if let (Some(fault), WorkflowStatus::Running) = (fault, record.status) {
            return Err(StoreError::Damaged {
                id: id.to_string(),
                fault,
            });
        }
        let owner = format!("inbox of workflow `{id}`");
        let seqs: Option<Vec<i64>> = get(row, WORKFLOW_COLUMNS.len(), &owner)?;
        let events: Option<Vec<String>> = get(row, WORKFLOW_COLUMNS.len() + 1, &owner)?;
        let inbox = seqs
            .unwrap_or_default()
            .into_iter()
            .zip(events.unwrap_or_default())
            .map(|(seq, event)| {
                RawInbox {
                    seq: Ok(seq),
                    event: Ok(event),
                }
                .decode()
            });
        Ok((record, whole(id, inbox)?))
    }

    async fn list_workflows(
        &self,
        status: Option<WorkflowStatus>,
    ) -> Result<Vec<WorkflowRecord>, StoreError> {
        let status = status.map(WorkflowStatus::as_str);
        self.query(&self.inner.sql.list, &[&status])
            .await?
            .iter()
            .map(|row| Ok(read_workflow(row)?.0))
            .collect()
    }

    async fn enqueue_event(&self, id: &str, event: Event) -> Result<u64, StoreError> {
        let event = json(&event)?;
        let rows = self.query(&self.inner.sql.enqueue, &[&id, &event]).await?;
        let Some(row) = rows.first() else {
            return Err(StoreError::NotFound(id.to_string()));
        };
        let owner = format!("workflow `{id}`");
        let status: String = get(row, 0, &owner)?;
        match get::<Option<i64>>(row, 1, &owner)? {
            Some(seq) => Ok(uint(seq)),
            None => Err(StoreError::AlreadyClosed {
                id: id.to_string(),
                status: parse_status(&status),
            }),
        }
    }

    async fn read_inbox(&self, id: &str) -> Result<Vec<InboxEntry>, StoreError> {
        let rows = self.query(&self.inner.sql.read_inbox, &[&id]).await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let mut inbox = Vec::with_capacity(rows.len());
        for row in &rows {
            if get::<Option<i64>>(row, 0, "an inbox row")?.is_some() {
                inbox.push(read_inbox_entry(row, 0, id)?.decode());
            }
        }
        whole(id, inbox)
    }

    async fn request_cancel(&self, id: &str, reason: &str) -> Result<bool, StoreError> {
        let event = json(&Event::CancelRequested {
            reason: reason.to_string(),
        })?;
        let (status, rows) = self
            .locked(id, &self.inner.sql.request_cancel, &[&id, &reason, &event])
            .await?;
        let Some(status) = status else {
            return Err(StoreError::NotFound(id.to_string()));
        };
        let status = parse_status(&status);
        if status != WorkflowStatus::Running {
            return Err(StoreError::AlreadyClosed {
                id: id.to_string(),
                status,
            });
        }
        let updated: i64 = match rows.first() {
            Some(row) => get(row, 0, &format!("workflow `{id}`"))?,
            None => 0,
        };
        Ok(updated > 0)
    }

    async fn commit_step(&self, commit: StepCommit) -> Result<u64, StoreError> {
        let values = CommitValues::of(&commit)?;
        let statement = self.inner.sql.commit(values.parts());
        let params = values.params(&statement.slots);
        if !commit.new_workflows.is_empty() || !commit.outbox.is_empty() {
            return self
                .commit_with_others(&commit, &statement.sql, &params)
                .await;
        }
        // A closing step deletes the rest of the inbox: it locks the row first, in its own
        // statement, so that the deletion sees every event committed before the lock (an
        // event enqueued meanwhile waits on the lock, then finds the workflow closed).
        let rows = if commit.close.is_some() {
            let id = commit.workflow_id.as_str();
            self.locked(id, &statement.sql, &params).await?.1
        } else {
            self.query(&statement.sql, &params).await?
        };
        commit_outcome(&commit, &rows)
    }

    async fn record_task_attempt(
        &self,
        workflow_id: &str,
        op: OpId,
        attempt: u32,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let (fence_owner, fence_epoch) = fence_params(fence);
        let row = self
            .query_one(
                &self.inner.sql.task_attempt,
                &[
                    &workflow_id,
                    &int(op.0),
                    &i64::from(attempt),
                    &fence_owner,
                    &fence_epoch,
                ],
            )
            .await?;
        let owner = format!("workflow `{workflow_id}`");
        let o = owner.as_str();
        fence_check_row(workflow_id, &row, fence)?;
        if get::<i64>(&row, 3, o)? == 0 {
            // Its workflow closed (or was terminated) and dropped its tasks.
            return Err(StoreError::NotFound(format!(
                "task {op} of workflow `{workflow_id}`"
            )));
        }
        Ok(())
    }

    async fn record_heartbeat(
        &self,
        workflow_id: &str,
        op: OpId,
        details: Option<serde_json::Value>,
        at_ms: u64,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let details = details.as_ref().map(json).transpose()?;
        let (fence_owner, fence_epoch) = fence_params(fence);
        let row = self
            .query_one(
                &self.inner.sql.heartbeat,
                &[
                    &workflow_id,
                    &int(op.0),
                    &details,
                    &int(at_ms),
                    &fence_owner,
                    &fence_epoch,
                ],
            )
            .await?;
        fence_check_row(workflow_id, &row, fence)
    }

    async fn set_stuck(
        &self,
        id: &str,
        fault: Option<WorkflowFault>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let fault = fault.as_ref().map(json).transpose()?;
        let (fence_owner, fence_epoch) = fence_params(fence);
        let rows = self
            .query(
                &self.inner.sql.set_stuck,
                &[&id, &fault, &fence_owner, &fence_epoch],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Err(StoreError::NotFound(id.to_string()));
        };
        let owner = format!("workflow `{id}`");
        let o = owner.as_str();
        // Ignored for a closed workflow, whoever asks.
        if parse_status(&get::<String>(row, 0, o)?) == WorkflowStatus::Running {
            fence_check(id, get(row, 1, o)?, get(row, 2, o)?, fence)?;
        }
        Ok(())
    }

    async fn terminate(&self, id: &str, reason: &str, at_ms: u64) -> Result<(), StoreError> {
        let close = json(&WorkflowClose::Terminated {
            reason: reason.to_string(),
        })?;
        let event = json(&EventKind::WorkflowTerminated {
            reason: reason.to_string(),
        })?;
        let (status, _) = self
            .locked(
                id,
                &self.inner.sql.terminate,
                &[&id, &close, &int(at_ms), &event],
            )
            .await?;
        let Some(status) = status else {
            return Err(StoreError::NotFound(id.to_string()));
        };
        let status = parse_status(&status);
        if status != WorkflowStatus::Running {
            return Err(StoreError::AlreadyClosed {
                id: id.to_string(),
                status,
            });
        }
        Ok(())
    }

    async fn purge_closed(&self, purge: &Purge) -> Result<Vec<String>, StoreError> {
        let sql = if purge.dry_run {
            &self.inner.sql.purge_select
        } else {
            &self.inner.sql.purge
        };
        let limit = i64::try_from(purge.limit).unwrap_or(i64::MAX);
        let statuses = purge.status_names();
        let rows = self
            .query(
                sql,
                &[&purge.closed_before_sql(), &purge.id, &limit, &statuses],
            )
            .await?;
        rows.iter()
            .map(|row| get::<String>(row, 0, "a purged workflow's id"))
            .collect()
    }

    async fn running_workflows(&self) -> Result<Vec<RunningWorkflow>, StoreError> {
        let sql = &self.inner.sql;
        let mut read = self
            .snapshot_read(&[
                (&sql.running, &[]),
                (&sql.running_tasks, &[]),
                (&sql.running_timers, &[]),
                (&sql.running_inbox, &[]),
            ])
            .await?
            .into_iter();
        let rows = read.next().unwrap_or_default();
        let mut children = Self::children(
            read.next().unwrap_or_default(),
            read.next().unwrap_or_default(),
            read.next().unwrap_or_default(),
        )?;
        rows.iter()
            .map(|row| {
                let decoded = read_workflow(row)?;
                Ok(children
                    .remove(&decoded.0.id)
                    .unwrap_or_default()
                    .with(decoded))
            })
            .collect()
    }

    async fn tasks(&self, id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let rows = self.query(&self.inner.sql.tasks, &[&id]).await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let mut tasks = Vec::with_capacity(rows.len());
        for row in &rows {
            if get::<Option<String>>(row, 0, "a tasks row")?.is_some() {
                tasks.push(read_task(row, 1, id)?.decode(id));
            }
        }
        whole(id, tasks)
    }

    async fn history(&self, id: &str) -> Result<Vec<HistoryEvent>, StoreError> {
        let rows = self.query(&self.inner.sql.history, &[&id]).await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let owner = format!("history of workflow `{id}`");
        let mut history = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(seq) = get::<Option<i64>>(row, 0, &owner)? else {
                continue;
            };
            history.push(
                RawHistory {
                    seq: Ok(seq),
                    at_ms: Ok(get(row, 1, &owner)?),
                    event: Ok(get(row, 2, &owner)?),
                }
                .decode(),
            );
        }
        Ok(history)
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn workflows_to_step(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        self.query(&self.inner.sql.to_step, &[&owner])
            .await?
            .iter()
            .map(|row| get(row, 0, "a workflows row"))
            .collect()
    }

    async fn claim_workflows(
        &self,
        lease: &LeaseRequest,
        limit: usize,
    ) -> Result<Vec<RunningWorkflow>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query_without_flush(
                &self.inner.sql.claim,
                &[&lease.owner, &lease_ms(lease.duration_ms), &limit],
            )
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // Read after the claim committed: the rows are this worker's now, so their tasks
        // and timers are those of the versions just claimed.
        let mut records = rows
            .iter()
            .map(read_workflow)
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let ids: Vec<&str> = records.iter().map(|r| r.0.id.as_str()).collect();
        let sql = &self.inner.sql;
        let mut read = self
            .snapshot_read(&[
                (&sql.these_tasks, &[&ids]),
                (&sql.these_timers, &[&ids]),
                (&sql.these_inbox, &[&ids]),
            ])
            .await?
            .into_iter();
        let mut children = Self::children(
            read.next().unwrap_or_default(),
            read.next().unwrap_or_default(),
            read.next().unwrap_or_default(),
        )?;
        Ok(records
            .into_iter()
            .map(|decoded| {
                children
                    .remove(&decoded.0.id)
                    .unwrap_or_default()
                    .with(decoded)
            })
            .collect())
    }

    async fn renew_leases(&self, lease: &LeaseRequest) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self
            .query_without_flush(
                &self.inner.sql.renew,
                &[&lease.owner, &lease_ms(lease.duration_ms)],
            )
            .await?;
        let mut held = rows
            .iter()
            .map(|row| {
                let id: String = get(row, 0, "a workflows row")?;
                let epoch: i64 = get(row, 1, &format!("workflow `{id}`"))?;
                Ok((id, uint(epoch)))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        held.sort();
        Ok(held)
    }

    async fn release_lease(&self, id: &str, fence: &Fence) -> Result<bool, StoreError> {
        let row = self
            .query_one(
                &self.inner.sql.release_one,
                &[&id, &fence.owner, &int(fence.epoch)],
            )
            .await?;
        let released: i64 = get(&row, 0, &format!("the lease of workflow `{id}`"))?;
        Ok(released > 0)
    }

    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let row = self.query_one(&self.inner.sql.release, &[&owner]).await?;
        let released: i64 = get(&row, 0, "released leases")?;
        Ok(uint(released))
    }

    fn changes(&self) -> Option<broadcast::Receiver<StoreChange>> {
        let mut slot = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(listener) = slot.as_ref() {
            if !listener.task.is_finished() {
                return Some(listener.sender.subscribe());
            }
        }
        let (sender, receiver) = broadcast::channel(CHANGES_CAPACITY);
        let runtime =
            tokio::runtime::Handle::try_current().unwrap_or_else(|_| self.inner.runtime.clone());
        let mut config = self.inner.config.clone();
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        let task = runtime.spawn(listen(
            config,
            self.inner.channel.clone(),
            sender.clone(),
            self.inner.stop.clone(),
            self.inner.place.clone(),
        ));
        *slot = Some(Listener { sender, task });
        Some(receiver)
    }
}

/// The hint a notification's payload gives.
fn change_of(payload: &str) -> StoreChange {
    if payload == "+" {
        return StoreChange::Claimable;
    }
    match payload.split_once(':') {
        Some(("e", id)) => StoreChange::Event(id.to_string()),
        Some(("c", id)) => StoreChange::Closed(id.to_string()),
        _ => StoreChange::Any,
    }
}

/// The listener: `LISTEN`s on `channel` on its own connection and forwards every
/// notification to `sender`, reconnecting with back-off, until `stop`.
async fn listen(
    config: tokio_postgres::Config,
    channel: String,
    sender: broadcast::Sender<StoreChange>,
    stop: CancellationToken,
    place: String,
) {
    use futures::StreamExt;
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            connected = config.connect(NoTls) => connected,
        };
        match connected {
            Ok((client, mut connection)) => {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                let statement = format!("LISTEN {}", quote_ident(&channel));
                // Drive the connection while LISTEN runs.
                let listened = {
                    let listening = client.batch_execute(&statement);
                    tokio::pin!(listening);
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            done = &mut listening => break done.map_err(|e| error_text(&e)),
                            message = messages.next() => match message {
                                Some(Ok(_)) => {}
                                Some(Err(e)) => break Err(error_text(&e)),
                                None => break Err("connection closed".to_string()),
                            },
                        }
                    }
                };
                match listened {
                    Ok(()) => {
                        backoff = FIRST_BACKOFF;
                        // Whatever happened while not listening is unknown.
                        let _ = sender.send(StoreChange::Any);
                        loop {
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                message = messages.next() => match message {
                                    Some(Ok(AsyncMessage::Notification(n))) => {
                                        let _ = sender.send(change_of(n.payload()));
                                    }
                                    Some(Ok(_)) => {}
                                    Some(Err(e)) => {
                                        tracing::warn!(
                                            "PostgreSQL at {place}: the change listener's \
                                             connection failed ({}); reconnecting",
                                            error_text(&e)
                                        );
                                        break;
                                    }
                                    None => {
                                        tracing::warn!(
                                            "PostgreSQL at {place}: the change listener's \
                                             connection closed; reconnecting"
                                        );
                                        break;
                                    }
                                },
                            }
                        }
                    }
                    Err(e) => tracing::warn!(
                        "PostgreSQL at {place}: could not LISTEN for changes ({e}); retrying"
                    ),
                }
                drop(client);
            }
            Err(e) => tracing::warn!(
                "PostgreSQL at {place}: the change listener could not connect ({}); retrying \
                 in {backoff:?}",
                error_text(&e)
            ),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Test support: a fresh schema per test on a PostgreSQL server.
#[doc(hidden)]
pub mod testing {
    use std::time::Duration;

    /// The server tests use when `WF_TEST_POSTGRES` is not set.
    pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    /// Test schemas left by runs longer ago than this are dropped when a new one is made.
    const STALE_AFTER_SECS: u64 = 3600;

    /// The base URL tests use: `WF_TEST_POSTGRES`, or [`DEFAULT_URL`].
    pub fn base_url() -> String {
        std::env::var("WF_TEST_POSTGRES")
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_string())
    }

    /// A URL selecting a new, empty schema `wf_<name>_<time>_<random>` on the test server
    /// (`WF_TEST_POSTGRES`, or [`DEFAULT_URL`]), through `options=-c search_path=...`.
    ///
    /// When no server answers: panics if the environment variable `CI` is `true` (CI must
    /// run these tests), and otherwise prints why the test is skipped and returns `None`.
    /// Schemas of the same `name` left by runs over an hour old are dropped.
    pub async fn fresh_schema_url(name: &str) -> Option<String> {
        let base = base_url();
        let shown = super::redact(&base);
        let mut config: tokio_postgres::Config = match base.parse() {
            Ok(config) => config,
            Err(e) => panic!(
                "WF_TEST_POSTGRES `{shown}` is not a PostgreSQL URL: {}",
                super::error_text(&e)
            ),
        };
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let (client, connection) = match config.connect(tokio_postgres::NoTls).await {
            Ok(pair) => pair,
            Err(e) => {
                let why = super::error_text(&e);
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!(
                        "no PostgreSQL at {shown} ({why}): CI must run the PostgreSQL tests; \
                         start a server there or set WF_TEST_POSTGRES"
                    );
                }
                eprintln!(
                    "skipped: no PostgreSQL at {shown} ({why}): set WF_TEST_POSTGRES or start a \
                     server; in CI this fails"
                );
                return None;
            }
        };
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let prefix: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(36)
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let schema = format!("wf_{prefix}_{now:x}_{:06x}", random() & 0xff_ffff);
        // Drop what earlier runs of this test left, once it is surely no longer in use.
        let pattern = format!("wf\\_{}\\_%", prefix.replace('_', "\\_"));
        let old = client
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1",
                &[&pattern],
            )
            .await
            .unwrap_or_else(|e| panic!("listing test schemas on {shown}: {e}"));
        for row in old {
            let old: String = row.get(0);
            let born = old
                .strip_prefix(&format!("wf_{prefix}_"))
                .and_then(|rest| rest.split('_').next())
                .and_then(|hex| u64::from_str_radix(hex, 16).ok());
            if born.is_some_and(|born| born + STALE_AFTER_SECS < now) {
                let _ = client
                    .batch_execute(&format!(
                        "DROP SCHEMA IF EXISTS {} CASCADE",
                        super::quote_ident(&old)
                    ))
                    .await;
            }
        }
        let quoted = super::quote_ident(&schema);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {quoted} CASCADE; CREATE SCHEMA {quoted}"
            ))
            .await
            .unwrap_or_else(|e| panic!("creating schema {schema} on {shown}: {e}"));
        let separator = if base.contains('?') { '&' } else { '?' };
        Some(format!(
            "{base}{separator}options=-c%20search_path%3D{schema}"
        ))
    }

    /// Runs `sql` (one or more statements) on its own connection to `url`: for tests that
    /// damage rows, expire leases or inspect tables behind the store's back.
    pub async fn batch_execute(url: &str, sql: &str) -> Result<(), String> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| super::error_text(&e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
            .batch_execute(sql)
            .await
            .map_err(|e| super::error_text(&e))
    }

    /// A random number, different in every call and every process.
    fn random() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u32(std::process::id());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        hasher.write_u32(nanos);
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{contract, MemoryStore, TaskCancel};
    use std::time::Instant;

    /// A store on a fresh schema, and its URL; `None` (test skipped) without a server.
    async fn fresh(name: &str) -> Option<(PostgresStore, String)> {
        let url = testing::fresh_schema_url(name).await?;
        let store = PostgresStore::connect(&url).await.unwrap();
        Some((store, url))
    }

    /// One value read straight from the database at `url`.
    async fn scalar<T: for<'a> FromSql<'a>>(url: &str, sql: &str) -> T {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client.query_one(sql, &[]).await.unwrap().get(0)
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

    #[tokio::test]
    async fn postgres_store_keeps_the_store_contract() {
        let Some((store, _)) = fresh("contract").await else {
            return;
        };
        let started = Instant::now();
        contract::check_all(&store).await;
        eprintln!(
            "the store contract on PostgreSQL took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claims_never_return_a_workflow_twice() {
        let Some((store, url)) = fresh("claims").await else {
            return;
        };
        let ids: Vec<String> = (0..200).map(|i| format!("c{i:03}")).collect();
        futures::future::try_join_all(
            ids.iter()
                .map(|id| store.create_workflow(contract::new_workflow(id))),
        )
        .await
        .unwrap();
        let mut claimers = Vec::new();
        for n in 0..4 {
            let url = url.clone();
            claimers.push(tokio::spawn(async move {
                let store = PostgresStore::connect(&url).await.unwrap();
                let owner = format!("worker-{n}");
                let mut got = Vec::new();
                loop {
                    let claimed = store
                        .claim_workflows(&lease(&owner, 60_000), 7)
                        .await
                        .unwrap();
                    if claimed.is_empty() {
                        break;
                    }
                    for w in claimed {
                        let l = w.record.lease.expect("a claimed workflow has its lease");
                        assert_eq!((l.owner.as_str(), l.epoch), (owner.as_str(), 1));
                        got.push(w.record.id);
                    }
                }
                (owner, got)
            }));
        }
        let mut all = Vec::new();
        for claimer in claimers {
            let (owner, got) = claimer.await.unwrap();
            let mut held: Vec<String> = store
                .renew_leases(&lease(&owner, 60_000))
                .await
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            let mut mine = got.clone();
            mine.sort();
            held.sort();
            assert_eq!(held, mine, "{owner} holds what it claimed");
            all.extend(got);
        }
        let claimed = all.len();
        all.sort();
        all.dedup();
        assert_eq!(claimed, all.len(), "no workflow was claimed twice");
        assert_eq!(all, ids, "every workflow was claimed");
    }

    #[tokio::test]
    async fn a_fenced_write_after_a_takeover_is_refused_and_changes_nothing() {
        let Some((store, _)) = fresh("takeover").await else {
            return;
        };
        let mut new = contract::new_workflow("f");
        new.lease = Some(lease("a", 300));
        store.create_workflow(new).await.unwrap();
        let mut first = contract::commit("f", 0);
        first.fence = Some(fence("a", 1));
        first.new_tasks = vec![TaskRecord {
            workflow_id: "f".into(),
            op: OpId(1),
            activity: "act".into(),
            input: serde_json::json!(1),
            options: Default::default(),
            attempt: 1,
            heartbeat_details: None,
            last_heartbeat_ms: None,
            scheduled_at_ms: 20,
            cancel_requested: false,
            notify_running: false,
        }];
        assert_eq!(store.commit_step(first).await.unwrap(), 1);
        // Not expired yet: nobody else gets it.
        assert!(store
            .claim_workflows(&lease("b", 60_000), 10)
            .await
            .unwrap()
            .is_empty());
        tokio::time::sleep(Duration::from_millis(400)).await;
        let claimed = store
            .claim_workflows(&lease("b", 60_000), 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].tasks.len(), 1, "the claim carries the tasks");
        assert_eq!(claimed[0].record.lease.as_ref().unwrap().epoch, 2);

        let mut stale = contract::commit("f", 1);
        stale.fence = Some(fence("a", 1));
        stale.close = Some(WorkflowClose::Completed {
            result: serde_json::json!("late"),
        });
        match store.commit_step(stale).await {
            Err(StoreError::LeaseLost { holder, .. }) => {
                assert_eq!(holder, Some(("b".to_string(), 2)))
            }
            other => panic!("expected LeaseLost, got {other:?}"),
        }
        assert!(matches!(
            store
                .record_task_attempt("f", OpId(1), 2, Some(&fence("a", 1)))
                .await,
            Err(StoreError::LeaseLost { .. })
        ));
        let rec = store.load_workflow("f").await.unwrap();
        assert_eq!((rec.version, rec.status), (1, WorkflowStatus::Running));
        assert_eq!(store.history("f").await.unwrap().len(), 2);
        assert_eq!(store.tasks("f").await.unwrap()[0].attempt, 1);
        assert!(store
            .renew_leases(&lease("a", 60_000))
            .await
            .unwrap()
            .is_empty());
        // The new holder's writes go through.
        let mut next = contract::commit("f", 1);
        next.fence = Some(fence("b", 2));
        assert_eq!(store.commit_step(next).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn another_programs_schema_is_refused_untouched() {
        let Some(url) = testing::fresh_schema_url("foreign").await else {
            return;
        };
        testing::batch_execute(
            &url,
            "CREATE TABLE customers (name TEXT); INSERT INTO customers VALUES ('ada');",
        )
        .await
        .unwrap();
        let schema: String = scalar(&url, "SELECT current_schema()::text").await;
        let err = PostgresStore::connect(&url).await.unwrap_err().to_string();
        assert!(err.contains("something else"), "{err}");
        assert!(err.contains(&schema), "{err}");
        let tables: i64 = scalar(
            &url,
            "SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace",
        )
        .await;
        assert_eq!(tables, 1, "no workflow tables were added");
        let name: String = scalar(&url, "SELECT name FROM customers").await;
        assert_eq!(name, "ada");
    }

    #[tokio::test]
    async fn a_schema_from_a_newer_version_is_refused_untouched() {
        let Some(url) = testing::fresh_schema_url("newer").await else {
            return;
        };
        testing::batch_execute(
            &url,
            "CREATE TABLE workflow_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO workflow_meta VALUES ('schema_version', '99');",
        )
        .await
        .unwrap();
        let err = PostgresStore::connect(&url).await.unwrap_err().to_string();
        assert!(err.contains("schema version 99"), "{err}");
        assert!(err.contains("newer"), "{err}");
        let tables: i64 = scalar(
            &url,
            "SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace \
             AND relkind = 'r'",
        )
        .await;
        assert_eq!(tables, 1, "no workflow tables were added");
        let version: String = scalar(&url, "SELECT value FROM workflow_meta").await;
        assert_eq!(version, "99");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_starting_together_migrate_once() {
        let Some(url) = testing::fresh_schema_url("migrate").await else {
            return;
        };
        let stores = futures::future::join_all((0..4).map(|_| PostgresStore::connect(&url))).await;
        for store in stores {
            store.unwrap();
        }
        let version: String = scalar(
            &url,
            "SELECT value FROM workflow_meta WHERE key = 'schema_version'",
        )
        .await;
        assert_eq!(version, MIGRATIONS.len().to_string());
        // And a reconnect to a current schema changes nothing.
        let store = PostgresStore::connect(&url).await.unwrap();
        store
            .create_workflow(contract::new_workflow("m"))
            .await
            .unwrap();
        let store = PostgresStore::connect(&url).await.unwrap();
        assert_eq!(store.load_workflow("m").await.unwrap().version, 0);
    }

    /// The next hint on `rx`, within `within`.
    async fn next_change(
        rx: &mut broadcast::Receiver<StoreChange>,
        within: Duration,
    ) -> Option<StoreChange> {
        tokio::time::timeout(within, rx.recv())
            .await
            .ok()
            .map(|r| r.unwrap())
    }

    fn event(id: &str) -> Option<StoreChange> {
        Some(StoreChange::Event(id.to_string()))
    }

    fn closed(id: &str) -> Option<StoreChange> {
        Some(StoreChange::Closed(id.to_string()))
    }

    #[tokio::test]
    async fn notifications_reach_other_processes_only_for_what_they_must_learn() {
        let Some((writer, url)) = fresh("notify").await else {
            return;
        };
        let Some((elsewhere, _)) = fresh("notify_other").await else {
            return;
        };
        let reader = PostgresStore::connect(&url).await.unwrap();
        let (yes, no) = (Duration::from_secs(2), Duration::from_millis(300));
        let mut rx = reader.changes().unwrap();
        let mut other = elsewhere.changes().unwrap();
        assert_eq!(
            next_change(&mut rx, yes).await,
            Some(StoreChange::Any),
            "listening"
        );
        assert_eq!(next_change(&mut other, yes).await, Some(StoreChange::Any));

        writer
            .create_workflow(contract::new_workflow("n1"))
            .await
            .unwrap();
        assert_eq!(
            next_change(&mut rx, yes).await,
            Some(StoreChange::Claimable),
            "create"
        );
        writer
            .enqueue_event("n1", Event::TimerFired { op: OpId(1) })
            .await
            .unwrap();
        assert_eq!(next_change(&mut rx, yes).await, event("n1"), "event");
        writer.request_cancel("n1", "why").await.unwrap();
        assert_eq!(
            next_change(&mut rx, yes).await,
            event("n1"),
            "cancel request"
        );
        writer.request_cancel("n1", "again").await.unwrap();
        writer.commit_step(contract::commit("n1", 0)).await.unwrap();
        assert_eq!(
            next_change(&mut rx, no).await,
            None,
            "an ordinary step sends none"
        );
        let mut closing = contract::commit("n1", 1);
        closing.close = Some(WorkflowClose::Completed {
            result: serde_json::json!(1),
        });
        writer.commit_step(closing).await.unwrap();
        assert_eq!(
            next_change(&mut rx, yes).await,
            closed("n1"),
            "closing step"
        );

        let mut owned = contract::new_workflow("n2");
        owned.lease = Some(lease("w", 60_000));
        writer.create_workflow(owned).await.unwrap();
        assert_eq!(next_change(&mut rx, no).await, None, "its creator steps it");
        writer
            .set_stuck(
                "n2",
                Some(WorkflowFault::Engine {
                    message: "x".into(),
                }),
                None,
            )
            .await
            .unwrap();
        writer.renew_leases(&lease("w", 60_000)).await.unwrap();
        assert_eq!(next_change(&mut rx, no).await, None);
        assert_eq!(writer.release_leases("w").await.unwrap(), 1);
        assert_eq!(
            next_change(&mut rx, yes).await,
            Some(StoreChange::Claimable),
            "release"
        );
        writer.terminate("n2", "enough", 30).await.unwrap();
        assert_eq!(next_change(&mut rx, yes).await, closed("n2"), "terminate");

        assert_eq!(
            next_change(&mut other, no).await,
            None,
            "other schemas hear nothing"
        );
    }

    #[tokio::test]
    async fn the_listener_reconnects_and_stops_with_the_store() {
        let Some((store, url)) = fresh("listener").await else {
            return;
        };
        let yes = Duration::from_secs(5);
        let mut rx = store.changes().unwrap();
        assert_eq!(next_change(&mut rx, yes).await, Some(StoreChange::Any));
        // Cut the listener's connection from the server side.
        let channel = store.inner.channel.clone();
        let killed: i64 = scalar(
            &url,
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE query = 'LISTEN \"{channel}\"'"
            ),
        )
        .await;
        assert_eq!(killed, 1);
        assert_eq!(
            next_change(&mut rx, yes).await,
            Some(StoreChange::Any),
            "reconnected"
        );
        store
            .create_workflow(contract::new_workflow("r"))
            .await
            .unwrap();
        assert_eq!(
            next_change(&mut rx, yes).await,
            Some(StoreChange::Claimable)
        );
        // The last clone gone, the listener ends.
        let clone = store.clone();
        drop(store);
        drop(clone);
        let closed = tokio::time::timeout(yes, rx.recv()).await;
        assert!(
            matches!(closed, Ok(Err(broadcast::error::RecvError::Closed))),
            "{closed:?}"
        );
    }

    #[tokio::test]
    async fn load_for_step_leaves_out_the_cached_snapshot_and_snapshots_round_trip() {
        let Some((store, _)) = fresh("for_step").await else {
            return;
        };
        let text = r#"{"machine":{"b":1,"a":2.5e-8,"big":18446744073709551615},"n":0.1,"s":"é😀\n\u0000"}"#;
        let mut new = contract::new_workflow("s");
        new.snapshot = crate::Snapshot::from_json_text(text.to_string()).unwrap();
        store.create_workflow(new).await.unwrap();
        assert_eq!(
            store.load_workflow("s").await.unwrap().snapshot.as_str(),
            text
        );
        store
            .enqueue_event("s", Event::TimerFired { op: OpId(3) })
            .await
            .unwrap();
        let (rec, inbox) = store.load_for_step("s", Some(0)).await.unwrap();
        assert!(
            rec.snapshot.is_null(),
            "the cached version's snapshot is left out"
        );
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].event, Event::TimerFired { op: OpId(3) });
        let (rec, _) = store.load_for_step("s", Some(7)).await.unwrap();
        assert_eq!(rec.snapshot.as_str(), text, "byte for byte");
        let (rec, _) = store.load_for_step("s", None).await.unwrap();
        assert_eq!(rec.snapshot.as_str(), text);
        assert!(matches!(
            store.load_for_step("nope", None).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn task_and_timer_changes_in_one_step_apply_as_in_the_memory_store() {
        let Some((store, _)) = fresh("step_parts").await else {
            return;
        };
        let memory = MemoryStore::new();
        let task = |op: u64, n: i64| TaskRecord {
            workflow_id: "p".into(),
            op: OpId(op),
            activity: format!("act{n}"),
            input: serde_json::json!({ "n": n }),
            options: Default::default(),
            attempt: 1,
            heartbeat_details: Some(serde_json::json!([n])),
            last_heartbeat_ms: Some(5),
            scheduled_at_ms: 20,
            cancel_requested: false,
            notify_running: false,
        };
        let timer = |op: u64, at: u64| TimerRecord {
            workflow_id: "p".into(),
            op: OpId(op),
            fire_at_ms: at,
        };
        let steps = [
            StepCommit {
                new_tasks: vec![task(1, 1), task(2, 2), task(3, 3), task(4, 4)],
                new_timers: vec![timer(10, 100), timer(11, 110)],
                ..contract::commit("p", 0)
            },
            StepCommit {
                // Replaced, then cancelled in the same step; a duplicate op: the last wins.
                new_tasks: vec![task(1, 9), task(5, 5), task(5, 6), task(6, 6)],
                cancelled_tasks: vec![
                    TaskCancel {
                        op: OpId(1),
                        notify_running: true,
                    },
                    TaskCancel {
                        op: OpId(2),
                        notify_running: false,
                    },
                    TaskCancel {
                        op: OpId(2),
                        notify_running: true,
                    },
                    TaskCancel {
                        op: OpId(3),
                        notify_running: false,
                    },
                    TaskCancel {
                        op: OpId(99),
                        notify_running: true,
                    },
                ],
                // A new task removed in the same step, and an old one.
                removed_tasks: vec![OpId(6), OpId(4), OpId(3)],
                new_timers: vec![timer(10, 150), timer(12, 120), timer(13, 130)],
                removed_timers: vec![OpId(11), OpId(13)],
                ..contract::commit("p", 1)
            },
        ];
        for s in [&store as &dyn Store, &memory] {
            s.create_workflow(contract::new_workflow("p"))
                .await
                .unwrap();
            for step in &steps {
                s.commit_step(step.clone()).await.unwrap();
            }
        }
        assert_eq!(
            store.tasks("p").await.unwrap(),
            memory.tasks("p").await.unwrap()
        );
        let timers = |r: Vec<RunningWorkflow>| {
            let mut t = r.into_iter().find(|w| w.record.id == "p").unwrap().timers;
            t.sort_by_key(|t| t.op);
            t
        };
        assert_eq!(
            timers(store.running_workflows().await.unwrap()),
            timers(memory.running_workflows().await.unwrap())
        );
        assert_eq!(
            store.history("p").await.unwrap(),
            memory.history("p").await.unwrap()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn events_racing_a_closing_step_leave_no_inbox_behind() {
        let Some((store, _)) = fresh("close_race").await else {
            return;
        };
        for round in 0..10 {
            let id = format!("x{round}");
            store
                .create_workflow(contract::new_workflow(&id))
                .await
                .unwrap();
            let mut closing = contract::commit(&id, 0);
            closing.close = Some(WorkflowClose::Completed {
                result: serde_json::json!(round),
            });
            let events = (0..8).map(|op| {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move {
                    store
                        .enqueue_event(&id, Event::TimerFired { op: OpId(op) })
                        .await
                })
            });
            let events: Vec<_> = events.collect();
            store.commit_step(closing).await.unwrap();
            for event in events {
                match event.await.unwrap() {
                    Ok(_) | Err(StoreError::AlreadyClosed { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(store.read_inbox(&id).await.unwrap().is_empty(), "{id}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_steps_conflict_only_where_stale() {
        let Some((store, _)) = fresh("conflicts").await else {
            return;
        };
        let ids: Vec<String> = (0..100).map(|i| format!("g{i:03}")).collect();
        for id in &ids {
            store
                .create_workflow(contract::new_workflow(id))
                .await
                .unwrap();
        }
        let mut commits: Vec<_> = ids.iter().map(|id| contract::commit(id, 0)).collect();
        commits.insert(50, contract::commit("g007", 0));
        let results =
            futures::future::join_all(commits.into_iter().map(|c| store.commit_step(c))).await;
        let conflicts = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Conflict { .. })))
            .count();
        assert_eq!(conflicts, 1, "{results:?}");
        for id in &ids {
            assert_eq!(store.load_workflow(id).await.unwrap().version, 1);
            assert_eq!(store.history(id).await.unwrap().len(), 2, "{id}");
        }
    }

    #[tokio::test]
    async fn a_damaged_row_fails_only_its_own_workflow() {
        let Some((store, url)) = fresh("damaged").await else {
            return;
        };
        contract::make_damageable(&store, &["d-snapshot"]).await;
        testing::batch_execute(
            &url,
            &format!(
                "{} UPDATE workflows SET snapshot = '{{oops' WHERE id = 'd-snapshot';",
                contract::DAMAGE_SQL
            ),
        )
        .await
        .unwrap();
        let running = contract::damaged_rows_fail_only_their_workflow(&store).await;
        // A snapshot that is not JSON is handed on as a string (the engine records the
        // failure on the workflow), as in the SQLite store.
        assert_eq!(running["d-snapshot"].damaged, None);
        let bad = store.load_workflow("d-snapshot").await.unwrap();
        assert_eq!(bad.snapshot, serde_json::json!("{oops").into());
    }

    #[tokio::test]
    async fn connection_errors_say_what_to_do_and_hide_the_password() {
        let err = PostgresStore::connect("postgres://ada:s3cret@127.0.0.1:1/shop")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("127.0.0.1:1/shop"), "{err}");
        assert!(err.contains("is the server running"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = PostgresStore::connect("postgres://ada:s3cret@127.0.0.1:notaport/shop")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a PostgreSQL URL"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        assert_eq!(
            redact("postgres://ada:s3cret@h/db?password=x&sslmode=disable"),
            "postgres://ada:***@h/db?password=***&sslmode=disable"
        );
        assert_eq!(redact("postgres://ada@h:5/db"), "postgres://ada@h:5/db");
    }

    #[tokio::test]
    async fn every_shape_of_commit_statement_is_valid_sql() {
        let Some((store, _)) = fresh("commit_shapes").await else {
            return;
        };
        let client = store.client().await.unwrap();
        let mut shapes = std::collections::HashSet::new();
        for bits in 0..(Parts::REMOVED_TIMERS.0 << 1) {
            let statement = store.inner.sql.commit(Parts(bits));
            if !shapes.insert(statement.sql.clone()) {
                continue;
            }
            let prepared = client.prepare(&statement.sql).await;
            let prepared =
                prepared.unwrap_or_else(|e| panic!("parts {bits:#b}: {}", error_text(&e)));
            assert_eq!(
                prepared.params().len(),
                statement.slots.len(),
                "parts {bits:#b}"
            );
        }
        // Closing ignores the task and timer parts; the others combine freely.
        assert_eq!(shapes.len(), 256 + 4);
    }

    #[test]
    fn the_schema_comes_from_the_search_path_in_the_options() {
        let url = "postgres://u@h/db?options=-c%20search_path%3Dorders";
        let config: tokio_postgres::Config = url.parse().unwrap();
        assert_eq!(
            config.get_options().and_then(search_path_schema).as_deref(),
            Some("orders")
        );
        for (options, schema) in [
            ("-c search_path=Orders,public", Some("orders")),
            ("-csearch_path=a", Some("a")),
            ("--search_path=b", Some("b")),
            ("--search-path=b2", Some("b2")),
            // A space in an option is escaped with a backslash, as libpq wants it.
            (
                "-c statement_timeout=5 -c search_path=\"My\\ Schema\",public",
                Some("My Schema"),
            ),
            ("-c search_path=\"$user\",public", None),
            ("-c statement_timeout=5", None),
            ("-c search_path=my\\ schema", Some("my schema")),
        ] {
            assert_eq!(search_path_schema(options).as_deref(), schema, "{options}");
        }
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_ne!(channel_name("a_b"), channel_name("a-b"));
        assert!(channel_name(&"x".repeat(63)).len() <= 63);
    }
}
