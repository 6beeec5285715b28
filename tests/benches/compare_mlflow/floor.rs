//! A loopback responder that does no work, for the floor of a one-client round trip.
//!
//! It writes the same fixed response for every request on its one connection as soon as the
//! request's header block has arrived. Its thread blocks in `read` between requests, as any
//! server that sleeps while idle does. So its rate from one client is what the machine's
//! loopback and thread wake-ups allow, with no HTTP framework, runtime or storage in the way.

use anyhow::{Context as _, Result};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// The response to every request: `/healthz`'s body with the headers a server must send.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
content-length: 15\r\n\r\n{\"status\":\"ok\"}";

/// A responder serving one connection on a loopback port.
pub(crate) struct Responder {
    address: SocketAddr,
}

impl Responder {
    /// Listens on a loopback port and serves the first connection on a thread of its own, which
    /// ends when the client closes the connection.
    pub(crate) fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
        let address = listener.local_addr()?;
        std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                serve(stream);
            }
        });
        Ok(Self { address })
    }

    /// Returns the address the responder listens on.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }
}

/// Writes the response for each header block on `stream` until the client closes it. The requests are `GET`s
/// without a body, so a blank line ends each one.
fn serve(mut stream: TcpStream) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buffer = vec![0u8; 16 * 1024];
    let mut filled = 0;
    loop {
        let read = match stream.read(&mut buffer[filled..]) {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        filled += read;
        while let Some(end) = header_end(&buffer[..filled]) {
            if stream.write_all(RESPONSE).is_err() {
                return;
            }
            buffer.copy_within(end..filled, 0);
            filled -= end;
        }
        if filled == buffer.len() {
            return;
        }
    }
}

/// Returns the offset past the first blank line in `bytes`, if one has arrived.
fn header_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|start| start + 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runledger_tests::http1::Connection;
    use std::time::Duration;

    #[test]
    fn responds_to_each_request_on_one_connection() {
        let responder = Responder::start().unwrap();
        let mut connection = Connection::open(responder.address(), Duration::from_secs(5)).unwrap();

        for _ in 0..3 {
            let response = connection.get("/healthz").unwrap();

            assert_eq!(response.status, 200);
            assert_eq!(response.text(), r#"{"status":"ok"}"#);
        }
        assert!(connection.is_reusable());
    }

    #[test]
    fn responds_to_request_split_over_writes() {
        let responder = Responder::start().unwrap();
        let mut stream = TcpStream::connect(responder.address()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();

        stream.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        stream.write_all(b"st: x\r\n\r\n").unwrap();

        let mut response = vec![0u8; RESPONSE.len()];
        stream.read_exact(&mut response).unwrap();
        assert_eq!(response, RESPONSE);
    }
}
