//! Test plugin that writes zeros to output `blob` in 1 MiB chunks until a write fails, and
//! returns that error, so the host's output size limit is what ends the step.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p big-output` in `plugins/`.
use runledger_sdk::{Executor, Result, StepContext, export_executor};
use std::io::Write;

const CHUNK_BYTES: usize = 1 << 20;

struct BigOutput;

impl Executor for BigOutput {
    fn execute(context: StepContext) -> Result<()> {
        let mut blob = context.create_output("blob", "application/octet-stream")?;
        let chunk = vec![0; CHUNK_BYTES];
        loop {
            blob.write_all(&chunk)?;
        }
    }
}

export_executor!(BigOutput);
