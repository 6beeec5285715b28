//! Test plugin that does its job: it counts the bytes of the optional input `data` (0 without
//! it), writes the count to output `count` and records it as metric `bytes`. Tests run it after
//! a failing plugin to show the host still works.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p well-behaved` in `plugins/`.
use runledger_sdk::{Executor, Result, StepContext, export_executor, metrics};
use std::io::{self, Write};

const INPUT: &str = "data";

struct WellBehaved;

impl Executor for WellBehaved {
    fn execute(context: StepContext) -> Result<()> {
        let bytes = count_input_bytes(&context)?;

        let mut count = context.create_output("count", "text/plain")?;
        write!(count, "{bytes}")?;
        count.finish()?;

        metrics::log("bytes", bytes as f64, 0)?;
        Ok(())
    }
}

/// Reads the input to its end and returns how many bytes it had, or 0 when the step has none.
fn count_input_bytes(context: &StepContext) -> Result<u64> {
    if !context.inputs().iter().any(|input| input.name == INPUT) {
        return Ok(0);
    }
    let mut input = context.open_input(INPUT)?;
    Ok(io::copy(&mut input, &mut io::sink())?)
}

export_executor!(WellBehaved);
