//! Test plugin that opens a TCP connection to 127.0.0.1:9 (the discard port), which fails
//! because the host grants no network access. It returns `Ok` only if the connection succeeds.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p open-socket` in `plugins/`.
use runledger_sdk::{Error, Executor, Result, StepContext, export_executor};
use std::net::TcpStream;

const ADDRESS: &str = "127.0.0.1:9";

struct OpenSocket;

impl Executor for OpenSocket {
    fn execute(_context: StepContext) -> Result<()> {
        TcpStream::connect(ADDRESS)
            .map_err(|error| Error::Io(format!("connecting to {ADDRESS} failed: {error}")))?;
        Ok(())
    }
}

export_executor!(OpenSocket);
