//! [`SqliteStore`]: the five tables in one SQLite file, in WAL mode.
//!
//! # Schema
//!
//! Applied on open by numbered migrations ([`MIGRATIONS`]); the file's `PRAGMA user_version`
//! is the number of migrations applied. JSON columns hold the serde form of the record
//! types of [`crate::store`]; 64-bit unsigned numbers (schema fingerprints, versions, times)
//! are stored bit for bit in SQLite's signed `INTEGER`.
//!
//! ```sql
//! workflows(id TEXT PRIMARY KEY, workflow_type, schema_fingerprint, status, snapshot JSON,
//!           version, state_name, cancel_reason, stuck JSON, close JSON, created_at_ms,
//!           updated_at_ms, parent_id, parent_op)          -- index (status, id)
//! history(workflow_id, seq, at_ms, event JSON)            -- key (workflow_id, seq)
//! inbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, workflow_id, event JSON)
//! tasks(workflow_id, op, activity, input JSON, options JSON, attempt, heartbeat_details JSON,
//!       last_heartbeat_ms, scheduled_at_ms, cancel_requested, notify_running)
//!                                                         -- key (workflow_id, op)
//! timers(workflow_id, op, fire_at_ms)                     -- key (workflow_id, op)
//! -- migration 2: workflows.stuck_inbox_seq, the last inbox entry a stuck workflow had seen
//! -- migration 3: the lease (the module's "Leases and fencing" in `crate::store`):
//! --   workflows.owner (NULL when no worker holds it), workflows.lease_epoch (claims so far,
//! --   kept when the lease ends), workflows.lease_until_ms (NULL exactly when owner is);
//! --   index (status, IFNULL(lease_until_ms, 0)) for claims, index (owner, status, id) for a
//! --   worker's renewals, releases and workflows to step
//! ```
//!
//! Every [`Store`] method runs as one transaction on a blocking thread
//! (`tokio::task::spawn_blocking`), so a step's snapshot, history, consumed inbox entries,
//! tasks and timers are committed together or not at all. Writes go through one commit
//! thread that shares a transaction (and a sync to disk) among the writes waiting together,
//! each in its own savepoint; reads use a second connection and never wait for a sync.
//!
//! # Several workers on one file
//!
//! SQLite lets one connection write at a time, across processes: a claim (one `UPDATE` in a
//! write transaction) is therefore exclusive, and a fenced write compares the row's owner
//! and epoch inside the same transaction that applies it. Lease times are the machine's
//! system clock (every process on one file shares a machine), read when the write is
//! applied on the commit thread. [`SqliteStore::changes`](Store::changes) watches
//! `PRAGMA data_version` from one background thread per store, so that a worker hears of
//! another process's writes within milliseconds.

use super::rows::{
    self, int, json, stored_lease, stored_status, uint, RawHistory, RawInbox, RawTask, RawTimer,
    RawWorkflow, Read,
};
use super::{
    check_fence, Fence, InboxEntry, Lease, LeaseRequest, NewWorkflow, Purge, RunningWorkflow,
    StepCommit, Store, StoreChange, TaskRecord, TimerRecord, WorkflowClose, WorkflowRecord,
};
use crate::history::{EventKind, HistoryEvent};
use crate::{Event, OpId, StoreError, WorkflowFault, WorkflowStatus};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use std::any::Any;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use tokio::sync::broadcast;

/// The migrations, in order; migration `i` (from 0) brings `user_version` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE workflows (
    id                 TEXT PRIMARY KEY NOT NULL,
    workflow_type      TEXT NOT NULL,
    schema_fingerprint INTEGER NOT NULL,
    status             TEXT NOT NULL,
    snapshot           TEXT NOT NULL,
    version            INTEGER NOT NULL,
    state_name         TEXT NOT NULL,
    cancel_reason      TEXT,
    stuck              TEXT,
    close              TEXT,
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL,
    parent_id          TEXT,
    parent_op          INTEGER
);
CREATE INDEX workflows_by_status ON workflows (status, id);
CREATE TABLE history (
    workflow_id TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    event       TEXT NOT NULL,
    PRIMARY KEY (workflow_id, seq)
) WITHOUT ROWID;
CREATE TABLE inbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL,
    event       TEXT NOT NULL
);
CREATE INDEX inbox_by_workflow ON inbox (workflow_id, seq);
CREATE TABLE tasks (
    workflow_id       TEXT NOT NULL,
    op                INTEGER NOT NULL,
    activity          TEXT NOT NULL,
    input             TEXT NOT NULL,
    options           TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    heartbeat_details TEXT,
    last_heartbeat_ms INTEGER,
    scheduled_at_ms   INTEGER NOT NULL,
    cancel_requested  INTEGER NOT NULL,
    notify_running    INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, op)
) WITHOUT ROWID;
CREATE TABLE timers (
    workflow_id TEXT NOT NULL,
    op          INTEGER NOT NULL,
    fire_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, op)
) WITHOUT ROWID;
CREATE INDEX timers_by_deadline ON timers (fire_at_ms);
",
    "
-- The last inbox entry a stuck workflow had seen when it was marked: it is stepped again
-- only once a newer event arrives.
ALTER TABLE workflows ADD COLUMN stuck_inbox_seq INTEGER;
",
    "
-- Leases: the worker holding a Running workflow, the number of claims it has seen (kept
-- when a lease ends, so that the next claim's epoch is new), and the expiry in ms since the
-- Unix epoch. owner and lease_until_ms are NULL together, so the claimable rows (no owner,
-- or an expired lease) are one range of workflows_by_lease: IFNULL(lease_until_ms, 0) <= now.
ALTER TABLE workflows ADD COLUMN owner TEXT;
ALTER TABLE workflows ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workflows ADD COLUMN lease_until_ms INTEGER;
CREATE INDEX workflows_by_lease ON workflows (status, IFNULL(lease_until_ms, 0));
CREATE INDEX workflows_by_owner ON workflows (owner, status, id);
",
    "
-- Retention: closed workflows by the time they closed (a closed row's last update).
CREATE INDEX workflows_closed ON workflows (updated_at_ms) WHERE status != 'running';
",
];

/// The durable [`Store`]: one SQLite file (plus its `-wal` and `-shm` companions while open),
/// shared safely by several processes (an engine and `wf` commands, say).
///
/// Commits are synchronous (`PRAGMA synchronous = FULL`): once a step's commit returns, it
/// survives a crash of the process or of the machine. A commit first checks that the file at
/// the path is still the one opened: once it was deleted or replaced, every write fails with
/// an error naming the file instead of going into a file nobody will read again.
///
/// A new file is created readable and writable by its owner only (see [`SqliteOptions`]).
///
/// Any number of engines (in any number of processes) may share the file: each steps the
/// workflows it holds a lease on ([`Store::claim_workflows`]), and every write it makes for
/// them carries its [`Fence`], which the store checks against the row in the same
/// transaction.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The read connection.
    conn: Arc<Mutex<Connection>>,
    committer: Arc<GroupCommitter>,
    path: Arc<PathBuf>,
    changes: Arc<ChangeFeed>,
}

/// How often the change watcher reads `PRAGMA data_version`.
const CHANGE_TICK: std::time::Duration = std::time::Duration::from_millis(2);

/// How many hints a slow receiver may fall behind before it is told it lagged (which it
/// takes as "something changed" too).
const CHANGE_CAPACITY: usize = 16;

/// The shared end of [`Store::changes`]: the channel, and whether a watcher thread is
/// feeding it. Held only by the clones of one store; the watcher holds a [`Weak`] to it and
/// stops once it is gone, or once no receiver is left (the next `changes` starts another).
#[derive(Debug)]
struct ChangeFeed {
    sender: broadcast::Sender<StoreChange>,
    watching: Mutex<bool>,
}

impl ChangeFeed {
    fn new() -> ChangeFeed {
        ChangeFeed {
            sender: broadcast::channel(CHANGE_CAPACITY).0,
            watching: Mutex::new(false),
        }
    }
}

const DATA_VERSION: &str = "PRAGMA data_version";

/// The watcher's connection, and the data version it starts from. Read by the caller of
/// [`Store::changes`] before it returns, so that every commit after that is heard.
fn open_watcher(path: &Path) -> rusqlite::Result<(Connection, i64)> {
    let conn = open_existing(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let version = conn.query_row(DATA_VERSION, [], |row| row.get(0))?;
    Ok((conn, version))
}

/// The watcher thread: reads `PRAGMA data_version` on its own connection every
/// [`CHANGE_TICK`] and sends [`StoreChange::Any`] when it moved from `start` (another
/// connection, in this process or another, committed).
fn watch_changes(
    conn: Connection,
    start: i64,
    feed: Weak<ChangeFeed>,
    sender: broadcast::Sender<StoreChange>,
) {
    let mut stmt = match conn.prepare(DATA_VERSION) {
        Ok(stmt) => stmt,
        Err(e) => {
            tracing::warn!("the SQLite change watcher cannot read the data version: {e}");
            stop_watching(&feed);
            let _ = sender.send(StoreChange::Any);
            return;
        }
    };
    let mut read = move || stmt.query_row([], |row| row.get::<_, i64>(0));
    let mut last = Some(start);
    loop {
        std::thread::sleep(CHANGE_TICK);
        if feed.strong_count() == 0 {
            return;
        }
        if sender.receiver_count() == 0 {
            let Some(feed) = feed.upgrade() else { return };
            let mut watching = feed.watching.lock().unwrap_or_else(PoisonError::into_inner);
            // Checked again under the lock `changes` subscribes under: a receiver that
            // arrives after this finds the thread gone and starts another.
            if sender.receiver_count() == 0 {
                *watching = false;
                return;
            }
        }
        match read() {
            Ok(version) if last == Some(version) => {}
            Ok(version) => {
                last = Some(version);
                let _ = sender.send(StoreChange::Any);
            }
            // A hint that may be lost is sent: receivers re-read what they care about.
            Err(e) => {
                tracing::debug!("the SQLite change watcher could not read the data version: {e}");
                last = None;
                let _ = sender.send(StoreChange::Any);
            }
        }
    }
}

fn stop_watching(feed: &Weak<ChangeFeed>) {
    if let Some(feed) = feed.upgrade() {
        *feed.watching.lock().unwrap_or_else(PoisonError::into_inner) = false;
    }
}

/// The store's clock for leases: the system's, in ms since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The stored expiry of a lease of `duration_ms` from `now`: capped at `i64::MAX`, since a
/// time stored bit for bit past it would read back negative (long expired).
fn lease_until(now: u64, duration_ms: u64) -> i64 {
    i64::try_from(now.saturating_add(duration_ms)).unwrap_or(i64::MAX)
}

/// `now` for comparisons with stored expiries.
fn stored_now(now: u64) -> i64 {
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// The most writes one transaction takes.
const MAX_GROUP: usize = 256;

/// A write's result, type-erased for the trip back from the commit thread.
type Reply = Result<Box<dyn Any + Send>, StoreError>;

/// One write: applied by the commit thread inside its own savepoint.
type WriteFn = Box<dyn FnOnce(&Connection) -> Reply + Send>;

type WriteRequest = (WriteFn, std::sync::mpsc::Sender<Reply>);

/// Group commit: one thread owns the connection every write goes through (step commits,
/// events, new workflows, task attempts, heartbeats, cancels). It takes every write that is
/// waiting when it starts a transaction (up to [`MAX_GROUP`]), applies each in its own
/// savepoint (a write refused for its own reason, such as a stale version, does not undo the
/// others), and commits them with one sync to disk.
#[derive(Debug)]
struct GroupCommitter {
    requests: Mutex<std::sync::mpsc::Sender<WriteRequest>>,
    stats: Arc<CommitStats>,
    path: Arc<PathBuf>,
}

/// Counts of the group committer's work.
#[derive(Debug, Default)]
struct CommitStats {
    transactions: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
}

impl GroupCommitter {
    /// Starts the commit thread on `conn`, a connection to `path`, which was the file
    /// `opened` when the store opened it.
    fn start(
        mut conn: Connection,
        path: Arc<PathBuf>,
        opened: FileIdentity,
    ) -> Result<GroupCommitter, StoreError> {
        let (requests, queue) = std::sync::mpsc::channel::<WriteRequest>();
        let stats = Arc::new(CommitStats::default());
        let counts = Arc::clone(&stats);
        let file = Arc::clone(&path);
        std::thread::Builder::new()
            .name("workflow-sqlite-commit".into())
            .spawn(move || {
                let path = file;
                let _file = ErrorsName::file(&path);
                // Ends when every sender (every clone of the store) is gone.
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_GROUP {
                        match queue.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    use std::sync::atomic::Ordering::Relaxed;
                    counts.transactions.fetch_add(1, Relaxed);
                    counts.writes.fetch_add(batch.len() as u64, Relaxed);
                    commit_group(&mut conn, &path, opened, batch);
                }
            })
            .map_err(|e| {
                StoreError::Backend(format!(
                    "workflow database `{}`: could not start the commit thread: {e}",
                    path.display()
                ))
            })?;
        Ok(GroupCommitter {
            requests: Mutex::new(requests),
            stats,
            path,
        })
    }

    /// Queues a write and waits (blocking) for its result.
    fn submit(&self, write: WriteFn) -> Reply {
        let (reply, result) = std::sync::mpsc::channel();
        let sent = self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send((write, reply));
        let stopped = |how: &str| {
            Err(StoreError::Backend(format!(
                "workflow database `{}`: the commit thread {how}; restart the worker",
                self.path.display()
            )))
        };
        if sent.is_err() {
            return stopped("has stopped");
        }
        result
            .recv()
            .unwrap_or_else(|_| stopped("stopped before answering"))
    }
}

fn commit_group(
    conn: &mut Connection,
    path: &Path,
    opened: FileIdentity,
    batch: Vec<WriteRequest>,
) {
    let (writes, replies): (Vec<WriteFn>, Vec<_>) = batch.into_iter().unzip();
    let mut results = Vec::with_capacity(writes.len());
    let outcome = (|| -> Result<(), StoreError> {
        let mut tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| backend(path, e))?;
        for write in writes {
            let savepoint = tx.savepoint().map_err(|e| backend(path, e))?;
            let result = write(&savepoint);
            match &result {
                Ok(_) => savepoint.commit().map_err(|e| backend(path, e))?,
                // SQLite rolled the whole transaction back (some I/O and full-disk errors
                // do): nothing of the group is trusted, and later savepoints would
                // autocommit on their own.
                Err(e) if savepoint.is_autocommit() => return Err(group_failure(e)),
                // Anything else is this write's own failure (a stale version, a closed or
                // unknown workflow, a taken id, a damaged row it read): its savepoint rolls
                // back when dropped and the others go on. If the database itself is failing,
                // the final commit says so for the whole group.
                Err(_) => {}
            }
            results.push(result);
        }
        // Dropping the transaction rolls the group back.
        check_same_file(path, opened)?;
        tx.commit().map_err(|e| backend(path, e))
    })();
    match outcome {
        Ok(()) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        // Nothing of the group was committed: every write fails and is retried by its caller.
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(group_failure(&e)));
            }
        }
    }
}

/// The error every write of a failed group gets: the database's own message.
fn group_failure(e: &StoreError) -> StoreError {
    match e {
        StoreError::Backend(message) => StoreError::Backend(message.clone()),
        other => StoreError::Backend(other.to_string()),
    }
}

/// How [`SqliteStore::open_with`] creates a database file that does not exist yet.
///
/// ```no_run
/// # use workflow_core::{SqliteOptions, SqliteStore};
/// // Shared with the members of the file's group (who run `wf`, say).
/// let store = SqliteStore::open_with(
///     "/srv/workflows/workflows.db",
///     SqliteOptions::default().with_file_mode(0o660),
/// )?;
/// # Ok::<(), workflow_core::StoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// The Unix permission bits a new file is created with, less the process's umask;
    /// SQLite gives the `-wal` and `-shm` files the permissions of the database file.
    /// Default `0o600`: the database holds workflow inputs, results and heartbeats, which
    /// may be secrets, so only its owner may read it. An existing file keeps its
    /// permissions. Not used on other systems.
    pub file_mode: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { file_mode: 0o600 }
    }
}

impl SqliteOptions {
    /// These options with new files created with `mode` (see [`SqliteOptions::file_mode`]).
    pub fn with_file_mode(mut self, mode: u32) -> Self {
        self.file_mode = mode;
        self
    }
}

/// How long each statement waits for another connection's lock (SQLite's busy timeout).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long opening keeps trying again while another connection holds a lock that SQLite's
/// busy timeout does not wait for: switching a new file to WAL needs the file to itself, and
/// SQLite answers "database is locked" at once where waiting could deadlock.
const OPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

impl SqliteStore {
    /// Opens the database at `path`, creating it if it does not exist (readable and writable
    /// by its owner only, see [`SqliteOptions`]), and applies the migrations it lacks.
    ///
    /// Fails with [`StoreError::Backend`] naming the file if it is not a SQLite database (or
    /// is damaged), if it is another program's database, if it was written by a newer
    /// version of this library, or if it cannot be opened at all. The file is inspected on a
    /// read-only connection first, so a refused file is left byte for byte as it was. While
    /// other processes open the same file at the same moment, opening waits and tries again
    /// (for up to 30 s).
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// [`SqliteStore::open`], creating a new file as `options` say.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        create_file(&path, &options)?;
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(2);
        let (conn, commit_conn, opened) = loop {
            match open_connections(&path) {
                Ok(opened) => break opened,
                Err(OpenFailure::Refused(e)) => return Err(e),
                Err(OpenFailure::Busy(e)) if started.elapsed() < OPEN_PATIENCE => {
                    tracing::debug!("{}: busy while opening, trying again: {e}", path.display());
                    std::thread::sleep(pause + jitter(pause));
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                Err(OpenFailure::Busy(e)) => {
                    return Err(StoreError::Backend(format!(
                        "workflow database `{}` stayed locked by other connections for {} s \
                         while opening it ({e}); another process holds it (in exclusive \
                         locking mode, or in a long write): stop that process and try again",
                        path.display(),
                        OPEN_PATIENCE.as_secs()
                    )))
                }
            }
        };
        let path = Arc::new(path);
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            committer: Arc::new(GroupCommitter::start(
                commit_conn,
                Arc::clone(&path),
                opened,
            )?),
            path,
            changes: Arc::new(ChangeFeed::new()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many transactions this store's writes took so far, and how many writes (step
    /// commits, events, new workflows, task attempts, heartbeats, cancels) they held: with
    /// many workflows busy at once, one transaction (and one sync to disk) carries several.
    pub fn commit_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &self.committer.stats;
        (stats.transactions.load(Relaxed), stats.writes.load(Relaxed))
    }

    /// Runs `f` through the group committer: in a savepoint of a transaction shared with the
    /// other writes waiting at that moment, committed (and synced) before this returns.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let committer = Arc::clone(&self.committer);
        let write: WriteFn =
            Box::new(move |conn| f(conn).map(|v| Box::new(v) as Box<dyn Any + Send>));
        // Waiting on a blocking thread keeps a paused test clock from advancing meanwhile.
        let joined = tokio::task::spawn_blocking(move || committer.submit(write)).await;
        let value = joined.unwrap_or_else(|e| {
            Err(StoreError::Backend(format!(
                "workflow database `{}`: the commit thread failed: {e}",
                self.path.display()
            )))
        })?;
        value.downcast::<T>().map(|v| *v).map_err(|_| {
            StoreError::Backend(format!(
                "workflow database `{}`: the commit thread answered with the wrong type",
                self.path.display()
            ))
        })
    }

    /// Runs `f` in one read transaction on a blocking thread (WAL: it sees the last commit
    /// and does not wait for writers).
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let path = Arc::clone(&self.path);
        let joined = tokio::task::spawn_blocking(move || {
            let _file = ErrorsName::file(&path);
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)
                .map_err(|e| backend(&path, e))?;
            let value = f(&tx)?;
            tx.commit().map_err(|e| backend(&path, e))?;
            Ok(value)
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(e) => Err(StoreError::Backend(format!(
                "workflow database `{}`: the store's worker thread failed: {e}",
                self.path.display()
            ))),
        }
    }
}

fn is_damaged(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

fn backend(path: &Path, e: rusqlite::Error) -> StoreError {
    sql_error(Some(path), e)
}

thread_local! {
    /// The database file whose read or write this thread runs (see [`ErrorsName`]).
    static CURRENT_FILE: RefCell<Option<Arc<PathBuf>>> = const { RefCell::new(None) };
}

/// While alive, SQLite errors mapped on this thread without a path ([`Sql::sql`], used by
/// the SQL helpers that see only a connection) name this file. Set around each read
/// transaction and for the life of the commit thread.
struct ErrorsName {
    previous: Option<Arc<PathBuf>>,
}

impl ErrorsName {
    fn file(path: &Arc<PathBuf>) -> ErrorsName {
        let previous = CURRENT_FILE.with(|file| file.borrow_mut().replace(Arc::clone(path)));
        ErrorsName { previous }
    }
}

impl Drop for ErrorsName {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT_FILE.with(|file| *file.borrow_mut() = previous);
    }
}

/// The store error for a SQLite error, naming the file (given, or the one this thread works
/// on); a damaged file says what to do about it.
fn sql_error(path: Option<&Path>, e: rusqlite::Error) -> StoreError {
    let current = CURRENT_FILE.with(|file| file.borrow().clone());
    let file = path
        .or(current.as_deref().map(PathBuf::as_path))
        .map_or_else(String::new, |p| format!(" `{}`", p.display()));
    if is_damaged(&e) {
        StoreError::Backend(format!(
            "workflow database{file} is damaged or is not a workflow database ({e}); \
             restore it from a backup or point the engine at another file"
        ))
    } else {
        StoreError::Backend(format!("workflow database{file}: {e}"))
    }
}

/// Why an attempt to open the file failed.
enum OpenFailure {
    /// Another connection held a lock SQLite would not wait for: try again.
    Busy(rusqlite::Error),
    /// The file cannot be used; the error says why and names it.
    Refused(StoreError),
}

impl From<StoreError> for OpenFailure {
    fn from(e: StoreError) -> Self {
        OpenFailure::Refused(e)
    }
}

/// A SQLite error met while opening `path`.
fn open_failure(path: &Path, e: rusqlite::Error) -> OpenFailure {
    let interrupted = e
        .sqlite_error()
        .is_some_and(|e| e.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK);
    if interrupted {
        // Only the read-only inspection meets this: a write to the file was interrupted
        // (a crash), and reading it means rolling that write back first.
        return OpenFailure::Refused(StoreError::Backend(format!(
            "`{}` holds a write interrupted by a crash (its rollback journal `{}` is still \
             there), which a workflow database (always in WAL mode) does not have; it was left untouched. Open it \
             with the program it belongs to, which rolls the write back, or point the engine \
             or `wf --db` at a workflow database or a new file",
            path.display(),
            companion(path, "-journal").display()
        )));
    }
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            OpenFailure::Busy(e)
        }
        _ => OpenFailure::Refused(backend(path, e)),
    }
}

/// Up to `pause` more, so that openers that collided do not all come back together.
fn jitter(pause: std::time::Duration) -> std::time::Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let nanos = u64::try_from(pause.as_nanos()).unwrap_or(u64::MAX).max(1);
    std::time::Duration::from_nanos(random % nanos)
}

/// Creates `path` as an empty file with the options' permissions if nothing is there yet
/// (SQLite takes an empty file for a new database); an existing file is left as it is.
fn create_file(path: &Path, options: &SqliteOptions) -> Result<(), StoreError> {
    let mut new = std::fs::OpenOptions::new();
    new.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        new.mode(options.file_mode);
    }
    #[cfg(not(unix))]
    let _ = options;
    match new.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Backend(format!(
            "could not create the workflow database `{}`: {e}; check that its directory \
             exists and is writable",
            path.display()
        ))),
    }
}

/// A read-write connection to the existing file at `path`: it never creates one, so a file
/// deleted under a running store is not quietly replaced by an empty one.
fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// One attempt at opening the store's connections: the read connection, migrated, the
/// commit thread's connection, and the identity of the file they opened.
fn open_connections(path: &Path) -> Result<(Connection, Connection, FileIdentity), OpenFailure> {
    inspect(path)?;
    let mut conn = open_existing(path).map_err(|e| open_failure(path, e))?;
    configure(&conn, path)?;
    migrate(&mut conn, path)?;
    let commit_conn = open_existing(path).map_err(|e| open_failure(path, e))?;
    configure(&commit_conn, path)?;
    let opened = FileIdentity::of(path).map_err(|e| {
        StoreError::Backend(format!(
            "could not read the identity of the workflow database `{}`: {e}",
            path.display()
        ))
    })?;
    Ok((conn, commit_conn, opened))
}

/// Looks at the file on a read-only connection, which neither writes to the file nor
/// folds a `-wal` file into it when it closes: a file that is not ours is left as it was.
fn inspect(path: &Path) -> Result<(), OpenFailure> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_failure(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_failure(path, e))?;
    check_ours(&conn, path)
}

/// Refuses a file that is not a database, is another program's database (tables, but no
/// migrations of ours), or has migrations newer than this build's.
fn check_ours(conn: &Connection, path: &Path) -> Result<(), OpenFailure> {
    let (applied, tables): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), \
             (SELECT COUNT(*) FROM sqlite_master)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(|e| open_failure(path, e))?;
    check_version(applied, path)?;
    if applied == 0 && tables > 0 {
        let wal = companion(path, "-wal");
        let stray = if wal.exists() {
            format!(
                " If the file `{}` beside it was copied there from another database, move it \
                 away and open the file again.",
                wal.display()
            )
        } else {
            String::new()
        };
        return Err(OpenFailure::Refused(StoreError::Backend(format!(
            "`{}` is a SQLite database of something else (it has tables but no workflow \
             schema); it was left untouched. Point the engine or `wf --db` at a workflow \
             database or a new file.{stray}",
            path.display()
        ))));
    }
    Ok(())
}

/// Refuses a file with more migrations applied than this build knows.
fn check_version(applied: i64, path: &Path) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    if applied > known {
        return Err(StoreError::Backend(format!(
            "workflow database `{}` has schema version {applied}, newer than this build \
             understands ({known}); open it with a newer version of workflow-core",
            path.display()
        )));
    }
    Ok(())
}

/// The file SQLite keeps beside the database: `-wal` or `-shm`.
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

fn configure(conn: &Connection, path: &Path) -> Result<(), OpenFailure> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_failure(path, e))?;
    // Reading the mode back also reads the header: a file that is not a database fails here.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| open_failure(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenFailure::Refused(StoreError::Backend(format!(
            "workflow database `{}`: could not switch to WAL mode (got `{mode}`)",
            path.display()
        ))));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| open_failure(path, e))?;
    Ok(())
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), OpenFailure> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| open_failure(path, e))?;
    // Read again inside the write transaction: another process may have migrated meanwhile.
    let applied: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| open_failure(path, e))?;
    check_version(applied, path)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        tx.execute_batch(sql).map_err(|e| open_failure(path, e))?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(|e| open_failure(path, e))?;
    }
    tx.commit().map_err(|e| open_failure(path, e))
}

/// What tells the database file apart from another file later put at its path: its device
/// and inode on Unix (elsewhere an open file cannot be deleted, and only existence is
/// checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    #[cfg(unix)]
    device: u64,
    #[cfg(unix)]
    inode: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> std::io::Result<FileIdentity> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(FileIdentity {
                device: meta.dev(),
                inode: meta.ino(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Ok(FileIdentity {})
        }
    }
}

/// Fails unless the file at `path` is still the one the store `opened`: once it was deleted
/// or replaced, commits would go to a file nobody reads again (and the connections would
/// report success), so each one is refused. One `stat` per transaction.
fn check_same_file(path: &Path, opened: FileIdentity) -> Result<(), StoreError> {
    let what = match FileIdentity::of(path) {
        Ok(now) if now == opened => return Ok(()),
        Ok(_) => "replaced by another file",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "deleted",
        Err(e) => {
            return Err(StoreError::Backend(format!(
                "could not check that the workflow database `{}` is still the file this \
                 process opened ({e}); nothing was committed",
                path.display()
            )))
        }
    };
    Err(StoreError::Backend(format!(
        "workflow database `{}` was deleted or replaced after this process opened it (it was \
         {what}); nothing was committed, since the writes would be lost. Restart the worker \
         (or the program using the store) so that it opens the file now at that path, after \
         putting the database back from a backup if it was removed by mistake",
        path.display()
    )))
}

/// Maps every rusqlite error of a closure to a [`StoreError`] naming the file this thread
/// works on ([`ErrorsName`]).
trait Sql<T> {
    fn sql(self) -> Result<T, StoreError>;
}

impl<T> Sql<T> for Result<T, rusqlite::Error> {
    fn sql(self) -> Result<T, StoreError> {
        self.map_err(|e| sql_error(None, e))
    }
}

/// Claims up to `?5` Running workflows with no owner or an expired lease (`?4` is now) for
/// owner `?1` until `?2`; `?3` is the Running status. The condition is one range of the
/// index `workflows_by_lease`.
const CLAIM_SQL: &str = "UPDATE workflows SET owner = ?1, lease_epoch = lease_epoch + 1, \
     lease_until_ms = ?2 WHERE id IN (SELECT id FROM workflows \
       WHERE status = ?3 AND IFNULL(lease_until_ms, 0) <= ?4 LIMIT ?5) \
     RETURNING id";

/// The Running (`?1`) workflows of owner `?2` that need a step, by id (index
/// `workflows_by_owner`).
const TO_STEP_SQL: &str = "SELECT id FROM workflows WHERE owner = ?2 AND status = ?1 AND CASE \
     WHEN stuck IS NULL THEN version = 0 OR EXISTS \
       (SELECT 1 FROM inbox WHERE inbox.workflow_id = workflows.id) \
     ELSE EXISTS (SELECT 1 FROM inbox WHERE inbox.workflow_id = workflows.id \
       AND inbox.seq > COALESCE(workflows.stuck_inbox_seq, 0)) \
     END ORDER BY id";

const WORKFLOW_COLUMNS: &str = "id, workflow_type, schema_fingerprint, status, snapshot, \
     version, state_name, cancel_reason, stuck, close, created_at_ms, updated_at_ms, \
     parent_id, parent_op, owner, lease_epoch, lease_until_ms";

/// Reads the workflows columns of a row, whatever they hold (see [`rows`]).
trait ReadRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawWorkflow>;
}

impl ReadRow for RawWorkflow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawWorkflow> {
        Ok(RawWorkflow {
            id: lossy_text(row.get_ref(0)?),
            workflow_type: lossy_text(row.get_ref(1)?),
            schema: integer(row.get_ref(2)?),
            status: lossy_text(row.get_ref(3)?),
            snapshot: lossy_text(row.get_ref(4)?),
            version: integer(row.get_ref(5)?),
            state_name: lossy_text(row.get_ref(6)?),
            cancel_reason: lossy_text_opt(row.get_ref(7)?),
            stuck: lossy_text_opt(row.get_ref(8)?),
            close: utf8_opt(row.get_ref(9)?),
            created_at_ms: integer(row.get_ref(10)?),
            updated_at_ms: integer(row.get_ref(11)?),
            parent_id: utf8_opt(row.get_ref(12)?),
            parent_op: integer_opt(row.get_ref(13)?),
            owner: lossy_text_opt(row.get_ref(14)?),
            lease_epoch: integer(row.get_ref(15)?),
            lease_until_ms: integer_opt(row.get_ref(16)?),
        })
    }
}

/// A column's value as text, whatever SQLite holds there: a snapshot damaged into a blob or
/// into bytes that are not UTF-8 must fail only its own workflow's decoding (as a typed
/// error recorded on it), not the read of the row and with it every other workflow.
fn lossy_text(value: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            String::from_utf8_lossy(bytes).into_owned()
        }
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Null => String::new(),
    }
}

/// [`lossy_text`] for a column that may be NULL.
fn lossy_text_opt(value: rusqlite::types::ValueRef<'_>) -> Option<String> {
    match value {
        rusqlite::types::ValueRef::Null => None,
        value => Some(lossy_text(value)),
    }
}

/// What a column holds, as a message quotes it.
fn shown(value: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Text(bytes) => rows::excerpt(&String::from_utf8_lossy(bytes)),
        ValueRef::Blob(bytes) => format!("a blob of {} bytes", bytes.len()),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Null => "NULL".to_string(),
    }
}

/// A column where an integer is due.
fn integer(value: rusqlite::types::ValueRef<'_>) -> Read<i64> {
    match value {
        rusqlite::types::ValueRef::Integer(i) => Ok(i),
        other => Err(format!("it holds {}, not an integer", shown(other))),
    }
}

/// [`integer`] for a column that may be NULL.
fn integer_opt(value: rusqlite::types::ValueRef<'_>) -> Read<Option<i64>> {
    match value {
        rusqlite::types::ValueRef::Null => Ok(None),
        value => integer(value).map(Some),
    }
}

/// A column where a flag (0 or 1) is due.
fn flag(value: rusqlite::types::ValueRef<'_>) -> Read<bool> {
    match value {
        rusqlite::types::ValueRef::Integer(i) => Ok(i != 0),
        other => Err(format!("it holds {}, not 0 or 1", shown(other))),
    }
}

/// A column where text is due that must be read exactly (JSON, names): bytes that are not
/// UTF-8 do not read, since the text with them replaced could decode as another value than
/// the one stored.
fn utf8(value: rusqlite::types::ValueRef<'_>) -> Read<String> {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_string()),
            Err(e) => Err(format!("it is not UTF-8 text ({e}): {}", shown(value))),
        },
        ValueRef::Integer(i) => Ok(i.to_string()),
        ValueRef::Real(f) => Ok(f.to_string()),
        ValueRef::Null => Err("it is NULL".to_string()),
    }
}

/// [`utf8`] for a column that may be NULL.
fn utf8_opt(value: rusqlite::types::ValueRef<'_>) -> Read<Option<String>> {
    match value {
        rusqlite::types::ValueRef::Null => Ok(None),
        value => utf8(value).map(Some),
    }
}

/// A workflow row, decoded, with the fault of a column that does not read (see
/// [`RawWorkflow::decode`]).
type Decoded = (WorkflowRecord, Option<WorkflowFault>);

fn find_workflow(tx: &Connection, id: &str) -> Result<Option<Decoded>, StoreError> {
    find_workflow_for_step(tx, id, None)
}

/// [`find_workflow`] for a step: the snapshot is left out (JSON `null`) when the stored
/// version is `cached`, the one whose machine the engine holds.
fn find_workflow_for_step(
    tx: &Connection,
    id: &str,
    cached: Option<u64>,
) -> Result<Option<Decoded>, StoreError> {
    let columns = WORKFLOW_COLUMNS.replace(
        "snapshot,",
        "CASE WHEN version = ?2 THEN 'null' ELSE snapshot END,",
    );
    let raw = tx
        .prepare_cached(&format!("SELECT {columns} FROM workflows WHERE id = ?1"))
        .sql()?
        .query_row(params![id, cached.map(int)], RawWorkflow::read)
        .optional()
        .sql()?;
    Ok(raw.map(RawWorkflow::decode))
}

/// What writes check on a workflow row before changing it.
struct RowState {
    version: u64,
    status: WorkflowStatus,
    lease: Option<Lease>,
}

/// The version, status and lease of a workflow, or `NotFound`.
fn row_state(tx: &Connection, id: &str) -> Result<RowState, StoreError> {
    type Row = (i64, String, Option<String>, i64, Option<i64>);
    let row: Option<Row> = tx
        .prepare_cached(
            "SELECT version, status, owner, lease_epoch, lease_until_ms FROM workflows \
             WHERE id = ?1",
        )
        .sql()?
        .query_row([id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .optional()
        .sql()?;
    let (version, status, owner, epoch, until_ms) =
        row.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
    // An unknown status is Running (damaged): requests are recorded, and it can be
    // terminated, the operator's way out.
    let (status, _) = stored_status(&status);
    Ok(RowState {
        version: uint(version),
        status,
        lease: stored_lease(owner, epoch, until_ms),
    })
}

impl RowState {
    /// `AlreadyClosed` unless the workflow is Running.
    fn running(&self, id: &str) -> Result<(), StoreError> {
        if self.status != WorkflowStatus::Running {
            return Err(StoreError::AlreadyClosed {
                id: id.to_string(),
                status: self.status,
            });
        }
        Ok(())
    }
}

/// Checks that the workflow exists and is Running; returns its version.
fn running(tx: &Connection, id: &str) -> Result<u64, StoreError> {
    let row = row_state(tx, id)?;
    row.running(id)?;
    Ok(row.version)
}

fn exists(tx: &Connection, id: &str) -> Result<(), StoreError> {
    row_state(tx, id).map(|_| ())
}

/// Checks a worker's write for `id` against the stored lease ([`check_fence`]) before it
/// changes anything. An unknown workflow passes: the write itself reports it.
fn check_row_fence(tx: &Connection, id: &str, fence: Option<&Fence>) -> Result<(), StoreError> {
    if fence.is_none() {
        return Ok(());
    }
    match row_state(tx, id) {
        Ok(row) => check_fence(id, row.lease.as_ref(), fence),
        Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A Running workflow with its tasks, timers and inbox, read in the caller's transaction;
/// [`RunningWorkflow::damaged`] says if anything of it does not read.
fn running_workflow(
    tx: &Connection,
    (record, fault): Decoded,
) -> Result<RunningWorkflow, StoreError> {
    let tasks = read_tasks(tx, &record.id)?;
    let timers = read_timers(tx, &record.id)?;
    let inbox = read_inbox(tx, &record.id)?;
    Ok(rows::running(record, fault, tasks, timers, inbox))
}

/// Rows of a workflow as decoded: `Err` holds the fault of the first that does not read.
type Rows<T> = Result<Vec<T>, WorkflowFault>;

fn append_history(
    tx: &Connection,
    id: &str,
    at_ms: u64,
    events: impl IntoIterator<Item = EventKind>,
) -> Result<(), StoreError> {
    let last: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM history WHERE workflow_id = ?1",
            [id],
            |row| row.get(0),
        )
        .sql()?;
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO history (workflow_id, seq, at_ms, event) VALUES (?1, ?2, ?3, ?4)",
        )
        .sql()?;
    for (i, kind) in events.into_iter().enumerate() {
        insert
            .execute(params![id, last + 1 + i as i64, int(at_ms), json(&kind)?])
            .sql()?;
    }
    Ok(())
}

fn push_inbox(tx: &Connection, id: &str, event: &Event) -> Result<u64, StoreError> {
    tx.execute(
        "INSERT INTO inbox (workflow_id, event) VALUES (?1, ?2)",
        params![id, json(event)?],
    )
    .sql()?;
    Ok(uint(tx.last_insert_rowid()))
}

fn drop_runtime_rows(tx: &Connection, id: &str) -> Result<(), StoreError> {
    for table in ["inbox", "tasks", "timers"] {
        tx.execute(&format!("DELETE FROM {table} WHERE workflow_id = ?1"), [id])
            .sql()?;
    }
    Ok(())
}

/// The inbox of workflow `id`, each row read whatever it holds and decoded on its own.
fn read_inbox(tx: &Connection, id: &str) -> Result<Rows<InboxEntry>, StoreError> {
    let mut stmt = tx
        .prepare_cached("SELECT seq, event FROM inbox WHERE workflow_id = ?1 ORDER BY seq")
        .sql()?;
    let rows = stmt
        .query_map([id], |row| {
            Ok(RawInbox {
                seq: integer(row.get_ref(0)?),
                event: utf8(row.get_ref(1)?),
            })
        })
        .sql()?;
    let mut inbox = Vec::new();
    for row in rows {
        inbox.push(row.sql()?.decode());
    }
    Ok(inbox.into_iter().collect())
}

/// The activity tasks of workflow `id`, each row read whatever it holds and decoded on its
/// own.
fn read_tasks(tx: &Connection, id: &str) -> Result<Rows<TaskRecord>, StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT op, activity, input, options, attempt, heartbeat_details, \
             last_heartbeat_ms, scheduled_at_ms, cancel_requested, notify_running \
             FROM tasks WHERE workflow_id = ?1 ORDER BY op",
        )
        .sql()?;
    let rows = stmt
        .query_map([id], |row| {
            Ok(RawTask {
                op: integer(row.get_ref(0)?),
                activity: utf8(row.get_ref(1)?),
                input: utf8(row.get_ref(2)?),
                options: utf8(row.get_ref(3)?),
                attempt: integer(row.get_ref(4)?),
                heartbeat_details: utf8_opt(row.get_ref(5)?),
                last_heartbeat_ms: integer_opt(row.get_ref(6)?),
                scheduled_at_ms: integer(row.get_ref(7)?),
                cancel_requested: flag(row.get_ref(8)?),
                notify_running: flag(row.get_ref(9)?),
            })
        })
        .sql()?;
    let mut tasks = Vec::new();
    for row in rows {
        tasks.push(row.sql()?.decode(id));
    }
    Ok(tasks.into_iter().collect())
}

/// The timers of workflow `id`, each row read whatever it holds and decoded on its own.
fn read_timers(tx: &Connection, id: &str) -> Result<Rows<TimerRecord>, StoreError> {
    let mut stmt = tx
        .prepare_cached("SELECT op, fire_at_ms FROM timers WHERE workflow_id = ?1 ORDER BY op")
        .sql()?;
    let rows = stmt
        .query_map([id], |row| {
            Ok(RawTimer {
                op: integer(row.get_ref(0)?),
                fire_at_ms: integer(row.get_ref(1)?),
            })
        })
        .sql()?;
    let mut timers = Vec::new();
    for row in rows {
        timers.push(row.sql()?.decode(id));
    }
    Ok(timers.into_iter().collect())
}

/// The rows of workflow `id`, or [`StoreError::Damaged`] naming the first that does not read.
fn whole<T>(id: &str, rows: Rows<T>) -> Result<Vec<T>, StoreError> {
    rows.map_err(|fault| StoreError::Damaged {
        id: id.to_string(),
        fault,
    })
}

fn upsert_task(tx: &Connection, task: &TaskRecord) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO tasks (workflow_id, op, activity, input, options, attempt, \
         heartbeat_details, last_heartbeat_ms, scheduled_at_ms, cancel_requested, \
         notify_running) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .sql()?
    .execute(params![
        task.workflow_id,
        int(task.op.0),
        task.activity,
        json(&task.input)?,
        json(&task.options)?,
        i64::from(task.attempt),
        task.heartbeat_details.as_ref().map(json).transpose()?,
        task.last_heartbeat_ms.map(int),
        int(task.scheduled_at_ms),
        task.cancel_requested,
        task.notify_running,
    ])
    .sql()?;
    Ok(())
}

/// Inserts a Running workflow and its `WorkflowStarted` event inside the caller's
/// transaction; [`StoreError::AlreadyExists`] if the id is taken.
fn insert_workflow(tx: &Connection, workflow: NewWorkflow) -> Result<(), StoreError> {
    match row_state(tx, &workflow.id) {
        Ok(_) => return Err(StoreError::AlreadyExists(workflow.id)),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    let parent_id = workflow.parent.as_ref().map(|p| p.workflow_id.clone());
    let parent_op = workflow.parent.as_ref().map(|p| int(p.op.0));
    // Created by a worker: leased to it with the first epoch, from now as the write is
    // applied.
    let (owner, epoch, until_ms) = match &workflow.lease {
        Some(lease) => (
            Some(lease.owner.as_str()),
            1,
            Some(lease_until(now_ms(), lease.duration_ms)),
        ),
        None => (None, 0, None),
    };
    tx.prepare_cached(&format!(
        "INSERT INTO workflows ({WORKFLOW_COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, 0, ?6, NULL, NULL, NULL, ?7, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))
    .sql()?
    .execute(params![
        workflow.id,
        workflow.workflow_type,
        int(workflow.schema),
        WorkflowStatus::Running.as_str(),
        workflow.snapshot.as_str(),
        workflow.state_name,
        int(workflow.at_ms),
        parent_id,
        parent_op,
        owner,
        epoch,
        until_ms,
    ])
    .sql()?;
    append_history(
        tx,
        &workflow.id,
        workflow.at_ms,
        [EventKind::WorkflowStarted {
            workflow: workflow.workflow_type.clone(),
            input: workflow.input,
        }],
    )
}

/// The ids of the closed workflows `purge` selects, those that closed first (index
/// `workflows_closed`).
fn closed_to_purge(tx: &Connection, purge: &Purge) -> Result<Vec<String>, StoreError> {
    let statuses: Vec<String> = purge
        .status_names()
        .into_iter()
        .map(|s| format!("'{s}'"))
        .collect();
    let sql = format!(
        "SELECT id FROM workflows WHERE status != 'running' AND status IN ({}) \
         AND updated_at_ms < ?1 AND (?2 IS NULL OR id = ?2) ORDER BY updated_at_ms, id LIMIT ?3",
        statuses.join(", ")
    );
    let limit = i64::try_from(purge.limit).unwrap_or(i64::MAX);
    let mut stmt = tx.prepare_cached(&sql).sql()?;
    let ids = stmt
        .query_map(params![purge.closed_before_sql(), purge.id, limit], |row| {
            row.get::<_, String>(0)
        })
        .sql()?
        .collect::<Result<Vec<_>, _>>()
        .sql()?;
    Ok(ids)
}

/// Applies one step's commit inside the caller's transaction (or savepoint).
fn apply_commit(tx: &Connection, commit: StepCommit) -> Result<u64, StoreError> {
    let id = commit.workflow_id.as_str();
    let row = row_state(tx, id)?;
    check_fence(id, row.lease.as_ref(), commit.fence.as_ref())?;
    row.running(id)?;
    let found = row.version;
    if found != commit.expected_version {
        return Err(StoreError::Conflict {
            id: id.to_string(),
            expected: commit.expected_version,
            found,
        });
    }
    let version = found + 1;
    let (status, close) = match &commit.close {
        Some(close) => (close.status(), Some(json(close)?)),
        None => (WorkflowStatus::Running, None),
    };
    // A closing step ends the lease (the epoch stays, for the next claim's to be new).
    tx.prepare_cached(
        "UPDATE workflows SET version = ?2, snapshot = ?3, state_name = ?4, \
             stuck = NULL, stuck_inbox_seq = NULL, updated_at_ms = ?5, status = ?6, \
             close = ?7, \
             owner = CASE WHEN ?7 IS NULL THEN owner END, \
             lease_until_ms = CASE WHEN ?7 IS NULL THEN lease_until_ms END \
             WHERE id = ?1",
    )
    .sql()?
    .execute(params![
        id,
        int(version),
        commit.snapshot.as_str(),
        commit.state_name,
        int(commit.at_ms),
        status.as_str(),
        close,
    ])
    .sql()?;
    append_history(tx, id, commit.at_ms, commit.history)?;
    for child in commit.new_workflows {
        match insert_workflow(tx, child) {
            // Left alone; the engine reads it back and tells the parent.
            Ok(()) | Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    for (other, event) in &commit.outbox {
        match row_state(tx, other) {
            Ok(RowState {
                status: WorkflowStatus::Running,
                ..
            }) => {
                push_inbox(tx, other, event)?;
            }
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if commit.close.is_some() {
        drop_runtime_rows(tx, id)?;
        return Ok(version);
    }
    for seq in &commit.consumed_inbox {
        tx.prepare_cached("DELETE FROM inbox WHERE workflow_id = ?1 AND seq = ?2")
            .sql()?
            .execute(params![id, int(*seq)])
            .sql()?;
    }
    for task in &commit.new_tasks {
        upsert_task(tx, task)?;
    }
    for cancel in &commit.cancelled_tasks {
        tx.prepare_cached(
            "UPDATE tasks SET cancel_requested = 1, \
                 notify_running = (notify_running OR ?3) WHERE workflow_id = ?1 AND op = ?2",
        )
        .sql()?
        .execute(params![id, int(cancel.op.0), cancel.notify_running])
        .sql()?;
    }
    for op in &commit.removed_tasks {
        tx.prepare_cached("DELETE FROM tasks WHERE workflow_id = ?1 AND op = ?2")
            .sql()?
            .execute(params![id, int(op.0)])
            .sql()?;
    }
    for timer in &commit.new_timers {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO timers (workflow_id, op, fire_at_ms) \
                 VALUES (?1, ?2, ?3)",
        )
        .sql()?
        .execute(params![id, int(timer.op.0), int(timer.fire_at_ms)])
        .sql()?;
    }
    for op in &commit.removed_timers {
        tx.prepare_cached("DELETE FROM timers WHERE workflow_id = ?1 AND op = ?2")
            .sql()?
            .execute(params![id, int(op.0)])
            .sql()?;
    }
    Ok(version)
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_workflow(&self, workflow: NewWorkflow) -> Result<(), StoreError> {
        self.write(move |tx| insert_workflow(tx, workflow)).await
    }

    async fn load_workflow(&self, id: &str) -> Result<WorkflowRecord, StoreError> {
        let id = id.to_string();
        self.read(move |tx| match find_workflow(tx, &id)? {
            Some((record, _)) => Ok(record),
            None => Err(StoreError::NotFound(id.clone())),
        })
        .await
    }

    async fn list_workflows(
        &self,
        status: Option<WorkflowStatus>,
    ) -> Result<Vec<WorkflowRecord>, StoreError> {
        self.read(move |tx| {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {WORKFLOW_COLUMNS} FROM workflows \
                     WHERE ?1 IS NULL OR status = ?1 ORDER BY id"
                ))
                .sql()?;
            let rows = stmt
                .query_map([status.map(WorkflowStatus::as_str)], RawWorkflow::read)
                .sql()?;
            let mut records = Vec::new();
            for row in rows {
                records.push(row.sql()?.decode().0);
            }
            Ok(records)
        })
        .await
    }

    async fn enqueue_event(&self, id: &str, event: Event) -> Result<u64, StoreError> {
        let id = id.to_string();
        self.write(move |tx| {
            running(tx, &id)?;
            push_inbox(tx, &id, &event)
        })
        .await
    }

    async fn read_inbox(&self, id: &str) -> Result<Vec<InboxEntry>, StoreError> {
        let id = id.to_string();
        self.read(move |tx| {
            exists(tx, &id)?;
            whole(&id, read_inbox(tx, &id)?)
        })
        .await
    }

    async fn request_cancel(&self, id: &str, reason: &str) -> Result<bool, StoreError> {
        let (id, reason) = (id.to_string(), reason.to_string());
        self.write(move |tx| {
            running(tx, &id)?;
            let updated = tx
                .execute(
                    "UPDATE workflows SET cancel_reason = ?2 \
                     WHERE id = ?1 AND cancel_reason IS NULL",
                    params![id, reason],
                )
                .sql()?;
            if updated == 0 {
                return Ok(false);
            }
            push_inbox(tx, &id, &Event::CancelRequested { reason })?;
            Ok(true)
        })
        .await
    }

    async fn commit_step(&self, commit: StepCommit) -> Result<u64, StoreError> {
        self.write(move |tx| apply_commit(tx, commit)).await
    }

    async fn load_for_step(
        &self,
        id: &str,
        cached: Option<u64>,
    ) -> Result<(WorkflowRecord, Vec<InboxEntry>), StoreError> {
        let id = id.to_string();
        self.read(move |tx| {
            let (record, fault) = find_workflow_for_step(tx, &id, cached)?
                .ok_or_else(|| StoreError::NotFound(id.clone()))?;
            if let (Some(fault), WorkflowStatus::Running) = (fault, record.status) {
                return Err(StoreError::Damaged { id, fault });
            }
            let inbox = whole(&id, read_inbox(tx, &id)?)?;
            Ok((record, inbox))
        })
        .await
    }

    async fn record_task_attempt(
        &self,
        workflow_id: &str,
        op: OpId,
        attempt: u32,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let workflow_id = workflow_id.to_string();
        let fence = fence.cloned();
        self.write(move |tx| {
            check_row_fence(tx, &workflow_id, fence.as_ref())?;
            let updated = tx
                .execute(
                    "UPDATE tasks SET attempt = ?3 WHERE workflow_id = ?1 AND op = ?2",
                    params![workflow_id, int(op.0), i64::from(attempt)],
                )
                .sql()?;
            if updated == 0 {
                // Its workflow closed (or was terminated) and dropped its tasks.
                return Err(StoreError::NotFound(format!(
                    "task {op} of workflow `{workflow_id}`"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn record_heartbeat(
        &self,
        workflow_id: &str,
        op: OpId,
        details: Option<serde_json::Value>,
        at_ms: u64,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let workflow_id = workflow_id.to_string();
        let fence = fence.cloned();
        self.write(move |tx| {
            check_row_fence(tx, &workflow_id, fence.as_ref())?;
            let details = details.as_ref().map(json).transpose()?;
            tx.execute(
                "UPDATE tasks SET heartbeat_details = COALESCE(?3, heartbeat_details), \
                 last_heartbeat_ms = ?4 WHERE workflow_id = ?1 AND op = ?2",
                params![workflow_id, int(op.0), details, int(at_ms)],
            )
            .sql()?;
            Ok(())
        })
        .await
    }

    async fn set_stuck(
        &self,
        id: &str,
        fault: Option<WorkflowFault>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let fence = fence.cloned();
        self.write(move |tx| {
            let row = row_state(tx, &id)?;
            // Ignored once closed, whoever asks.
            if row.status != WorkflowStatus::Running {
                return Ok(());
            }
            check_fence(&id, row.lease.as_ref(), fence.as_ref())?;
            let fault = fault.as_ref().map(json).transpose()?;
            tx.execute(
                "UPDATE workflows SET stuck = ?2, stuck_inbox_seq = CASE WHEN ?2 IS NULL \
                 THEN NULL ELSE (SELECT COALESCE(MAX(seq), 0) FROM inbox WHERE workflow_id = ?1) \
                 END WHERE id = ?1",
                params![id, fault],
            )
            .sql()?;
            Ok(())
        })
        .await
    }

    async fn terminate(&self, id: &str, reason: &str, at_ms: u64) -> Result<(), StoreError> {
        let (id, reason) = (id.to_string(), reason.to_string());
        self.write(move |tx| {
            running(tx, &id)?;
            let close = WorkflowClose::Terminated {
                reason: reason.clone(),
            };
            tx.execute(
                "UPDATE workflows SET status = ?2, close = ?3, updated_at_ms = ?4, \
                 owner = NULL, lease_until_ms = NULL WHERE id = ?1",
                params![
                    id,
                    WorkflowStatus::Terminated.as_str(),
                    json(&close)?,
                    int(at_ms)
                ],
            )
            .sql()?;
            append_history(tx, &id, at_ms, [EventKind::WorkflowTerminated { reason }])?;
            drop_runtime_rows(tx, &id)
        })
        .await
    }

    async fn purge_closed(&self, purge: &Purge) -> Result<Vec<String>, StoreError> {
        let purge = purge.clone();
        if purge.dry_run {
            return self.read(move |tx| closed_to_purge(tx, &purge)).await;
        }
        self.write(move |tx| {
            let ids = closed_to_purge(tx, &purge)?;
            for id in &ids {
                for table in ["history", "inbox", "tasks", "timers"] {
                    tx.prepare_cached(&format!("DELETE FROM {table} WHERE workflow_id = ?1"))
                        .sql()?
                        .execute([id])
                        .sql()?;
                }
                tx.prepare_cached("DELETE FROM workflows WHERE id = ?1 AND status != 'running'")
                    .sql()?
                    .execute([id])
                    .sql()?;
                // Its children that still run report to nobody (not to a new workflow
                // reusing the id).
                tx.prepare_cached(
                    "UPDATE workflows SET parent_id = NULL, parent_op = NULL WHERE parent_id = ?1",
                )
                .sql()?
                .execute([id])
                .sql()?;
            }
            Ok(ids)
        })
        .await
    }

    async fn running_workflows(&self) -> Result<Vec<RunningWorkflow>, StoreError> {
        self.read(move |tx| {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE status = ?1 ORDER BY id"
                ))
                .sql()?;
            let raws = stmt
                .query_map([WorkflowStatus::Running.as_str()], RawWorkflow::read)
                .sql()?
                .collect::<Result<Vec<_>, _>>()
                .sql()?;
            let mut running = Vec::new();
            for raw in raws {
                running.push(running_workflow(tx, raw.decode())?);
            }
            Ok(running)
        })
        .await
    }

    async fn tasks(&self, id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let id = id.to_string();
        self.read(move |tx| {
            exists(tx, &id)?;
            whole(&id, read_tasks(tx, &id)?)
        })
        .await
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn workflows_to_step(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        let owner = owner.to_string();
        self.read(move |tx| {
            let mut stmt = tx.prepare_cached(TO_STEP_SQL).sql()?;
            let ids = stmt
                .query_map(params![WorkflowStatus::Running.as_str(), owner], |row| {
                    row.get(0)
                })
                .sql()?
                .collect::<Result<Vec<String>, _>>()
                .sql()?;
            Ok(ids)
        })
        .await
    }

    async fn claim_workflows(
        &self,
        lease: &LeaseRequest,
        limit: usize,
    ) -> Result<Vec<RunningWorkflow>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let lease = lease.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // One write: SQLite has one writer at a time (across processes), so no other claim
        // sees these rows free between the choice and the update.
        self.write(move |tx| {
            let now = now_ms();
            let mut ids = tx
                .prepare_cached(CLAIM_SQL)
                .sql()?
                .query_map(
                    params![
                        lease.owner,
                        lease_until(now, lease.duration_ms),
                        WorkflowStatus::Running.as_str(),
                        stored_now(now),
                        limit,
                    ],
                    |row| row.get::<_, String>(0),
                )
                .sql()?
                .collect::<Result<Vec<_>, _>>()
                .sql()?;
            ids.sort_unstable();
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                let row =
                    find_workflow(tx, &id)?.ok_or_else(|| StoreError::NotFound(id.clone()))?;
                claimed.push(running_workflow(tx, row)?);
            }
            Ok(claimed)
        })
        .await
    }

    async fn renew_leases(&self, lease: &LeaseRequest) -> Result<Vec<(String, u64)>, StoreError> {
        let lease = lease.clone();
        self.write(move |tx| {
            let mut held = tx
                .prepare_cached(
                    "UPDATE workflows SET lease_until_ms = ?2 WHERE owner = ?1 AND status = ?3 \
                     RETURNING id, lease_epoch",
                )
                .sql()?
                .query_map(
                    params![
                        lease.owner,
                        lease_until(now_ms(), lease.duration_ms),
                        WorkflowStatus::Running.as_str(),
                    ],
                    |row| Ok((row.get::<_, String>(0)?, uint(row.get(1)?))),
                )
                .sql()?
                .collect::<Result<Vec<_>, _>>()
                .sql()?;
            held.sort_unstable();
            Ok(held)
        })
        .await
    }

    async fn release_lease(&self, id: &str, fence: &Fence) -> Result<bool, StoreError> {
        let (id, fence) = (id.to_string(), fence.clone());
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE workflows SET owner = NULL, lease_until_ms = NULL \
                     WHERE id = ?1 AND owner = ?2 AND lease_epoch = ?3",
                )
                .sql()?
                .execute(params![id, fence.owner, int(fence.epoch)])
                .sql()?;
            Ok(changed > 0)
        })
        .await
    }

    async fn release_leases(&self, owner: &str) -> Result<u64, StoreError> {
        let owner = owner.to_string();
        self.write(move |tx| {
            let released = tx
                .prepare_cached(
                    "UPDATE workflows SET owner = NULL, lease_until_ms = NULL WHERE owner = ?1",
                )
                .sql()?
                .execute([owner])
                .sql()?;
            Ok(released as u64)
        })
        .await
    }

    /// A hint at every commit of another connection to the file (another process's, and
    /// this store's own writes too), from one watcher thread per store shared by its clones.
    /// The thread starts at the first call, reads `PRAGMA data_version` every 2 ms, and
    /// stops when every clone of the store, or every receiver, is dropped. `None` if its
    /// connection cannot be opened.
    fn changes(&self) -> Option<broadcast::Receiver<StoreChange>> {
        let feed = &self.changes;
        let mut watching = feed.watching.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = feed.sender.subscribe();
        if !*watching {
            let (conn, start) = match open_watcher(&self.path) {
                Ok(opened) => opened,
                Err(e) => {
                    tracing::warn!("{}; no change hints", backend(&self.path, e));
                    return None;
                }
            };
            let (weak, sender) = (Arc::downgrade(feed), feed.sender.clone());
            let spawned = std::thread::Builder::new()
                .name("workflow-sqlite-changes".into())
                .spawn(move || watch_changes(conn, start, weak, sender));
            if let Err(e) = spawned {
                tracing::warn!("could not start the SQLite change watcher: {e}; no change hints");
                return None;
            }
            *watching = true;
        }
        Some(receiver)
    }

    async fn history(&self, id: &str) -> Result<Vec<HistoryEvent>, StoreError> {
        let id = id.to_string();
        self.read(move |tx| {
            exists(tx, &id)?;
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, at_ms, event FROM history WHERE workflow_id = ?1 ORDER BY seq",
                )
                .sql()?;
            let rows = stmt
                .query_map([&id], |row| {
                    Ok(RawHistory {
                        seq: integer(row.get_ref(0)?),
                        at_ms: integer(row.get_ref(1)?),
                        event: utf8(row.get_ref(2)?),
                    })
                })
                .sql()?;
            let mut history = Vec::new();
            for row in rows {
                history.push(row.sql()?.decode());
            }
            Ok(history)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract;

    fn lease(owner: &str, duration_ms: u64) -> LeaseRequest {
        LeaseRequest {
            owner: owner.to_string(),
            duration_ms,
        }
    }

    #[tokio::test]
    async fn sqlite_store_keeps_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("wf.db")).unwrap();
        contract::check_all(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_steps_share_transactions_and_a_conflict_spoils_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("wf.db")).unwrap();
        let ids: Vec<String> = (0..200).map(|i| format!("g{i:03}")).collect();
        for id in &ids {
            store
                .create_workflow(contract::new_workflow(id))
                .await
                .unwrap();
        }
        let commit = |id: &str, version: u64| {
            let mut c = contract::commit(id, version);
            c.new_timers = vec![TimerRecord {
                workflow_id: id.to_string(),
                op: OpId(1),
                fire_at_ms: 5,
            }];
            c
        };
        let (transactions_before, writes_before) = store.commit_stats();
        let mut commits: Vec<_> = ids.iter().map(|id| commit(id, 0)).collect();
        // A stale step for g007 in the middle of the crowd.
        commits.insert(100, commit("g007", 9));
        let results =
            futures::future::join_all(commits.into_iter().map(|c| store.commit_step(c))).await;
        let conflicts = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Conflict { .. })))
            .count();
        assert_eq!(conflicts, 1, "{results:?}");
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), ids.len());
        for id in &ids {
            let running = store.load_workflow(id).await.unwrap();
            assert_eq!(running.version, 1, "{id}");
        }
        let timers: usize = store
            .running_workflows()
            .await
            .unwrap()
            .iter()
            .map(|w| w.timers.len())
            .sum();
        assert_eq!(timers, ids.len());
        let (transactions, writes) = store.commit_stats();
        let (transactions, steps) = (transactions - transactions_before, writes - writes_before);
        assert_eq!(steps, ids.len() as u64 + 1);
        assert!(
            transactions < steps,
            "{steps} concurrent steps took {transactions} transactions"
        );
    }

    #[tokio::test]
    async fn r2_4_a_stuck_workflow_is_stepped_again_only_after_a_new_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("wf.db")).unwrap();
        store
            .create_workflow(contract::new_workflow("s"))
            .await
            .unwrap();
        store.commit_step(contract::commit("s", 0)).await.unwrap();
        let fire = |op| Event::TimerFired { op: OpId(op) };
        store.enqueue_event("s", fire(1)).await.unwrap();
        let fault = WorkflowFault::Engine {
            message: "boom".to_string(),
        };
        let held = store
            .claim_workflows(&lease("w", 60_000), 10)
            .await
            .unwrap();
        let fence = held[0].record.lease.as_ref().unwrap().fence();
        let fence = Some(&fence);
        let to_step = || async { store.workflows_to_step("w").await.unwrap() };
        assert_eq!(to_step().await, ["s"]);
        assert!(store.workflows_to_step("other").await.unwrap().is_empty());
        store
            .set_stuck("s", Some(fault.clone()), fence)
            .await
            .unwrap();
        assert!(to_step().await.is_empty(), "not retried at every poll");
        store.enqueue_event("s", fire(2)).await.unwrap();
        assert_eq!(to_step().await, ["s"], "retried at the next event");
        store.set_stuck("s", Some(fault), fence).await.unwrap();
        assert!(to_step().await.is_empty());
        store.set_stuck("s", None, fence).await.unwrap();
        assert_eq!(to_step().await, ["s"]);
    }

    #[tokio::test]
    async fn everything_survives_closing_and_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            contract::terminate_closes(&store).await;
        }
        let store = SqliteStore::open(&path).unwrap();
        contract::after_terminate_closes(&store).await;
        let version: i64 = store
            .conn
            .lock()
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_a_clear_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        let text = b"these are my notes, not a database; ".repeat(200);
        std::fs::write(&path, &text).unwrap();
        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("notes.txt"), "{err}");
        assert!(err.contains("not a workflow database"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), text);
    }

    #[tokio::test]
    async fn a_truncated_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            for i in 0..200 {
                store
                    .create_workflow(contract::new_workflow(&format!("w{i:03}")))
                    .await
                    .unwrap();
            }
            // Fold the WAL into the main file so that truncating it loses pages.
            store
                .conn
                .lock()
                .unwrap()
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 8192, "the database spans several pages");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let result = match SqliteStore::open(&path) {
            Ok(store) => store.list_workflows(None).await.map(|_| ()),
            Err(e) => Err(e),
        };
        let err = result
            .expect_err("half a database cannot be read whole")
            .to_string();
        assert!(err.contains("damaged"), "{err}");
    }

    /// The file has exactly the bytes it had, and no companion file was left beside it.
    fn assert_left_untouched(path: &Path, before: &[u8]) {
        assert!(
            std::fs::read(path).unwrap() == before,
            "{} was rewritten",
            path.display()
        );
        for suffix in ["-wal", "-shm", "-journal"] {
            let beside = companion(path, suffix);
            assert!(!beside.exists(), "{} was left behind", beside.display());
        }
    }

    #[tokio::test]
    async fn another_programs_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE customers (name TEXT); INSERT INTO customers VALUES ('ada');",
            )
            .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("something else") && err.contains("app.sqlite"),
            "{err}"
        );
        assert_left_untouched(&path, &before);
        let conn = Connection::open(&path).unwrap();
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get(0))
            .unwrap();
        assert_eq!(tables, 1, "no workflow tables were added");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "delete", "its journal mode was not changed");
    }

    /// Another program crashed in the middle of a write: its rollback journal is hot. Rolling
    /// it back is that program's business (and writes the file), so it is refused untouched.
    #[tokio::test]
    async fn another_programs_database_with_an_interrupted_write_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let (live, path) = (dir.path().join("live.db"), dir.path().join("app.sqlite"));
        let conn = Connection::open(&live).unwrap();
        conn.execute_batch(
            "CREATE TABLE customers (name TEXT); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
             INSERT INTO customers SELECT 'ada' FROM n; \
             PRAGMA cache_size = 1; BEGIN; UPDATE customers SET name = 'grace';",
        )
        .unwrap();
        // The files as a crash in the middle of the write leaves them.
        std::fs::copy(&live, &path).unwrap();
        std::fs::copy(companion(&live, "-journal"), companion(&path, "-journal")).unwrap();
        drop(conn);
        let before = std::fs::read(&path).unwrap();
        let journal = std::fs::read(companion(&path, "-journal")).unwrap();

        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(
            std::fs::read(&path).unwrap() == before,
            "the file was rewritten"
        );
        assert!(
            std::fs::read(companion(&path, "-journal")).is_ok_and(|now| now == journal),
            "the journal was rolled back"
        );
        assert!(
            err.contains("app.sqlite-journal") && err.contains("left untouched"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_database_from_a_newer_version_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("schema version 99"), "{err}");
        assert_left_untouched(&path, &before);
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "delete", "its journal mode was not changed");
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get(0))
            .unwrap();
        assert_eq!(tables, 0);
    }

    /// Damage only a SQLite file can hold, beside the damage of every SQL store: bytes that
    /// are not UTF-8 and text where a number is due.
    #[tokio::test]
    async fn a_damaged_row_fails_only_its_own_workflow() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("wf.db")).unwrap();
        let more = [
            "d-utf8",
            "d-blob",
            "d-timer",
            "d-flag",
            "d-version",
            "d-state",
        ];
        contract::make_damageable(&store, &more).await;
        store
            .conn
            .lock()
            .unwrap()
            .execute_batch(&format!(
                "{}
                 -- The JSON string \"\\xFF\": with the byte replaced it would decode, as
                 -- another input than the one stored.
                 UPDATE tasks SET input = CAST(X'22FF22' AS TEXT) WHERE workflow_id = 'd-utf8';
                 UPDATE tasks SET input = X'FF00' WHERE workflow_id = 'd-blob';
                 UPDATE timers SET fire_at_ms = 'soon' WHERE workflow_id = 'd-timer';
                 UPDATE tasks SET cancel_requested = 'yes' WHERE workflow_id = 'd-flag';
                 UPDATE workflows SET version = 'v2' WHERE id = 'd-version';
                 UPDATE workflows SET state_name = CAST(X'FF53' AS TEXT) WHERE id = 'd-state';
                 UPDATE workflows SET workflow_type = CAST(X'FF' AS TEXT) WHERE id = 'd-state';",
                contract::DAMAGE_SQL
            ))
            .unwrap();
        let running = contract::damaged_rows_fail_only_their_workflow(&store).await;
        let fault = |id: &str| running[id].damaged.clone().expect(id);
        let message = |id: &str| match fault(id) {
            WorkflowFault::DamagedRecord { what, message } => format!("{what}: {message}"),
            other => panic!("{other:?}"),
        };
        assert!(
            message("d-utf8").starts_with("activity task op#4 input: it is not UTF-8"),
            "{}",
            message("d-utf8")
        );
        assert!(
            message("d-blob").starts_with("activity task op#4 input: it is not UTF-8"),
            "{}",
            message("d-blob")
        );
        assert!(
            message("d-timer").starts_with("timer op#5 deadline: it holds \"soon\""),
            "{}",
            message("d-timer")
        );
        assert!(
            message("d-flag").starts_with("activity task op#4 cancel flag:"),
            "{}",
            message("d-flag")
        );
        assert!(
            message("d-version").starts_with("version: it holds \"v2\""),
            "{}",
            message("d-version")
        );
        assert!(matches!(
            store.load_for_step("d-version", None).await,
            Err(StoreError::Damaged { .. })
        ));
        // Text that is only shown reads with the bytes replaced, and damages nothing.
        let state = &running["d-state"];
        assert_eq!(state.damaged, None);
        assert_eq!(
            (
                state.record.state_name.as_str(),
                state.record.workflow_type.as_str()
            ),
            ("\u{fffd}S", "\u{fffd}")
        );
        store
            .conn
            .lock()
            .unwrap()
            .execute_batch("UPDATE history SET at_ms = 'later' WHERE workflow_id = 'd-good'")
            .unwrap();
        let history = store.history("d-good").await.unwrap();
        assert!(
            history.iter().all(
                |e| matches!(&e.kind, EventKind::Damaged { message } if message.contains("later"))
            ),
            "{history:?}"
        );
    }

    #[tokio::test]
    async fn a_snapshot_that_is_not_json_does_not_hide_other_workflows() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("wf.db")).unwrap();
        store
            .create_workflow(contract::new_workflow("good"))
            .await
            .unwrap();
        store
            .create_workflow(contract::new_workflow("bad"))
            .await
            .unwrap();
        store
            .conn
            .lock()
            .unwrap()
            .execute(
                "UPDATE workflows SET snapshot = '{oops' WHERE id = 'bad'",
                [],
            )
            .unwrap();
        let running = store.running_workflows().await.unwrap();
        assert_eq!(running.len(), 2);
        let bad = store.load_workflow("bad").await.unwrap();
        assert_eq!(bad.snapshot, serde_json::json!("{oops").into());
    }
    /// Two handles on one file stand for two worker processes (each has its own
    /// connections and commit thread); several tasks on each claim until nothing is left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claims_from_two_handles_on_one_file_never_hand_out_a_workflow_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.db");
        let a = SqliteStore::open(&path).unwrap();
        let b = SqliteStore::open(&path).unwrap();
        let ids: Vec<String> = (0..300).map(|i| format!("c{i:03}")).collect();
        for id in &ids {
            a.create_workflow(contract::new_workflow(id)).await.unwrap();
        }
        let claimers: Vec<_> = (0..8)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    let owner = format!("worker-{i}");
                    let mut got = Vec::new();
                    loop {
                        let claimed = store
                            .claim_workflows(&lease(&owner, 60_000), 7)
                            .await
                            .unwrap();
                        if claimed.is_empty() {
                            return got;
                        }
                        for w in claimed {
                            let l = w.record.lease.unwrap();
                            assert_eq!((l.owner.as_str(), l.epoch), (owner.as_str(), 1));
                            got.push((w.record.id, owner.clone()));
                        }
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for claimer in claimers {
            all.extend(claimer.await.unwrap());
        }
        let mut claimed: Vec<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
        claimed.sort_unstable();
        let before = claimed.len();
        claimed.dedup();
        assert_eq!(before, claimed.len(), "a workflow was claimed twice");
        assert_eq!(claimed, ids.iter().map(String::as_str).collect::<Vec<_>>());
        // Each worker sees exactly its own, from either handle.
        for (id, owner) in all.iter().take(20) {
            assert_eq!(
                b.load_workflow(id).await.unwrap().lease.unwrap().owner,
                *owner
            );
            assert!(a.workflows_to_step(owner).await.unwrap().contains(id));
        }
    }

    #[tokio::test]
    async fn a_taken_over_handle_cannot_commit_and_the_row_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.db");
        let a = SqliteStore::open(&path).unwrap();
        let b = SqliteStore::open(&path).unwrap();
        // Worker A starts a workflow on its own lease, and lets the lease expire (frozen).
        let mut new = contract::new_workflow("x");
        new.lease = Some(lease("a", 0));
        a.create_workflow(new).await.unwrap();
        let mut first = contract::commit("x", 0);
        first.new_tasks = vec![TaskRecord {
            workflow_id: "x".to_string(),
            op: OpId(1),
            activity: "act".to_string(),
            input: serde_json::json!(null),
            options: crate::ActivityOptions::default(),
            attempt: 1,
            heartbeat_details: None,
            last_heartbeat_ms: None,
            scheduled_at_ms: 20,
            cancel_requested: false,
            notify_running: false,
        }];
        first.fence = Some(Fence {
            owner: "a".to_string(),
            epoch: 1,
        });
        a.commit_step(first).await.unwrap();
        // Worker B takes it over.
        let taken = b.claim_workflows(&lease("b", 60_000), 10).await.unwrap();
        assert_eq!(taken.len(), 1);
        let b_lease = taken[0].record.lease.clone().unwrap();
        assert_eq!((b_lease.owner.as_str(), b_lease.epoch), ("b", 2));
        assert_eq!(taken[0].tasks.len(), 1, "the claim hands over the tasks");
        let before = b.load_workflow("x").await.unwrap();
        let history_before = b.history("x").await.unwrap();

        // A wakes up and tries to commit its next step, then to write for its activity.
        let a_fence = Fence {
            owner: "a".to_string(),
            epoch: 1,
        };
        let mut stale = contract::commit("x", 1);
        stale.fence = Some(a_fence.clone());
        stale.close = Some(WorkflowClose::Completed {
            result: serde_json::json!("twice"),
        });
        let lost = |r: Result<_, StoreError>| match r {
            Err(StoreError::LeaseLost { holder, .. }) => {
                assert_eq!(holder, Some(("b".to_string(), 2)));
            }
            other => panic!("expected LeaseLost, got {other:?}"),
        };
        lost(a.commit_step(stale).await.map(|_| ()));
        lost(a.record_task_attempt("x", OpId(1), 2, Some(&a_fence)).await);
        lost(
            a.record_heartbeat("x", OpId(1), Some(serde_json::json!(1)), 40, Some(&a_fence))
                .await,
        );
        lost(
            a.set_stuck(
                "x",
                Some(WorkflowFault::Engine {
                    message: "late".into(),
                }),
                Some(&a_fence),
            )
            .await,
        );
        assert_eq!(
            a.load_workflow("x").await.unwrap(),
            before,
            "the row is unchanged"
        );
        assert_eq!(a.history("x").await.unwrap(), history_before);
        assert_eq!(a.tasks("x").await.unwrap(), taken[0].tasks);
        assert!(a
            .renew_leases(&lease("a", 60_000))
            .await
            .unwrap()
            .is_empty());
        assert!(a.workflows_to_step("a").await.unwrap().is_empty());

        // B's own commit goes through, and closing ends its lease.
        let mut next = contract::commit("x", 1);
        next.fence = Some(b_lease.fence());
        next.close = Some(WorkflowClose::Completed {
            result: serde_json::json!("once"),
        });
        assert_eq!(b.commit_step(next).await.unwrap(), 2);
        let closed = a.load_workflow("x").await.unwrap();
        assert_eq!(
            (closed.status, closed.lease),
            (WorkflowStatus::Completed, None)
        );
        assert!(b
            .claim_workflows(&lease("c", 60_000), 10)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_hear_another_handles_write_and_the_watcher_stops_with_the_store() {
        use broadcast::error::{RecvError, TryRecvError};
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.db");
        let a = SqliteStore::open(&path).unwrap();
        let b = SqliteStore::open(&path).unwrap();
        a.create_workflow(contract::new_workflow("e"))
            .await
            .unwrap();
        let mut rx = a.changes().expect("SQLite gives change hints");
        let mut second = a.clone().changes().unwrap();
        // Quiet while nobody writes.
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        b.enqueue_event("e", Event::TimerFired { op: OpId(1) })
            .await
            .unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        assert_eq!(heard.expect("a hint within 1 s").unwrap(), StoreChange::Any);
        assert_eq!(
            second.recv().await.unwrap(),
            StoreChange::Any,
            "one thread, every receiver"
        );

        // With no receiver left the thread stops; the next subscriber starts another.
        drop((rx, second));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            !*a.changes.watching.lock().unwrap(),
            "stopped without receivers"
        );
        let mut rx = a.changes().unwrap();
        b.enqueue_event("e", Event::TimerFired { op: OpId(2) })
            .await
            .unwrap();
        let heard = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        assert_eq!(heard.expect("a hint within 1 s").unwrap(), StoreChange::Any);

        // Dropping the store ends the thread, which held the channel's last sender.
        drop(a);
        let closed = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match rx.recv().await {
                    Err(RecvError::Closed) => return,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the watcher thread outlived its store");
    }

    #[tokio::test]
    async fn a_file_at_schema_version_2_is_migrated_and_its_workflows_are_claimable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // As the build before leases left it: two migrations, a running workflow with
            // an event waiting, a closed one.
            let conn = Connection::open(&path).unwrap();
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
                .unwrap();
            for (i, sql) in MIGRATIONS[..2].iter().enumerate() {
                conn.execute_batch(sql).unwrap();
                conn.pragma_update(None, "user_version", i as i64 + 1)
                    .unwrap();
            }
            conn.execute_batch(
                "INSERT INTO workflows (id, workflow_type, schema_fingerprint, status, \
                   snapshot, version, state_name, created_at_ms, updated_at_ms) VALUES \
                   ('old', 'wf', 1, 'running', '{\"machine\":\"Next\"}', 3, 'Next', 1, 2), \
                   ('done', 'wf', 1, 'completed', '{}', 4, 'End', 1, 2);",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO inbox (workflow_id, event) VALUES ('old', ?1)",
                [json(&Event::TimerFired { op: OpId(7) }).unwrap()],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let version: i64 = store
            .conn
            .lock()
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64, "every migration applied");
        let old = store.load_workflow("old").await.unwrap();
        assert_eq!((old.version, old.lease), (3, None));
        let claimed = store
            .claim_workflows(&lease("w", 60_000), 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "only the running one");
        let w = &claimed[0];
        assert_eq!(w.record.id, "old");
        let l = w.record.lease.as_ref().unwrap();
        assert_eq!((l.owner.as_str(), l.epoch), ("w", 1));
        assert!(l.until_ms > now_ms());
        assert_eq!(w.inbox.len(), 1);
        assert_eq!(store.workflows_to_step("w").await.unwrap(), ["old"]);
        // Opening again applies nothing twice.
        drop(store);
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(
            again
                .load_workflow("old")
                .await
                .unwrap()
                .lease
                .unwrap()
                .epoch,
            1
        );
    }

    #[test]
    fn claims_and_a_workers_queries_use_the_lease_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("wf.db")).unwrap();
        let conn = store.conn.lock().unwrap();
        let plan = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt
                .query_map(params, |row| row.get::<_, String>(3))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            rows.join("; ")
        };
        let claim = plan(CLAIM_SQL, &[&"w", &10, &"running", &5, &3]);
        assert!(
            claim.contains("workflows_by_lease (status=? AND <expr><?)"),
            "a claim reads only the claimable range: {claim}"
        );
        let to_step = plan(TO_STEP_SQL, &[&"running", &"w"]);
        assert!(
            to_step.contains("workflows_by_owner (owner=? AND status=?)"),
            "{to_step}"
        );
        assert!(!to_step.contains("TEMP B-TREE"), "{to_step}");
    }

    /// Opens `handles` stores on `path` at the same moment, each on its own thread.
    fn open_at_once(path: &Path, handles: usize) -> Vec<Result<SqliteStore, StoreError>> {
        let barrier = Arc::new(std::sync::Barrier::new(handles));
        let openers: Vec<_> = (0..handles)
            .map(|_| {
                let (path, barrier) = (path.to_path_buf(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    SqliteStore::open(&path)
                })
            })
            .collect();
        openers.into_iter().map(|t| t.join().unwrap()).collect()
    }

    /// Switching a new file to WAL writes its header from inside a read transaction, and
    /// SQLite does not wait for another connection's write lock there (waiting could
    /// deadlock): it answers "database is locked" at once. Opening waits and tries again.
    #[test]
    fn an_open_while_another_connection_is_writing_the_new_file_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.db");
        let creating = Connection::open(&path).unwrap();
        creating.execute_batch("BEGIN IMMEDIATE").unwrap();
        let done = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            creating.execute_batch("COMMIT").unwrap();
        });
        let opened = SqliteStore::open(&path);
        done.join().unwrap();
        let version: i64 = opened
            .unwrap()
            .conn
            .lock()
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    /// The same race among many handles creating one file at the same moment (it strikes a
    /// round in a few dozen): every one of them opens it.
    #[test]
    fn many_handles_creating_one_new_file_at_once_all_open_it() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..150 {
            let path = dir.path().join(format!("race-{round}.db"));
            for opened in open_at_once(&path, 8) {
                if let Err(e) = opened {
                    panic!("round {round}: {e}");
                }
            }
        }
    }

    /// Waits (bounded) until the last connection of a dropped store has closed: SQLite then
    /// folds the WAL into the file and removes it.
    fn wait_until_closed(path: &Path) {
        let wal = companion(path, "-wal");
        for _ in 0..1000 {
            if !wal.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!(
            "{} is still there 10 s after the store was dropped",
            wal.display()
        );
    }

    #[tokio::test]
    async fn another_databases_wal_beside_ours_is_refused_and_the_file_is_left_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            for i in 0..300 {
                store
                    .create_workflow(contract::new_workflow(&format!("w{i:03}")))
                    .await
                    .unwrap();
            }
        }
        wait_until_closed(&path);
        // Another program's database in WAL mode, its last writes still in its -wal.
        let other = dir.path().join("other.db");
        let conn = Connection::open(&other).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; \
             CREATE TABLE customers (name TEXT); INSERT INTO customers VALUES ('ada');",
        )
        .unwrap();
        std::fs::copy(companion(&other, "-wal"), companion(&path, "-wal")).unwrap();
        drop(conn);
        let before = std::fs::read(&path).unwrap();
        assert!(before.len() > 64 * 1024, "{} bytes", before.len());

        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("something else") && err.contains("wf.db"),
            "{err}"
        );
        assert!(
            std::fs::read(&path).unwrap() == before,
            "the refused file was rewritten"
        );
        assert!(err.contains("wf.db-wal"), "the stray file is named: {err}");
        // Its workflows are all there once the stray file is moved away.
        std::fs::remove_file(companion(&path, "-wal")).unwrap();
        let _ = std::fs::remove_file(dir.path().join("wf.db-shm"));
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.list_workflows(None).await.unwrap().len(), 300);
    }

    fn assert_refused_write(err: StoreError, path: &Path) {
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()),
            "the file is named: {message}"
        );
        assert!(
            message.contains("deleted or replaced") && message.contains("Restart the worker"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_write_after_the_file_was_deleted_fails_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.db");
        let store = SqliteStore::open(&path).unwrap();
        store
            .create_workflow(contract::new_workflow("before"))
            .await
            .unwrap();
        for suffix in ["", "-wal", "-shm"] {
            std::fs::remove_file(dir.path().join(format!("wf.db{suffix}"))).unwrap();
        }
        let err = store
            .create_workflow(contract::new_workflow("after"))
            .await
            .unwrap_err();
        assert_refused_write(err, &path);
        let err = store
            .commit_step(contract::commit("before", 0))
            .await
            .unwrap_err();
        assert_refused_write(err, &path);
        assert!(!path.exists(), "nothing created the file again");
        assert!(
            store.changes().is_none() && !path.exists(),
            "the change watcher does not create the file again"
        );
    }

    #[tokio::test]
    async fn a_write_after_the_file_was_replaced_fails_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.db");
        let store = SqliteStore::open(&path).unwrap();
        store
            .create_workflow(contract::new_workflow("before"))
            .await
            .unwrap();
        let other = dir.path().join("restored.db");
        drop(SqliteStore::open(&other).unwrap());
        wait_until_closed(&other);
        std::fs::rename(&other, &path).unwrap();
        let err = store
            .commit_step(contract::commit("before", 0))
            .await
            .unwrap_err();
        assert_refused_write(err, &path);
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_database_and_its_wal_and_shm_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.db");
        let store = SqliteStore::open(&path).unwrap();
        store
            .create_workflow(contract::new_workflow("w"))
            .await
            .unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = dir.path().join(format!("wf.db{suffix}"));
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }

        // Chosen for a file shared with the owner's group (less a umask of 027 or 022).
        let grouped = dir.path().join("grouped.db");
        let store =
            SqliteStore::open_with(&grouped, SqliteOptions::default().with_file_mode(0o640))
                .unwrap();
        store
            .create_workflow(contract::new_workflow("w"))
            .await
            .unwrap();
        for suffix in ["", "-wal", "-shm"] {
            assert_eq!(mode(&companion(&grouped, suffix)), 0o640, "{suffix}");
        }

        // An existing file keeps the permissions it has.
        let shared = dir.path().join("shared.db");
        std::fs::write(&shared, b"").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = SqliteStore::open(&shared).unwrap();
        store
            .create_workflow(contract::new_workflow("w"))
            .await
            .unwrap();
        assert_eq!(mode(&shared), 0o644);
    }

    /// Overwrites every page of the file after the first with bytes that are no b-tree page.
    fn damage_pages(path: &Path) {
        use std::io::{Seek, SeekFrom, Write};
        let len = std::fs::metadata(path).unwrap().len();
        assert!(len > 8192, "the database spans several pages");
        let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.seek(SeekFrom::Start(4096)).unwrap();
        file.write_all(&vec![0xA5; (len - 4096) as usize]).unwrap();
        file.sync_all().unwrap();
    }

    #[tokio::test]
    async fn reads_and_writes_of_a_file_damaged_after_opening_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.db");
        let store = SqliteStore::open(&path).unwrap();
        for i in 0..200 {
            store
                .create_workflow(contract::new_workflow(&format!("w{i:03}")))
                .await
                .unwrap();
        }
        store
            .conn
            .lock()
            .unwrap()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        damage_pages(&path);
        let named = |err: StoreError| {
            let message = err.to_string();
            assert!(
                message.contains(&path.display().to_string()) && message.contains("damaged"),
                "{message}"
            );
        };
        named(store.list_workflows(None).await.unwrap_err());
        named(store.load_workflow("w100").await.unwrap_err());
        named(store.history("w100").await.unwrap_err());
        named(
            store
                .create_workflow(contract::new_workflow("new"))
                .await
                .unwrap_err(),
        );
    }
}
