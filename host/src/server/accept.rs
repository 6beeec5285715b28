//! The accept loop of the server, and the task that serves one connection over HTTP/1.1.
//!
//! Each connection's task runs inside [`Repoll`]. While hyper serves a request with a body, it
//! wakes its own task: the handler requests the body, which signals the connection to read
//! it. Polling for the next request ([`super::connection`]) does the same when the request
//! arrives. tokio handles a task that wakes itself during its poll by queueing it again and
//! waking a sleeping worker thread, in case the queue contains other work. On two CPUs, that
//! thread's wake-up competes with the client for the second CPU and often takes the task over,
//! so every such request pays for a thread hand-off. [`Repoll`] polls its future again at once
//! instead, a few times, before it leaves the wake-up to tokio.

use super::connection::{PollingListener, PollingStream};
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::serve::Listener as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// Maximum polls in a row that [`Repoll`] gives a future that keeps waking itself, before it
/// lets tokio schedule the task. A future that yields on purpose, such as hyper after a long run
/// of pipelined requests, yields after this many polls.
const MAX_POLLS_IN_A_ROW: u32 = 4;

/// Serves `router` on the connections of `listener` until `shutdown` completes, then lets
/// every connection finish the request it is serving, closes it, and returns once all are
/// closed.
pub(super) async fn serve_connections(
    mut listener: PollingListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            (stream, _) = listener.accept() => {
                let task = serve_connection(stream, router.clone(), closing_seen.clone());
                connections.spawn(Repoll::new(task));
            }
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                log_failure(joined);
            }
            () = &mut shutdown => break,
        }
    }

    drop(listener);
    let _ = closing.send(true);
    while let Some(joined) = connections.join_next().await {
        log_failure(joined);
    }
}

/// Logs a connection task that panicked or was cancelled.
fn log_failure(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        tracing::error!(cause = %error, "connection task failed");
    }
}

/// Serves one connection until the client closes it or, once `closing` turns true, until the
/// response to the request in progress is sent.
async fn serve_connection(
    stream: PollingStream,
    router: Router,
    mut closing: watch::Receiver<bool>,
) {
    let service = router.map_request(|request: Request<Incoming>| request.map(Body::new));
    let service = TowerToHyperService::new(service);
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = closing_requested(&mut closing) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        tracing::debug!(cause = %error, "connection ended with an error");
    }
}

/// Completes once `closing` turns true, or once its sender is gone.
async fn closing_requested(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|closing| *closing).await;
}

/// A future that is polled again at once when it wakes itself while being polled.
pub(super) struct Repoll<F> {
    future: Pin<Box<F>>,
    wakeups: Arc<Wakeups>,
    waker: Waker,
}

/// The polling state of a [`Repoll`]'s future, and the task waker its wake-ups go to.
struct Wakeups {
    /// One of [`IDLE`], [`POLLING`] and [`WOKEN_WHILE_POLLING`].
    state: AtomicU8,
    /// The waker of the task, from its latest poll.
    task: Mutex<Option<Waker>>,
}

/// The future is not being polled: a wake-up goes to the task.
const IDLE: u8 = 0;
/// The future is being polled: a wake-up is noted for the poller.
const POLLING: u8 = 1;
/// The future woke up while being polled, and the poller has not seen it yet.
const WOKEN_WHILE_POLLING: u8 = 2;

impl<F: Future> Repoll<F> {
    pub(super) fn new(future: F) -> Self {
        let wakeups = Arc::new(Wakeups {
            state: AtomicU8::new(IDLE),
            task: Mutex::new(None),
        });
        let waker = Waker::from(wakeups.clone());
        Self {
            future: Box::pin(future),
            wakeups,
            waker,
        }
    }
}

impl<F: Future> Future for Repoll<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.wakeups.remember(cx.waker());
        let this = &mut *self;
        let mut inner = Context::from_waker(&this.waker);
        for _ in 0..MAX_POLLS_IN_A_ROW {
            this.wakeups.state.store(POLLING, Ordering::SeqCst);
            if let Poll::Ready(output) = this.future.as_mut().poll(&mut inner) {
                this.wakeups.state.store(IDLE, Ordering::SeqCst);
                return Poll::Ready(output);
            }
            let idle = this.wakeups.state.compare_exchange(
                POLLING,
                IDLE,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            if idle.is_ok() {
                return Poll::Pending;
            }
        }

        this.wakeups.state.store(IDLE, Ordering::SeqCst);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Wakeups {
    /// Keeps `waker` as the task's waker, unless the one kept already wakes the same task.
    fn remember(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if !task
            .as_ref()
            .is_some_and(|current| current.will_wake(waker))
        {
            *task = Some(waker.clone());
        }
    }
}

impl Wake for Wakeups {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let noted = self.state.compare_exchange(
            POLLING,
            WOKEN_WHILE_POLLING,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        match noted {
            Ok(_) | Err(WOKEN_WHILE_POLLING) => {}
            Err(_) => {
                let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(task) = task.as_ref() {
                    task.wake_by_ref();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A waker that counts its wake-ups.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A future that wakes itself during each of its first `self_wakes` polls, keeps the
    /// waker of its last poll, and completes on the poll after those.
    struct WakesItself {
        self_wakes: u32,
        polls: u32,
        waker: Option<Waker>,
    }

    impl Future for WakesItself {
        type Output = u32;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            self.polls += 1;
            if self.polls > self.self_wakes {
                return Poll::Ready(self.polls);
            }
            self.waker = Some(cx.waker().clone());
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn task_waker() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        (counter, waker)
    }

    #[test]
    fn repoll_reruns_a_self_waking_future() {
        let (wakeups, waker) = task_waker();
        let mut future = Repoll::new(WakesItself {
            self_wakes: 2,
            polls: 0,
            waker: None,
        });

        let polled = Pin::new(&mut future).poll(&mut Context::from_waker(&waker));

        assert_eq!(polled, Poll::Ready(3));
        assert_eq!(wakeups.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn repoll_wakes_the_task_after_the_limit() {
        let (wakeups, waker) = task_waker();
        let mut future = Repoll::new(WakesItself {
            self_wakes: MAX_POLLS_IN_A_ROW + 1,
            polls: 0,
            waker: None,
        });

        let first = Pin::new(&mut future).poll(&mut Context::from_waker(&waker));
        assert_eq!(first, Poll::Pending);
        assert_eq!(future.future.polls, MAX_POLLS_IN_A_ROW);
        assert_eq!(wakeups.0.load(Ordering::SeqCst), 1);

        let second = Pin::new(&mut future).poll(&mut Context::from_waker(&waker));
        assert_eq!(second, Poll::Ready(MAX_POLLS_IN_A_ROW + 2));
    }

    /// A future that never completes and keeps the waker of its last poll.
    struct Waits(Option<Waker>);

    impl Future for Waits {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.0 = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn repoll_forwards_wakeups_between_polls() {
        let (earlier_wakeups, earlier_waker) = task_waker();
        let (wakeups, waker) = task_waker();
        let mut future = Repoll::new(Waits(None));
        let first = Pin::new(&mut future).poll(&mut Context::from_waker(&earlier_waker));
        let second = Pin::new(&mut future).poll(&mut Context::from_waker(&waker));
        assert!(first.is_pending());
        assert!(second.is_pending());

        let stored_waker = future.future.0.clone().expect("the future stored a waker");
        stored_waker.wake();

        assert_eq!(wakeups.0.load(Ordering::SeqCst), 1);
        assert_eq!(earlier_wakeups.0.load(Ordering::SeqCst), 0);
    }
}
