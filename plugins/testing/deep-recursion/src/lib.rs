//! Test plugin that recurses without end until the call stack overflows and the step traps.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p deep-recursion` in `plugins/`.
use runledger_sdk::{Executor, Result, StepContext, export_executor};
use std::hint::black_box;

struct DeepRecursion;

impl Executor for DeepRecursion {
    fn execute(_context: StepContext) -> Result<()> {
        black_box(descend(0));
        Ok(())
    }
}

/// Calls itself through a function pointer hidden by `black_box` and then uses the result, so
/// the optimizer can neither see the recursion nor turn it into a loop or a tail call.
fn descend(depth: u64) -> u64 {
    let next: fn(u64) -> u64 = black_box(descend);
    next(depth.wrapping_add(1)).wrapping_add(depth)
}

export_executor!(DeepRecursion);
