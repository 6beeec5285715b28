//! Test plugin that tries to read `/etc/passwd`, which fails because the host preopens no
//! directories. If the read succeeds, the byte count goes to output `leak`, so a test can tell.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p read-host-file` in `plugins/`.
use runledger_sdk::{Error, Executor, Result, StepContext, export_executor};
use std::io::Write;

const PATH: &str = "/etc/passwd";

struct ReadHostFile;

impl Executor for ReadHostFile {
    fn execute(context: StepContext) -> Result<()> {
        let bytes = std::fs::read(PATH)
            .map_err(|error| Error::Io(format!("reading {PATH} failed: {error}")))?;

        let mut leak = context.create_output("leak", "text/plain")?;
        write!(leak, "{}", bytes.len())?;
        leak.finish()?;
        Ok(())
    }
}

export_executor!(ReadHostFile);
