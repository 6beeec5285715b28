//! Test plugin that keeps allocating 1 MiB blocks, writing every byte of each, so its memory
//! grows until the host's memory limit stops it.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p memory-hog` in `plugins/`.
use runledger_sdk::{Executor, Result, StepContext, export_executor};
use std::hint::black_box;

const BLOCK_BYTES: usize = 1 << 20;

struct MemoryHog;

impl Executor for MemoryHog {
    fn execute(_context: StepContext) -> Result<()> {
        // Filling with a non-zero byte writes every page, and `black_box` keeps the optimizer
        // from dropping blocks that are never read.
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            blocks.push(black_box(vec![0xA5; BLOCK_BYTES]));
        }
    }
}

export_executor!(MemoryHog);
