//! Group commit of metric values: concurrent small writes share transactions.
//!
//! Handlers send their writes over a channel to one writer task. The task takes every write
//! waiting in the channel, up to [`MAX_GROUP_ROWS`] values, checks each and commits the valid
//! ones in one transaction, then sends each handler its outcome. While a group commits, the
//! next one gathers in the channel, so the busier the server, the larger the groups. A lone
//! write commits at once, without waiting for company.
//!
//! On a SQLite file the writer is a thread of its own that drives a [`SqliteCommitter`], so a
//! group costs one thread hand-off each way instead of one per statement. When that thread is
//! idle and nothing waits in the channel, a small write skips both hand-offs: the handler
//! takes the committer and commits on its own thread. If another connection has SQLite's write
//! lock, the write goes through the channel instead. The log's checkpoints stay on the writer
//! thread, because they can wait on `fsync`. On PostgreSQL and in-memory SQLite the writer is a
//! task that commits through [`Store::log_metric_group`].
//!
//! A handler's own commit stages the values ([`SqliteCommitter::stage_unless_busy`]): they are
//! committed to a table of one page's worth of writes, and moved into `metrics` later, in one
//! transaction for many writes. A lone client's write then costs a commit of one page and no
//! thread wake-up. The writer thread moves staged values with its next group, once
//! [`MOVE_STAGED_ROWS`] are staged, and [`MOVE_STAGED_AFTER`] after the first one. It also moves
//! them before any request that may read metrics: the middleware [`settle_staged`] runs before
//! every route but the metric writes, so a client always reads the values it logged.

use super::error::{ApiError, ErrorCode};
use super::state::AppState;
use crate::store::{MetricWrite, NewMetric, RunsAccepting, SqliteCommitter, Store, StoreError};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sea_orm::DbErr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Most metric values committed in one transaction. A single write larger than this commits
/// alone. Larger groups save little per row, and keep SQLite's write lock longer.
const MAX_GROUP_ROWS: usize = 4096;

/// Writes that may wait in the channel. When it is full, handlers wait to send, which slows
/// clients down instead of growing memory.
const CHANNEL_CAPACITY: usize = 8192;

/// Most values of a write that a handler commits on its own thread. A larger write would block
/// a runtime thread too long, so it goes to the writer thread.
const MAX_INLINE_ROWS: usize = 64;

/// Staged values at which a handler requests their move into `metrics` from the writer thread.
const MOVE_STAGED_ROWS: usize = 1024;

/// Maximum time a staged value waits to be moved when no request that reads metrics and no
/// group commit comes first. Readers of the database file outside the server see it then.
const MOVE_STAGED_AFTER: Duration = Duration::from_millis(50);

/// The writer thread's committer, which handlers borrow while the thread is idle. It is `None`
/// once the thread has stopped.
type SharedCommitter = Arc<Mutex<Option<SqliteCommitter>>>;

/// Writer of metric values of runs. A write returns once its values are committed.
#[derive(Debug)]
pub struct MetricWriter {
    sender: mpsc::Sender<Message>,
    /// The committer of the writer thread, on a SQLite file.
    committer: Option<SharedCommitter>,
    /// Whether the writer thread has writes in hand, from taking them off the channel until it
    /// replies. Handlers then leave the committer to it, so it cannot be starved.
    thread_busy: Arc<AtomicBool>,
    /// The count of staged values, on a SQLite file.
    staged: Option<Arc<AtomicUsize>>,
    /// Whether a timer will ask the writer thread to move the staged values.
    move_timer_set: Arc<AtomicBool>,
    worker: Mutex<Option<Worker>>,
}

/// The committer of the groups: a tokio task, or a thread of its own on a SQLite file.
#[derive(Debug)]
enum Worker {
    Task(JoinHandle<()>),
    Thread(std::thread::JoinHandle<()>),
}

/// Message from a handler to the writer task.
#[derive(Debug)]
enum Message {
    /// Values to commit, and where to send the outcome.
    Write(PendingWrite),
    /// Commit everything sent so far, stop, and then reply.
    Stop(oneshot::Sender<()>),
    /// A handler's commit left the write-ahead log large: checkpoint it.
    Checkpoint,
    /// Move the staged values into `metrics`, then send the outcome if a reply is given.
    MoveStaged(Option<SettleReply>),
}

/// Channel end on which a request waiting for the staged values to move receives the outcome.
type SettleReply = oneshot::Sender<Result<(), StoreError>>;

#[derive(Debug)]
struct PendingWrite {
    write: MetricWrite,
    reply: Reply,
}

impl MetricWriter {
    /// Starts the writer on `store`. Must be called inside a tokio runtime.
    pub fn start(store: Store) -> Self {
        match store.sqlite_committer() {
            Some(Ok(committer)) => match Self::start_thread(committer, store.clone()) {
                Ok(writer) => return writer,
                Err(error) => {
                    tracing::warn!(cause = %error, "metric writer falls back to the pool");
                }
            },
            Some(Err(error)) => {
                tracing::warn!(cause = %error, "metric writer falls back to the pool");
            }
            None => {}
        }
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let task = tokio::spawn(run_writer(store, receiver));
        Self {
            sender,
            committer: None,
            thread_busy: Arc::new(AtomicBool::new(false)),
            staged: None,
            move_timer_set: Arc::new(AtomicBool::new(false)),
            worker: Mutex::new(Some(Worker::Task(task))),
        }
    }

    /// Starts the writer thread. The store stays with it only to keep the pool open as long as
    /// the thread writes beside it.
    fn start_thread(committer: SqliteCommitter, store: Store) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let staged = committer.staged_rows();
        let shared: SharedCommitter = Arc::new(Mutex::new(Some(committer)));
        let thread_busy = Arc::new(AtomicBool::new(false));
        let writer = WriterThread {
            committer: shared.clone(),
            busy: thread_busy.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("metric-writer".to_owned())
            .spawn(move || {
                run_thread(&writer, receiver);
                drop(store);
            })
            .map_err(|error| {
                let message = format!("cannot start the metric writer thread: {error}");
                StoreError::Database(DbErr::Custom(message))
            })?;
        Ok(Self {
            sender,
            committer: Some(shared),
            thread_busy,
            staged: Some(staged),
            move_timer_set: Arc::new(AtomicBool::new(false)),
            worker: Mutex::new(Some(Worker::Thread(thread))),
        })
    }

    /// Records `metrics` of `run_id` and returns once they are committed. Fails with
    /// [`StoreError::RunNotFound`] when the run does not exist,
    /// [`StoreError::StepRunNotInRun`] when a value names a step run of another run, and
    /// [`StoreError::RunEnded`] or [`StoreError::RunDeleted`] when `accepts` excludes the
    /// run.
    pub async fn log_metrics(
        &self,
        run_id: String,
        metrics: Vec<NewMetric>,
        accepts: RunsAccepting,
    ) -> Result<(), StoreError> {
        let write = MetricWrite {
            run_id,
            values: metrics,
            accepts,
        };
        if let Some(outcome) = self.commit_inline(&write) {
            return outcome;
        }

        let (reply, outcome) = oneshot::channel();
        let message = Message::Write(PendingWrite { write, reply });
        if self.sender.send(message).await.is_err() {
            return Err(stopped());
        }
        outcome.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Stages `write` on the calling thread when the writer thread is idle, nothing waits in the
    /// channel, the write is small and no other connection holds SQLite's write lock. Returns
    /// `None` when the write must go through the channel.
    fn commit_inline(&self, write: &MetricWrite) -> Option<Result<(), StoreError>> {
        let shared = self.committer.as_ref()?;
        let queued = self.sender.capacity() < self.sender.max_capacity();
        let thread_busy = self.thread_busy.load(Ordering::Acquire);
        if write.values.len() > MAX_INLINE_ROWS || queued || thread_busy || self.sender.is_closed()
        {
            return None;
        }
        let mut guard = match shared.try_lock() {
            Ok(guard) => guard,
            // A dropped transaction rolls back, so the connection outlives a panicked holder.
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        let committer = guard.as_mut()?;
        let outcome = committer.stage_unless_busy(write);
        let checkpoint = committer.wal_is_large();
        drop(guard);

        // A full channel means the thread is busy: its next group checks the log and moves the
        // staged values.
        if checkpoint {
            let _ = self.sender.try_send(Message::Checkpoint);
        }
        self.schedule_move();
        match outcome {
            Ok(Some(outcome)) => Some(outcome),
            Ok(None) => None,
            Err(error) => {
                tracing::error!(cause = %error, rows = write.values.len(), "metric commit failed");
                Some(Err(error))
            }
        }
    }

    /// Asks the writer thread to move the staged values: at once when [`MOVE_STAGED_ROWS`] are
    /// staged, otherwise [`MOVE_STAGED_AFTER`] from now unless a timer is already set.
    fn schedule_move(&self) {
        let Some(staged) = &self.staged else {
            return;
        };
        let rows = staged.load(Ordering::Acquire);
        if rows >= MOVE_STAGED_ROWS {
            let _ = self.sender.try_send(Message::MoveStaged(None));
            return;
        }
        if rows == 0 || self.move_timer_set.swap(true, Ordering::AcqRel) {
            return;
        }
        let sender = self.sender.clone();
        let timer_set = self.move_timer_set.clone();
        tokio::spawn(async move {
            tokio::time::sleep(MOVE_STAGED_AFTER).await;
            timer_set.store(false, Ordering::Release);
            let _ = sender.try_send(Message::MoveStaged(None));
        });
    }

    /// Returns once every value staged so far is in `metrics`, where every reader sees it.
    /// Returns at once when nothing is staged.
    pub async fn settle(&self) -> Result<(), StoreError> {
        let Some(staged) = &self.staged else {
            return Ok(());
        };
        if staged.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let (reply, outcome) = oneshot::channel();
        if self
            .sender
            .send(Message::MoveStaged(Some(reply)))
            .await
            .is_err()
        {
            return Err(stopped());
        }
        outcome.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Commits every write already accepted, then stops taking new ones.
    pub async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.sender.send(Message::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let failed = match worker {
            Some(Worker::Task(task)) => task.await.is_err(),
            Some(Worker::Thread(thread)) => {
                let joined = tokio::task::spawn_blocking(move || thread.join()).await;
                !matches!(joined, Ok(Ok(())))
            }
            None => false,
        };
        if failed {
            tracing::error!("metric writer failed while stopping");
        }
    }
}

/// Runs the writer thread, which commits groups until a stop request or until every sender is
/// gone, then closes the committer's connection. After each group, and when a handler requests
/// it, the thread checkpoints the log while holding the committer, so no commit starts during
/// the checkpoint.
fn run_thread(writer: &WriterThread, mut receiver: mpsc::Receiver<Message>) {
    let committer = &writer.committer;
    let mut carried: Option<PendingWrite> = None;
    let mut stop_replies = Vec::new();
    // Values that an earlier process staged and never moved.
    move_staged(committer, None);
    loop {
        let first = match carried.take() {
            Some(write) => write,
            None => match receiver.blocking_recv() {
                Some(Message::Write(write)) => {
                    writer.busy.store(true, Ordering::Release);
                    write
                }
                Some(Message::Stop(reply)) => {
                    receiver.close();
                    stop_replies.push(reply);
                    continue;
                }
                Some(Message::Checkpoint) => {
                    if let Some(committer) = lock(committer).as_mut() {
                        committer.checkpoint_if_large();
                    }
                    continue;
                }
                Some(Message::MoveStaged(reply)) => {
                    move_staged(committer, reply);
                    continue;
                }
                None => break,
            },
        };
        let group = take_group(first, &mut receiver, &mut stop_replies);
        carried = group.carried;
        let (writes, replies) = split(group.writes);
        let outcome = commit_on_thread(committer, &writes);
        if carried.is_none() {
            writer.busy.store(false, Ordering::Release);
        }
        settle_all(group.settle_replies, &outcome);
        reply_all(&writes, replies, outcome);
    }
    move_staged(committer, None);
    lock(committer).take();
    tracing::debug!("metric writer stopped");
    for reply in stop_replies {
        let _ = reply.send(());
    }
}

/// State the writer thread shares with the handlers.
struct WriterThread {
    committer: SharedCommitter,
    busy: Arc<AtomicBool>,
}

/// Commits a group through the shared committer, then checkpoints the log when it is large.
/// The replies wait for the checkpoint, as they would for SQLite's automatic one.
fn commit_on_thread(
    committer: &SharedCommitter,
    writes: &[MetricWrite],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut guard = lock(committer);
    let committer = guard.as_mut().ok_or_else(stopped)?;
    let outcome = committer.commit(writes);
    committer.checkpoint_if_large();
    outcome
}

/// Moves the staged values into `metrics`, checkpoints the log when it is large, and sends the
/// outcome to `reply` if there is one.
fn move_staged(committer: &SharedCommitter, reply: Option<SettleReply>) {
    let mut guard = lock(committer);
    let outcome = match guard.as_mut() {
        Some(committer) => {
            let outcome = committer.move_staged();
            committer.checkpoint_if_large();
            outcome
        }
        None => Err(stopped()),
    };
    drop(guard);
    if let Err(error) = &outcome {
        tracing::error!(cause = %error, "moving staged metric values failed");
    }
    if let Some(reply) = reply {
        let _ = reply.send(outcome);
    }
}

/// Locks the committer. A handler that panicked while holding it left no transaction open,
/// because a dropped transaction rolls back, so the connection stays usable.
fn lock(committer: &SharedCommitter) -> MutexGuard<'_, Option<SqliteCommitter>> {
    committer.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the writer task, which commits groups until a stop request or until every sender is
/// gone.
async fn run_writer(store: Store, mut receiver: mpsc::Receiver<Message>) {
    let mut carried: Option<PendingWrite> = None;
    let mut stop_replies = Vec::new();
    loop {
        let first = match carried.take() {
            Some(write) => write,
            None => match receiver.recv().await {
                Some(Message::Write(write)) => write,
                Some(Message::Stop(reply)) => {
                    // Writes sent before the stop were ahead of it in the channel, so they are
                    // committed. Closing lets the loop take the ones that raced with it, then end.
                    receiver.close();
                    stop_replies.push(reply);
                    continue;
                }
                Some(Message::Checkpoint) => continue,
                // Only a SQLite committer stages values.
                Some(Message::MoveStaged(reply)) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                    continue;
                }
                None => break,
            },
        };
        let group = take_group(first, &mut receiver, &mut stop_replies);
        carried = group.carried;
        settle_all(group.settle_replies, &Ok(Vec::new()));
        commit_group(&store, group.writes).await;
    }
    tracing::debug!("metric writer stopped");
    for reply in stop_replies {
        let _ = reply.send(());
    }
}

/// Writes taken off the channel to commit in one transaction.
struct Group {
    writes: Vec<PendingWrite>,
    /// Requests to move the staged values that came with the writes. The group's commit moves
    /// them, so these requests only wait for its outcome.
    settle_replies: Vec<SettleReply>,
    /// A write that did not fit, which starts the next group.
    carried: Option<PendingWrite>,
}

/// Takes `first` and the writes waiting in the channel behind it, up to [`MAX_GROUP_ROWS`]
/// values. A stop request closes the channel.
fn take_group(
    first: PendingWrite,
    receiver: &mut mpsc::Receiver<Message>,
    stop_replies: &mut Vec<oneshot::Sender<()>>,
) -> Group {
    let mut rows = first.write.values.len();
    let mut group = Group {
        writes: vec![first],
        settle_replies: Vec::new(),
        carried: None,
    };
    while rows < MAX_GROUP_ROWS {
        match receiver.try_recv() {
            Ok(Message::Write(pending)) => {
                let len = pending.write.values.len();
                if rows + len > MAX_GROUP_ROWS {
                    group.carried = Some(pending);
                    break;
                }
                rows += len;
                group.writes.push(pending);
            }
            Ok(Message::Stop(reply)) => {
                receiver.close();
                stop_replies.push(reply);
            }
            // The group's commit checks the log and moves the staged values anyway.
            Ok(Message::Checkpoint) => {}
            Ok(Message::MoveStaged(reply)) => group.settle_replies.extend(reply),
            Err(_) => break,
        }
    }
    group
}

/// Commits one group and sends each of its writes the outcome.
async fn commit_group(store: &Store, group: Vec<PendingWrite>) {
    let (writes, replies) = split(group);
    let outcome = store.log_metric_group(&writes).await;
    reply_all(&writes, replies, outcome);
}

type Reply = oneshot::Sender<Result<(), StoreError>>;

fn split(group: Vec<PendingWrite>) -> (Vec<MetricWrite>, Vec<Reply>) {
    group
        .into_iter()
        .map(|pending| (pending.write, pending.reply))
        .unzip()
}

/// Tells each request waiting for the staged values whether the group's commit, which moved
/// them, succeeded.
fn settle_all(
    replies: Vec<SettleReply>,
    outcome: &Result<Vec<Result<(), StoreError>>, StoreError>,
) {
    for reply in replies {
        let settled = match outcome {
            Ok(_) => Ok(()),
            Err(error) => Err(StoreError::Database(DbErr::Custom(format!(
                "moving the staged metric values failed: {error}"
            )))),
        };
        let _ = reply.send(settled);
    }
}

/// Sends each write of a group its outcome, or the group's error to all of them.
fn reply_all(
    writes: &[MetricWrite],
    replies: Vec<Reply>,
    outcome: Result<Vec<Result<(), StoreError>>, StoreError>,
) {
    match outcome {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(error) => {
            let rows: usize = writes.iter().map(|write| write.values.len()).sum();
            tracing::error!(
                cause = %error,
                requests = writes.len(),
                rows,
                "metric group commit failed"
            );
            for reply in replies {
                let message = format!("the grouped metric commit failed: {error}");
                let _ = reply.send(Err(StoreError::Database(DbErr::Custom(message))));
            }
        }
    }
}

/// Middleware that moves the staged metric values into `metrics` before any request that may
/// read them, so that a client reads every value whose write was acknowledged. The routes that only
/// write metric values skip it, which keeps a lone client's writes staged and cheap.
pub async fn settle_staged(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if writes_metrics_only(&request) {
        return next.run(request).await;
    }
    if let Err(error) = state.writer().settle().await {
        tracing::error!(cause = %error, "request cannot see the staged metric values");
        let message = "recently logged metric values cannot be made readable now; retry the \
             request, and see the server's log if this persists";
        return ApiError::new(ErrorCode::Unavailable, message).into_response();
    }
    next.run(request).await
}

/// Returns whether the request is one of the routes that log metric values and read nothing
/// that staged values change: MLflow's `log-metric` and `log-batch`, and the native API's
/// `POST /api/v1/runs/{run_id}/metrics`.
fn writes_metrics_only(request: &Request) -> bool {
    if request.method() != Method::POST {
        return false;
    }
    let path = request.uri().path();
    let mlflow = ["/api/2.0/mlflow/runs/", "/ajax-api/2.0/mlflow/runs/"]
        .iter()
        .filter_map(|prefix| path.strip_prefix(prefix))
        .any(|rest| rest == "log-metric" || rest == "log-batch");
    let native = path
        .strip_prefix("/api/v1/runs/")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .is_some_and(|run_id| !run_id.is_empty() && !run_id.contains('/'));
    mlflow || native
}

/// Builds the error of a write sent after the writer stopped.
fn stopped() -> StoreError {
    StoreError::Database(DbErr::Custom(
        "the metric writer has stopped because the server is shutting down".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewExternalRun;

    fn values(first_step: i64, count: i64) -> Vec<NewMetric> {
        (first_step..first_step + count)
            .map(|step| NewMetric {
                step_run_id: None,
                key: "loss".to_owned(),
                value: step as f64,
                step,
                timestamp_ms: 1_000,
            })
            .collect()
    }

    async fn open_run(store: &Store) -> String {
        let run = NewExternalRun {
            project: "writer".to_owned(),
            name: "writer".to_owned(),
            user_name: "client".to_owned(),
            started_at: None,
            params: Vec::new(),
            tags: Vec::new(),
        };
        store.create_external_run(run).await.unwrap().run.id
    }

    /// Returns a SQLite store in a temporary directory, a run in it, and a writer that has
    /// logged `count` values of `loss` to the run in one write.
    async fn writer_after_one_write(
        count: i64,
    ) -> (tempfile::TempDir, Store, String, MetricWriter) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path()).await.unwrap();
        let run_id = open_run(&store).await;
        let writer = MetricWriter::start(store.clone());
        writer
            .log_metrics(run_id.clone(), values(0, count), RunsAccepting::Open)
            .await
            .unwrap();
        (dir, store, run_id, writer)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_all_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path()).await.unwrap();
        let run_id = open_run(&store).await;
        let writer = Arc::new(MetricWriter::start(store.clone()));
        assert!(
            writer.committer.is_some(),
            "a SQLite file gets the writer thread"
        );

        let mut tasks = Vec::new();
        for client in 0..16 {
            let writer = writer.clone();
            let run_id = run_id.clone();
            tasks.push(tokio::spawn(async move {
                for request in 0..50 {
                    let step = client * 10_000 + request;
                    let write = values(step, 1);
                    writer
                        .log_metrics(run_id.clone(), write, RunsAccepting::Open)
                        .await
                        .unwrap();
                }
                let batch = values(client * 10_000 + 1_000, 1_000);
                writer
                    .log_metrics(run_id, batch, RunsAccepting::Open)
                    .await
                    .unwrap();
            }));
        }
        // A lost reply or a starved writer thread would hang the clients, so they get a deadline.
        let deadline = std::time::Duration::from_secs(60);
        for task in tasks {
            let joined = tokio::time::timeout(deadline, task).await;
            joined.expect("every write returns").unwrap();
        }
        writer.shutdown().await;
        let after = writer
            .log_metrics(run_id.clone(), values(0, 1), RunsAccepting::Open)
            .await;

        let points = store.metric_history(&run_id, "loss").await.unwrap();
        assert_eq!(points.len(), 16 * (50 + 1_000));
        let error = after.unwrap_err().to_string();
        assert!(error.contains("shutting down"), "{error}");
    }

    #[tokio::test]
    async fn settle_makes_a_staged_write_readable() {
        let (_dir, store, run_id, writer) = writer_after_one_write(3).await;

        let staged = writer.staged.as_ref().unwrap().load(Ordering::Relaxed);
        writer.settle().await.unwrap();
        let points = store.metric_history(&run_id, "loss").await.unwrap();

        // The writer thread may have moved them first, when it started late.
        assert!(staged == 3 || staged == 0, "{staged}");
        assert_eq!(points.len(), 3);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn staged_writes_move_after_a_short_wait() {
        let (_dir, store, run_id, writer) = writer_after_one_write(1).await;

        let mut points = Vec::new();
        for _ in 0..100 {
            points = store.metric_history(&run_id, "loss").await.unwrap();
            if !points.is_empty() {
                break;
            }
            tokio::time::sleep(MOVE_STAGED_AFTER).await;
        }

        assert_eq!(points.len(), 1, "moved within 100 waits");
        writer.shutdown().await;
    }

    #[test]
    fn metric_writes_skip_settling() {
        let request = |method: Method, path: &str| {
            Request::builder()
                .method(method)
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let skips = [
            "/api/2.0/mlflow/runs/log-metric",
            "/ajax-api/2.0/mlflow/runs/log-batch",
            "/api/v1/runs/abc/metrics",
        ];
        let waits = [
            "/api/2.0/mlflow/runs/search",
            "/api/2.0/mlflow/runs/log-parameter",
            "/api/v1/runs/abc/batch",
            "/api/v1/runs//metrics",
            "/api/v1/runs/abc/steps/metrics",
        ];

        for path in skips {
            assert!(writes_metrics_only(&request(Method::POST, path)), "{path}");
        }
        for path in waits {
            assert!(!writes_metrics_only(&request(Method::POST, path)), "{path}");
        }
        let read = request(Method::GET, "/api/v1/runs/abc/metrics");
        assert!(!writes_metrics_only(&read));
    }

    #[tokio::test]
    async fn inline_write_reports_an_unknown_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path()).await.unwrap();
        let writer = MetricWriter::start(store);

        let outcome = writer
            .log_metrics("missing".to_owned(), values(0, 1), RunsAccepting::Open)
            .await;

        assert!(
            matches!(outcome, Err(StoreError::RunNotFound(_))),
            "{outcome:?}"
        );
        writer.shutdown().await;
    }
}
