//! Test plugin that misuses an output handle through the raw bindings: it finishes output
//! `first`, writes to the same handle again and returns the error that write gets.
//!
//! It also keeps the handle in a thread-local, so if the host ever reused an instance for a
//! second call, that call would find the handle and fail with
//! `other("handle survived from an earlier call")`.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p stale-handle` in `plugins/`.
use runledger_sdk::bindings::runledger::plugin::artifacts::{self, OutputArtifact};
use runledger_sdk::bindings::runledger::plugin::types::Error as RawError;
use runledger_sdk::{Error, Executor, Result, StepContext, export_executor};
use std::cell::RefCell;

thread_local! {
    /// The handle of the previous call; a fresh instance per call starts with `None`.
    static KEPT_HANDLE: RefCell<Option<OutputArtifact>> = const { RefCell::new(None) };
}

struct StaleHandle;

impl Executor for StaleHandle {
    fn execute(_context: StepContext) -> Result<()> {
        if KEPT_HANDLE.with_borrow(Option::is_some) {
            return Err(Error::other("handle survived from an earlier call"));
        }

        let handle = artifacts::create_output("first", "text/plain").map_err(convert)?;
        handle.finish().map_err(convert)?;
        let written = handle.write(b"after finish");

        KEPT_HANDLE.set(Some(handle));
        written.map_err(convert)
    }
}

/// Converts a raw WIT error to the SDK's, keeping its kind, because the SDK's own conversion is
/// private to it.
fn convert(raw: RawError) -> Error {
    match raw {
        RawError::InvalidParams(message) => Error::InvalidParams(message),
        RawError::InvalidInput(message) => Error::InvalidInput(message),
        RawError::NotFound(message) => Error::NotFound(message),
        RawError::LimitExceeded(message) => Error::LimitExceeded(message),
        RawError::InvalidState(message) => Error::InvalidState(message),
        RawError::Io(message) => Error::Io(message),
        RawError::Other(message) => Error::Other(message),
    }
}

export_executor!(StaleHandle);
