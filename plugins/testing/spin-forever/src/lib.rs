//! Test plugin that never returns: it spins in a loop until the host's fuel or timeout stops it.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p spin-forever` in `plugins/`.
use runledger_sdk::{Executor, Result, StepContext, export_executor};
use std::hint::black_box;

struct SpinForever;

impl Executor for SpinForever {
    fn execute(_context: StepContext) -> Result<()> {
        // `black_box` hides the counter from the optimizer, so the loop stays in the code.
        let mut iterations: u64 = 0;
        loop {
            iterations = black_box(iterations.wrapping_add(1));
        }
    }
}

export_executor!(SpinForever);
