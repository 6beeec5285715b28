//! Benchmark plugin that does nothing and returns `Ok`, to measure what a whole call costs:
//! instantiation, the context crossing into the component and the result crossing back.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p noop` in `plugins/`.
use runledger_sdk::{Executor, Result, StepContext, export_executor};

struct Noop;

impl Executor for Noop {
    fn execute(_context: StepContext) -> Result<()> {
        Ok(())
    }
}

export_executor!(Noop);
