//! Benchmark plugin that copies input `source` to output `copy` in 1 MiB chunks through the
//! SDK's `Read` and `Write`, to measure how fast artifacts cross the host boundary.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p copy` in `plugins/`.
use runledger_sdk::{Executor, Result, StepContext, export_executor};
use std::io::{Read, Write};

/// The maximum the host returns per read, so a larger buffer would gain nothing.
const CHUNK_BYTES: usize = 1 << 20;

struct Copy;

impl Executor for Copy {
    fn execute(context: StepContext) -> Result<()> {
        let mut source = context.open_input("source")?;
        let mut copy = context.create_output("copy", "application/octet-stream")?;

        let mut chunk = vec![0; CHUNK_BYTES];
        loop {
            let count = source.read(&mut chunk)?;
            if count == 0 {
                break;
            }
            copy.write_all(&chunk[..count])?;
        }

        copy.finish()?;
        Ok(())
    }
}

export_executor!(Copy);
