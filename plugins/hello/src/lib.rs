//! The smallest useful step executor: greets `name` into the `greeting` output.
//!
//! Build it with `cargo xtask build-plugins`, then inspect it with
//! `runledger --plugin-dir target/plugins plugins inspect hello` or run
//! `examples/hello/pipeline.yaml`.
use runledger_sdk::{Executor, Result, StepContext, export_executor, log, metrics};
use std::io::Write;

#[derive(serde::Deserialize)]
struct Params {
    name: String,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

struct Hello;

impl Executor for Hello {
    fn execute(context: StepContext) -> Result<()> {
        let params: Params = context.params()?;
        let mut output = context.create_output("greeting", "text/plain")?;
        for _ in 0..params.times {
            writeln!(output, "hello, {}", params.name)?;
        }
        let greeting = output.finish()?;
        metrics::log("greeting_bytes", greeting.size as f64, 0)?;
        log::info(format!("greeted {} as {}", params.name, greeting.digest));
        Ok(())
    }
}

export_executor!(Hello);
