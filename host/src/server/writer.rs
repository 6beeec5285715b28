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
//! lock, the write goes through the channel instead. A lone client's write then costs the
//! commit and no thread wake-up. The log's checkpoints stay on the writer thread, because they
//! can wait on `fsync`. On PostgreSQL and in-memory SQLite the writer is a task that commits
//! through [`Store::log_metric_group`].

use crate::store::{MetricWrite, NewMetric, RunsAccepting, SqliteCommitter, Store, StoreError};
use sea_orm::DbErr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
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
}

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
            worker: Mutex::new(Some(Worker::Task(task))),
        }
    }

    /// Starts the writer thread. The store stays with it only to keep the pool open as long as
    /// the thread writes beside it.
    fn start_thread(committer: SqliteCommitter, store: Store) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
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

    /// Commits `write` on the calling thread when the writer thread is idle, nothing waits in the
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
        let outcome = committer.commit_unless_busy(std::slice::from_ref(write));
        let checkpoint = committer.wal_is_large();
        drop(guard);

        if checkpoint {
            // A full channel means the thread is busy and checks the log after its next group.
            let _ = self.sender.try_send(Message::Checkpoint);
        }
        match outcome {
            Ok(Some(mut outcomes)) => Some(outcomes.pop().unwrap_or_else(|| {
                let message = "the metric commit returned no outcome for the write".to_owned();
                Err(StoreError::Database(DbErr::Custom(message)))
            })),
            Ok(None) => None,
            Err(error) => {
                tracing::error!(cause = %error, rows = write.values.len(), "metric commit failed");
                Some(Err(error))
            }
        }
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
                None => break,
            },
        };
        let mut group = vec![first];
        carried = fill_group(&mut group, &mut receiver, &mut stop_replies);
        let (writes, replies) = split(group);
        let outcome = commit_on_thread(committer, &writes);
        if carried.is_none() {
            writer.busy.store(false, Ordering::Release);
        }
        reply_all(&writes, replies, outcome);
    }
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
                None => break,
            },
        };
        let mut group = vec![first];
        carried = fill_group(&mut group, &mut receiver, &mut stop_replies);
        commit_group(&store, group).await;
    }
    tracing::debug!("metric writer stopped");
    for reply in stop_replies {
        let _ = reply.send(());
    }
}

/// Adds to `group` the writes waiting in the channel, up to [`MAX_GROUP_ROWS`] values, and
/// returns a write that did not fit. A stop request closes the channel.
fn fill_group(
    group: &mut Vec<PendingWrite>,
    receiver: &mut mpsc::Receiver<Message>,
    stop_replies: &mut Vec<oneshot::Sender<()>>,
) -> Option<PendingWrite> {
    let mut rows: usize = group.iter().map(|pending| pending.write.values.len()).sum();
    while rows < MAX_GROUP_ROWS {
        match receiver.try_recv() {
            Ok(Message::Write(pending)) => {
                let len = pending.write.values.len();
                if rows + len > MAX_GROUP_ROWS {
                    return Some(pending);
                }
                rows += len;
                group.push(pending);
            }
            Ok(Message::Stop(reply)) => {
                receiver.close();
                stop_replies.push(reply);
            }
            // The group's commit checks the log anyway.
            Ok(Message::Checkpoint) => {}
            Err(_) => break,
        }
    }
    None
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
