//! Test plugin that panics on every call, so the step traps with the panic message.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p panics` in `plugins/`.
use runledger_sdk::{Executor, Result, StepContext, export_executor};

struct Panics;

impl Executor for Panics {
    fn execute(_context: StepContext) -> Result<()> {
        panic!("deliberate panic from the panics test plugin");
    }
}

export_executor!(Panics);
