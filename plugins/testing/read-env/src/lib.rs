//! Test plugin that looks for environment variables, which the host should not pass in.
//!
//! It fails with `other("environment visible: ...")`, naming the variables but not their values,
//! when it finds any, and with `not-found("no environment variables")` when it finds none.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p read-env` in `plugins/`.
use runledger_sdk::{Error, Executor, Result, StepContext, export_executor};

struct ReadEnv;

impl Executor for ReadEnv {
    fn execute(_context: StepContext) -> Result<()> {
        let home_set = std::env::var_os("HOME").is_some();
        let names: Vec<String> = std::env::vars_os()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();

        if home_set || !names.is_empty() {
            return Err(Error::Other(format!(
                "environment visible: HOME set: {home_set}, {} variables: {}",
                names.len(),
                names.join(", ")
            )));
        }
        Err(Error::NotFound("no environment variables".into()))
    }
}

export_executor!(ReadEnv);
