//! Connections that watch for a client's next request for a moment after each response.
//!
//! A client that logs one metric per request sends its next request a few microseconds after
//! a response reaches it. A server thread that waits for that request in `epoll_wait` goes to
//! sleep, and waking it again takes tens of microseconds on a virtual machine, because the
//! kernel must interrupt another CPU: more than the request's own work. [`PollingListener`]
//! hands out streams that instead read their socket without blocking, in a loop, for up to a
//! budget after the first write of each response. What arrives is kept for the next read, and
//! the connection's task is woken at once, which [`super::accept`] turns into another poll of
//! the task on the same thread.
//!
//! Polling spends CPU time that other connections could use, and the client needs a CPU of its
//! own meanwhile. So a stream polls only when no other connection has a request in progress,
//! stops when another worker thread starts a request on another connection, and at most one
//! stream per two CPUs polls at a time. A connection whose event reaches only the polling
//! thread waits for the end of the poll, so the budget bounds that delay too. A stream whose
//! client sends nothing within the budget lets a growing number of responses pass before it
//! polls again, so a client that pauses between requests costs almost nothing.

use socket2::SockRef;
use std::io::{self, Read as _};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Default time a connection watches for the next request after a response.
pub const DEFAULT_POLL_BUDGET: Duration = Duration::from_micros(50);

/// Bytes read at most while polling; hyper reads the rest of a larger request as usual.
const READ_AHEAD_BYTES: usize = 16 * 1024;

/// Most responses a stream lets pass without polling after its client kept it waiting.
const MAX_SKIPPED_RESPONSES: u32 = 1024;

/// When and how long accepted connections poll for their next request.
#[derive(Debug)]
pub struct Polling {
    /// How long a stream reads its socket after a response.
    budget: Duration,
    /// Most streams polling at once.
    slots: usize,
    /// Streams polling now.
    polling: AtomicUsize,
    /// Connections with a request read and its response not yet begun.
    in_progress: AtomicUsize,
    /// Requests started so far, on every connection.
    started: AtomicU64,
}

impl Polling {
    /// Polls for up to `budget`, with at most `slots` streams polling at once. A zero budget
    /// or slot count turns polling off.
    pub fn new(budget: Duration, slots: usize) -> Self {
        Self {
            budget,
            slots,
            polling: AtomicUsize::new(0),
            in_progress: AtomicUsize::new(0),
            started: AtomicU64::new(0),
        }
    }

    /// Polls for up to `budget`, with at most one stream per two CPUs polling at once.
    pub fn for_this_machine(budget: Duration) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(budget, (cpus / 2).max(1))
    }

    /// Takes a polling slot if polling is on, no request is in progress and a slot is free.
    fn try_begin(&self) -> Option<PollSlot<'_>> {
        if self.budget.is_zero() || self.in_progress.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.polling
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |polling| {
                (polling < self.slots).then_some(polling + 1)
            })
            .ok()?;
        Some(PollSlot { polling: self })
    }

    fn request_started(&self) {
        self.in_progress.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
    }

    fn response_begun(&self) {
        self.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream's turn to poll; dropping it frees the slot.
struct PollSlot<'a> {
    polling: &'a Polling,
}

impl Drop for PollSlot<'_> {
    fn drop(&mut self) {
        self.polling.polling.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP listener whose connections poll for their next request, and have `TCP_NODELAY` set.
#[derive(Debug)]
pub struct PollingListener {
    listener: TcpListener,
    polling: Arc<Polling>,
}

impl PollingListener {
    /// Accepts on `listener` with the given polling rules.
    pub fn new(listener: TcpListener, polling: Polling) -> Self {
        Self {
            listener,
            polling: Arc::new(polling),
        }
    }
}

impl axum::serve::Listener for PollingListener {
    type Io = PollingStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = axum::serve::Listener::accept(&mut self.listener).await;
        // Without TCP_NODELAY, a response written in pieces can hold back its last small
        // segment until the client acknowledges the earlier ones, and clients delay
        // acknowledgements by tens of milliseconds.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(cause = %error, "failed to set TCP_NODELAY on a connection");
        }
        (PollingStream::new(stream, self.polling.clone()), address)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// An accepted connection; see the module documentation.
#[derive(Debug)]
pub struct PollingStream {
    stream: TcpStream,
    polling: Arc<Polling>,
    /// The outcome of the last poll, which the next reads return before reading the socket.
    ahead: Ahead,
    /// Whether a request was read and its response not yet begun.
    in_progress: bool,
    /// Responses to let pass before polling again.
    skip: u32,
    /// Polls in a row that ended with nothing from the client.
    misses: u32,
}

/// The outcome of polling, held for the next read.
#[derive(Debug, Default)]
enum Ahead {
    #[default]
    Nothing,
    Bytes {
        buffer: Vec<u8>,
        start: usize,
    },
    Closed,
    Failed(io::Error),
}

/// The reason polling stopped.
#[derive(Debug)]
enum PollEnd {
    /// The socket had bytes, an end or an error.
    Read(Ahead),
    /// The budget ran out.
    TimedOut,
    /// Another connection started a request, which needs the CPU.
    Yielded,
}

impl PollingStream {
    fn new(stream: TcpStream, polling: Arc<Polling>) -> Self {
        Self {
            stream,
            polling,
            ahead: Ahead::Nothing,
            in_progress: false,
            skip: 0,
            misses: 0,
        }
    }

    /// Counts a read that returned bytes: the first one after a response starts a request.
    // NOTE: a client that sends part of a request and then stops, or a stray line break after
    // a response, keeps its connection counted until the next response or the close, and no
    // connection polls meanwhile. Serving stays correct; only the polling pauses.
    fn note_read(&mut self) {
        if !std::mem::replace(&mut self.in_progress, true) {
            self.polling.request_started();
        }
    }

    /// Counts a write: the first one after a request starts its response, and may poll.
    /// Only the first write polls. A response streamed in several writes therefore waits up to
    /// the budget between its first write and the rest, and the timed-out poll backs off.
    fn note_write(&mut self, cx: &Context<'_>) {
        if std::mem::replace(&mut self.in_progress, false) {
            self.polling.response_begun();
            self.poll_for_next_request(cx);
        }
    }

    /// Reads the socket until the next request arrives, the budget runs out or another
    /// connection starts a request, and wakes the task if the request arrived. The task has
    /// asked to be woken when the socket becomes readable, so it is woken either way.
    fn poll_for_next_request(&mut self, cx: &Context<'_>) {
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        let end = {
            let Some(_slot) = self.polling.try_begin() else {
                return;
            };
            read_within(&self.stream, &self.polling)
        };
        match end {
            PollEnd::Read(ahead) => {
                self.misses = 0;
                self.ahead = ahead;
                cx.waker().wake_by_ref();
            }
            PollEnd::TimedOut => self.note_miss(),
            PollEnd::Yielded => {}
        }
    }

    /// Counts a poll that timed out: the next `2^misses` responses pass without polling, up
    /// to [`MAX_SKIPPED_RESPONSES`].
    fn note_miss(&mut self) {
        self.misses = self.misses.saturating_add(1);
        self.skip = 1u32
            .checked_shl(self.misses)
            .unwrap_or(u32::MAX)
            .min(MAX_SKIPPED_RESPONSES);
    }

    /// Moves what polling read into `buf`, if anything.
    fn take_ahead(&mut self, buf: &mut ReadBuf<'_>) -> Option<io::Result<()>> {
        match std::mem::take(&mut self.ahead) {
            Ahead::Nothing => None,
            Ahead::Bytes { buffer, start } => {
                let end = buffer.len().min(start + buf.remaining());
                buf.put_slice(&buffer[start..end]);
                if end < buffer.len() {
                    self.ahead = Ahead::Bytes { buffer, start: end };
                }
                Some(Ok(()))
            }
            Ahead::Closed => Some(Ok(())),
            Ahead::Failed(error) => Some(Err(error)),
        }
    }
}

/// Reads `stream` without blocking, over and over, until bytes arrive, the peer closes, the
/// read fails, the budget of `polling` has passed or another connection starts a request.
fn read_within(stream: &TcpStream, polling: &Polling) -> PollEnd {
    let socket = SockRef::from(stream);
    let started = Instant::now();
    let requests = polling.started.load(Ordering::Acquire);
    let mut buffer = [0; READ_AHEAD_BYTES];
    loop {
        match (&*socket).read(&mut buffer) {
            Ok(0) => return PollEnd::Read(Ahead::Closed),
            Ok(count) => {
                let buffer = buffer[..count].to_vec();
                return PollEnd::Read(Ahead::Bytes { buffer, start: 0 });
            }
            Err(error) if is_transient(&error) => {}
            Err(error) => return PollEnd::Read(Ahead::Failed(error)),
        }
        if polling.started.load(Ordering::Acquire) != requests {
            return PollEnd::Yielded;
        }
        if started.elapsed() >= polling.budget {
            return PollEnd::TimedOut;
        }
        std::hint::spin_loop();
    }
}

/// Returns whether a read that failed with `error` may be retried at once.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl Drop for PollingStream {
    fn drop(&mut self) {
        if self.in_progress {
            self.polling.response_begun();
        }
    }
}

impl AsyncRead for PollingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let filled = buf.filled().len();
        let outcome = match this.take_ahead(buf) {
            Some(outcome) => Poll::Ready(outcome),
            None => Pin::new(&mut this.stream).poll_read(cx, buf),
        };
        if buf.filled().len() > filled {
            this.note_read();
        }
        outcome
    }
}

impl AsyncWrite for PollingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(outcome, Poll::Ready(Ok(_))) {
            self.note_write(cx);
        }
        outcome
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(outcome, Poll::Ready(Ok(_))) {
            self.note_write(cx);
        }
        outcome
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Long enough for a client thread on a loaded machine to send its next request.
    const PATIENT: Duration = Duration::from_secs(10);

    /// Returns an accepted polling stream and the client end of its connection.
    async fn connect(polling: &Arc<Polling>) -> (PollingStream, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        (PollingStream::new(stream, polling.clone()), client)
    }

    /// Reads exactly `len` bytes from `client`.
    fn receive(client: &mut std::net::TcpStream, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        client.read_exact(&mut bytes).unwrap();
        bytes
    }

    /// Reads what `stream` returns next.
    async fn next_read(stream: &mut PollingStream) -> Vec<u8> {
        let mut bytes = vec![0; 64];
        let count = stream.read(&mut bytes).await.unwrap();
        bytes.truncate(count);
        bytes
    }

    #[tokio::test]
    async fn quick_next_request_is_read_ahead() {
        let polling = Arc::new(Polling::new(PATIENT, 1));
        let (mut stream, mut client) = connect(&polling).await;
        let client_thread = std::thread::spawn(move || {
            client.write_all(b"first").unwrap();
            let response = receive(&mut client, 8);
            client.write_all(b"second").unwrap();
            response
        });

        assert_eq!(next_read(&mut stream).await, b"first");
        stream.write_all(b"response").await.unwrap();

        assert!(
            matches!(stream.ahead, Ahead::Bytes { .. }),
            "{:?}",
            stream.ahead
        );
        assert_eq!(next_read(&mut stream).await, b"second");
        assert_eq!(client_thread.join().unwrap(), b"response");
    }

    #[tokio::test]
    async fn silent_client_makes_the_stream_skip_polls() {
        let polling = Arc::new(Polling::new(Duration::from_millis(1), 1));
        let (mut stream, mut client) = connect(&polling).await;

        client.write_all(b"first").unwrap();
        assert_eq!(next_read(&mut stream).await, b"first");
        stream.write_all(b"response").await.unwrap();

        assert!(matches!(stream.ahead, Ahead::Nothing), "{:?}", stream.ahead);
        assert_eq!((stream.misses, stream.skip), (1, 2));

        client.write_all(b"second").unwrap();
        assert_eq!(next_read(&mut stream).await, b"second");
        stream.write_all(b"response").await.unwrap();

        assert_eq!(
            (stream.misses, stream.skip),
            (1, 1),
            "the skipped response did not poll"
        );
    }

    #[tokio::test]
    async fn successful_poll_forgets_earlier_misses() {
        let polling = Arc::new(Polling::new(PATIENT, 1));
        let (mut stream, mut client) = connect(&polling).await;
        stream.misses = 3;
        let client_thread = std::thread::spawn(move || {
            client.write_all(b"first").unwrap();
            receive(&mut client, 8);
            client.write_all(b"second").unwrap();
        });

        assert_eq!(next_read(&mut stream).await, b"first");
        stream.write_all(b"response").await.unwrap();
        client_thread.join().unwrap();

        assert_eq!((stream.misses, stream.skip), (0, 0));
    }

    #[tokio::test]
    async fn skipped_responses_stop_growing_at_the_maximum() {
        let polling = Arc::new(Polling::new(PATIENT, 1));
        let (mut stream, _client) = connect(&polling).await;

        for _ in 0..40 {
            stream.note_miss();
        }

        assert_eq!(stream.skip, MAX_SKIPPED_RESPONSES);
    }

    #[tokio::test]
    async fn request_in_progress_prevents_polling() {
        let polling = Arc::new(Polling::new(PATIENT, 1));
        let (mut stream, mut client) = connect(&polling).await;
        let (mut other, mut other_client) = connect(&polling).await;
        other_client.write_all(b"other").unwrap();
        assert_eq!(next_read(&mut other).await, b"other");

        client.write_all(b"first").unwrap();
        assert_eq!(next_read(&mut stream).await, b"first");
        stream.write_all(b"response").await.unwrap();

        assert!(matches!(stream.ahead, Ahead::Nothing), "{:?}", stream.ahead);
        assert_eq!(stream.misses, 0, "the stream did not poll");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polling_stops_when_another_connection_starts_a_request() {
        let polling = Arc::new(Polling::new(PATIENT, 1));
        let (mut stream, mut client) = connect(&polling).await;
        let (mut other, mut other_client) = connect(&polling).await;
        client.write_all(b"first").unwrap();
        assert_eq!(next_read(&mut stream).await, b"first");
        let other_read = tokio::spawn(async move { next_read(&mut other).await });
        let sender = std::thread::spawn(move || {
            receive(&mut client, 8);
            other_client.write_all(b"other").unwrap();
            client
        });

        stream.write_all(b"response").await.unwrap();

        assert!(matches!(stream.ahead, Ahead::Nothing), "{:?}", stream.ahead);
        assert_eq!(stream.misses, 0, "polling ended before the budget");
        assert_eq!(other_read.await.unwrap(), b"other");
        sender.join().unwrap();
    }

    #[tokio::test]
    async fn dropped_stream_ends_its_request() {
        let polling = Arc::new(Polling::new(PATIENT, 1));
        let (mut stream, mut client) = connect(&polling).await;
        client.write_all(b"first").unwrap();
        assert_eq!(next_read(&mut stream).await, b"first");
        assert!(polling.try_begin().is_none(), "a request is in progress");

        drop(stream);

        assert!(polling.try_begin().is_some());
    }

    #[test]
    fn polling_slots_are_shared_and_returned() {
        let polling = Polling::new(PATIENT, 1);

        let first = polling.try_begin();
        let second = polling.try_begin();
        drop(first);
        let third = polling.try_begin();

        assert!(second.is_none());
        assert!(third.is_some());
    }

    #[test]
    fn zero_budget_turns_polling_off() {
        let polling = Polling::new(Duration::ZERO, 4);

        assert!(polling.try_begin().is_none());
    }

    #[tokio::test]
    async fn client_closing_during_a_poll_ends_the_stream() {
        let polling = Arc::new(Polling::new(PATIENT, 1));
        let (mut stream, mut client) = connect(&polling).await;
        let closer = std::thread::spawn(move || {
            client.write_all(b"first").unwrap();
            receive(&mut client, 8);
        });

        assert_eq!(next_read(&mut stream).await, b"first");
        stream.write_all(b"response").await.unwrap();
        closer.join().unwrap();

        assert!(matches!(stream.ahead, Ahead::Closed), "{:?}", stream.ahead);
        assert_eq!(next_read(&mut stream).await, b"", "end of stream");
    }

    #[tokio::test]
    async fn read_ahead_bytes_fill_small_buffers_in_turn() {
        let polling = Arc::new(Polling::new(PATIENT, 1));
        let (mut stream, _client) = connect(&polling).await;
        stream.ahead = Ahead::Bytes {
            buffer: b"abcdefgh".to_vec(),
            start: 0,
        };

        let mut first = [0; 5];
        let mut second = [0; 5];
        let first_count = stream.read(&mut first).await.unwrap();
        let second_count = stream.read(&mut second).await.unwrap();

        assert_eq!(&first[..first_count], b"abcde");
        assert_eq!(&second[..second_count], b"fgh");
        assert!(matches!(stream.ahead, Ahead::Nothing));
    }
}
