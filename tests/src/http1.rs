//! A blocking HTTP/1.1 client on one keep-alive connection, for the benchmarks' load
//! generators.
//!
//! A general client such as reqwest runs each connection as a task of its own, so every request
//! crosses between the caller's task and the connection's, often between threads. On two cores
//! that hand-off costs about as much as a fast server's whole response, so the load generator
//! would measure itself. This client writes the request and reads the response on the calling
//! thread, as wrk does, so one round trip costs the two system calls it needs and little more.
//! It supports only what the benchmarks send and the servers return: `POST` with a JSON body or
//! `GET`, and responses framed by `Content-Length` or chunked.
//!
//! A connection may also spin ([`Connection::spin_for`]): after sending a request, it reads
//! without blocking for up to a budget before its thread sleeps in `read`. A server that responds
//! within the budget then needs no wake-up of the client's thread, which on a virtual machine can
//! take longer than the server's whole response. After a response that came later than the
//! budget, the connection sleeps for the next response at once, and spins again only after a
//! response within the budget, so a slow server loses no CPU time to a spinning client.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest header block accepted in a response.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A response: its status code and body.
#[derive(Debug)]
pub struct Response {
    /// The status code, such as 200.
    pub status: u16,
    /// The body, with chunked framing removed.
    pub body: Vec<u8>,
}

impl Response {
    /// Returns whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Returns the body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One keep-alive connection to a server.
pub struct Connection {
    stream: TcpStream,
    host: String,
    /// Bytes read from the socket and not yet consumed.
    buffer: Vec<u8>,
    request: Vec<u8>,
    /// Whether the server may take another request on this connection.
    reusable: bool,
    /// Time to read without blocking for a response before sleeping. Zero turns spinning off.
    spin_budget: Duration,
    /// Whether the next response is spun for, because the last one arrived within the budget.
    spin_next: bool,
}

impl Connection {
    /// Connects to `address`, with `timeout` on each read and write.
    pub fn open(address: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&address, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Self {
            stream,
            host: address.to_string(),
            buffer: Vec::with_capacity(16 * 1024),
            request: Vec::with_capacity(16 * 1024),
            reusable: true,
            spin_budget: Duration::ZERO,
            spin_next: false,
        })
    }

    /// Makes the connection read for each response without blocking for up to `budget` before
    /// it sleeps, as long as responses keep arriving within `budget` of their request. Zero
    /// turns spinning off.
    pub fn spin_for(&mut self, budget: Duration) {
        self.spin_budget = budget;
        self.spin_next = !budget.is_zero();
    }

    /// Returns whether another request may follow on this connection: false after a response with
    /// `Connection: close`, from an HTTP/1.0 server, or delimited by the end of the stream.
    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// Sends `body` as JSON to `path`, such as `/api/2.0/mlflow/runs/log-metric`, and reads the
    /// whole response.
    pub fn post_json(&mut self, path: &str, body: &[u8]) -> io::Result<Response> {
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )?;
        self.request.extend_from_slice(body);
        self.send_request()
    }

    /// Sends a `GET` of `path` and reads the whole response.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request.clear();
        write!(
            self.request,
            "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.host
        )?;
        self.send_request()
    }

    /// Writes the request in `self.request`, waits for the response's first bytes, spinning if
    /// the last response came within the budget, and reads the whole response.
    fn send_request(&mut self) -> io::Result<Response> {
        self.stream.write_all(&self.request)?;
        if !self.spin_budget.is_zero() && self.buffer.is_empty() {
            let sent = Instant::now();
            let arrived = self.spin_next && self.spin_fill()?;
            if !arrived {
                self.fill()?;
            }
            self.spin_next = sent.elapsed() <= self.spin_budget;
        }
        self.read_response()
    }

    /// Reads without blocking until the socket has bytes or the spin budget ends. Returns
    /// whether bytes arrived.
    fn spin_fill(&mut self) -> io::Result<bool> {
        self.stream.set_nonblocking(true)?;
        let started = Instant::now();
        let mut chunk = [0u8; 16 * 1024];
        let outcome = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break Err(closed_early()),
                Ok(read) => {
                    self.buffer.extend_from_slice(&chunk[..read]);
                    break Ok(true);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if started.elapsed() >= self.spin_budget {
                        break Ok(false);
                    }
                    std::hint::spin_loop();
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => break Err(error),
            }
        };
        self.stream.set_nonblocking(false)?;
        outcome
    }

    /// Reads the final response, skipping interim 1xx ones.
    fn read_response(&mut self) -> io::Result<Response> {
        loop {
            let head_end = self.read_head()?;
            let head = Head::parse(&self.buffer[..head_end])?;
            self.buffer.drain(..head_end);
            if (100..200).contains(&head.status) {
                continue;
            }
            self.reusable = head.keep_alive && !matches!(head.framing, Framing::UntilClose);
            let body = match head.framing {
                Framing::Length(length) => self.read_exact_body(length)?,
                Framing::Chunked => self.read_chunked_body()?,
                Framing::UntilClose => self.read_to_end()?,
            };
            return Ok(Response {
                status: head.status,
                body,
            });
        }
    }

    fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        self.stream.read_to_end(&mut self.buffer)?;
        Ok(std::mem::take(&mut self.buffer))
    }

    /// Reads until the buffer holds a whole header block and returns the offset past its blank
    /// line.
    fn read_head(&mut self) -> io::Result<usize> {
        let mut searched = 0;
        loop {
            if let Some(end) = find(&self.buffer[searched..], b"\r\n\r\n") {
                return Ok(searched + end + 4);
            }
            searched = self.buffer.len().saturating_sub(3);
            if self.buffer.len() > MAX_HEAD_BYTES {
                return Err(invalid("the response's header block exceeds 64 KiB"));
            }
            self.fill()?;
        }
    }

    fn read_exact_body(&mut self, length: usize) -> io::Result<Vec<u8>> {
        while self.buffer.len() < length {
            self.fill()?;
        }
        Ok(self.buffer.drain(..length).collect())
    }

    fn read_chunked_body(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(&format!("invalid chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact_body(size)?);
            if !self.read_line()?.is_empty() {
                return Err(invalid("a chunk does not end with CRLF"));
            }
        }
    }

    /// Reads one CRLF-terminated line and returns it without the CRLF.
    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 2);
                return Ok(line);
            }
            self.fill()?;
        }
    }

    /// Appends what the socket has to the buffer. Fails when the server closed the connection.
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let read = loop {
            match self.stream.read(&mut chunk) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "timed out waiting for the server's response",
                    ));
                }
                other => break other?,
            }
        };
        if read == 0 {
            return Err(closed_early());
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

fn closed_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection before the response ended",
    )
}

/// How a response's body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    /// No length and no chunks: the body runs to the end of the stream.
    UntilClose,
}

/// The parts of a response's header block this client uses.
struct Head {
    status: u16,
    framing: Framing,
    /// Whether the server keeps the connection open after this response.
    keep_alive: bool,
}

impl Head {
    fn parse(bytes: &[u8]) -> io::Result<Self> {
        let text = std::str::from_utf8(bytes).map_err(|_| invalid("the header is not UTF-8"))?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid(&format!("invalid status line {status_line:?}")))?;

        let mut length = None;
        let mut chunked = false;
        let mut keep_alive = status_line.starts_with("HTTP/1.1");
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let parsed = value
                    .parse()
                    .map_err(|_| invalid(&format!("invalid Content-Length {value:?}")))?;
                length = Some(parsed);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                let last = value.rsplit(',').next().unwrap_or("").trim();
                chunked = last.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                let has = |token: &str| {
                    value
                        .split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case(token))
                };
                keep_alive = if has("close") {
                    false
                } else {
                    keep_alive || has("keep-alive")
                };
            }
        }

        // Chunked framing overrides a length, and these statuses never carry a body (RFC 9112,
        // section 6.3).
        let framing = if matches!(status, 204 | 304) {
            Framing::Length(0)
        } else if chunked {
            Framing::Chunked
        } else {
            length.map_or(Framing::UntilClose, Framing::Length)
        };

        Ok(Self {
            status,
            framing,
            keep_alive,
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";

    /// Serves one connection: for each request it reads, it writes the next canned response.
    fn serve(responses: Vec<&'static [u8]>) -> SocketAddr {
        serve_after(responses.into_iter().map(|r| (Duration::ZERO, r)).collect())
    }

    /// Serves one connection: for each request it reads, it waits the next delay and writes the
    /// response paired with it.
    fn serve_after(responses: Vec<(Duration, &'static [u8])>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            for (delay, response) in responses {
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                while find(&request, b"\r\n\r\n").is_none() {
                    let read = stream.read(&mut chunk).unwrap();
                    request.extend_from_slice(&chunk[..read]);
                }
                thread::sleep(delay);
                stream.write_all(response).unwrap();
            }
        });
        address
    }

    #[test]
    fn reads_length_and_chunked_responses() {
        let address = serve(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n",
        ]);
        let mut connection = Connection::open(address, Duration::from_secs(5)).unwrap();

        let first = connection.post_json("/a", b"{}").unwrap();
        let second = connection.get("/b").unwrap();

        assert!(first.is_success());
        assert_eq!(first.body, b"{}");
        assert_eq!(second.status, 400);
        assert_eq!(second.text(), "abcde");
        assert!(connection.is_reusable());
    }

    #[test]
    fn skips_interim_and_reads_until_close() {
        let address = serve(vec![
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall",
        ]);
        let mut connection = Connection::open(address, Duration::from_secs(5)).unwrap();

        let response = connection.post_json("/a", b"{}").unwrap();

        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "all");
        assert!(!connection.is_reusable());
    }

    #[test]
    fn reports_connection_closed_mid_response() {
        let address = serve(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"]);
        let mut connection = Connection::open(address, Duration::from_secs(5)).unwrap();

        let error = connection.post_json("/a", b"{}").unwrap_err();

        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn spin_resumes_after_fast_response() {
        let slow = Duration::from_millis(300);
        let address = serve_after(vec![(Duration::ZERO, OK), (slow, OK), (Duration::ZERO, OK)]);
        let mut connection = Connection::open(address, Duration::from_secs(5)).unwrap();
        connection.spin_for(Duration::from_millis(100));

        let fast = connection.get("/a").unwrap();
        let spins_after_fast = connection.spin_next;
        let late = connection.get("/b").unwrap();
        let spins_after_late = connection.spin_next;
        let again = connection.get("/c").unwrap();

        assert_eq!(fast.body, b"{}");
        assert_eq!(late.body, b"{}");
        assert_eq!(again.body, b"{}");
        assert!(spins_after_fast);
        assert!(!spins_after_late);
        assert!(connection.spin_next);
    }

    #[test]
    fn spin_reports_early_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut chunk = [0u8; 4096];
            let _ = stream.read(&mut chunk).unwrap();
        });
        let mut connection = Connection::open(address, Duration::from_secs(5)).unwrap();
        connection.spin_for(Duration::from_secs(1));

        let error = connection.get("/a").unwrap_err();

        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
