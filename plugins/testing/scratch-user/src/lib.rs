//! Test plugin with the `scratch-dir` capability: writes `/scratch/note.txt`, reads it back into
//! the `echo` output, and checks that host files outside `/scratch` stay out of reach.
//!
//! Build it with `cargo xtask build-plugins`.
use runledger_sdk::{Error, Executor, Result, StepContext, export_executor};
use std::io::Write;

const NOTE: &str = "written in the scratch directory";

struct ScratchUser;

impl Executor for ScratchUser {
    fn execute(context: StepContext) -> Result<()> {
        std::fs::write("/scratch/note.txt", NOTE)?;
        let read_back = std::fs::read_to_string("/scratch/note.txt")?;
        if std::fs::read("/etc/passwd").is_ok() {
            return Err(Error::Other(
                "a host file outside /scratch was readable".into(),
            ));
        }
        let mut output = context.create_output("echo", "text/plain")?;
        output.write_all(read_back.as_bytes())?;
        output.finish()?;
        Ok(())
    }
}

export_executor!(ScratchUser);
