//! Group commit of metric values: concurrent small writes share transactions.
//!
//! Handlers send their writes over a channel to one writer task. The task takes every write
//! waiting in the channel, up to [`MAX_GROUP_ROWS`] values, checks each and commits the valid
//! ones in one transaction, then sends each handler its outcome. While a group commits, the
//! next one gathers in the channel, so the busier the server, the larger the groups. A lone
//! write commits at once, without waiting for company.
//!
//! On a SQLite file the writer is a thread of its own that drives a [`SqliteCommitter`], so a
//! group costs one thread hand-off each way instead of one per statement. On PostgreSQL and
//! in-memory SQLite it is a task that commits through [`Store::log_metric_group`].

use crate::store::{MetricWrite, NewMetric, RunsAccepting, SqliteCommitter, Store, StoreError};
use sea_orm::DbErr;
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Most metric values committed in one transaction. A single write larger than this commits
/// alone. Larger groups save little per row, and keep SQLite's write lock longer.
const MAX_GROUP_ROWS: usize = 4096;

/// Writes that may wait in the channel. When it is full, handlers wait to send, which slows
/// clients down instead of growing memory.
const CHANNEL_CAPACITY: usize = 8192;

/// Writer of metric values of runs. A write returns once its values are committed.
#[derive(Debug)]
pub struct MetricWriter {
    sender: mpsc::Sender<Message>,
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
            worker: Mutex::new(Some(Worker::Task(task))),
        }
    }

    /// Starts the writer thread. The store stays with it only to keep the pool open as long as
    /// the thread writes beside it.
    fn start_thread(committer: SqliteCommitter, store: Store) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("metric-writer".to_owned())
            .spawn(move || {
                run_thread(committer, receiver);
                drop(store);
            })?;
        Ok(Self {
            sender,
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
        let (reply, outcome) = oneshot::channel();
        let write = MetricWrite {
            run_id,
            values: metrics,
            accepts,
        };
        let message = Message::Write(PendingWrite { write, reply });
        if self.sender.send(message).await.is_err() {
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
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
/// gone.
fn run_thread(mut committer: SqliteCommitter, mut receiver: mpsc::Receiver<Message>) {
    let mut carried: Option<PendingWrite> = None;
    let mut stop_replies = Vec::new();
    loop {
        let first = match carried.take() {
            Some(write) => write,
            None => match receiver.blocking_recv() {
                Some(Message::Write(write)) => write,
                Some(Message::Stop(reply)) => {
                    receiver.close();
                    stop_replies.push(reply);
                    continue;
                }
                None => break,
            },
        };
        let mut group = vec![first];
        carried = fill_group(&mut group, &mut receiver, &mut stop_replies);
        let (writes, replies) = split(group);
        let outcome = committer.commit(&writes);
        reply_all(&writes, replies, outcome);
    }
    tracing::debug!("metric writer stopped");
    for reply in stop_replies {
        let _ = reply.send(());
    }
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
