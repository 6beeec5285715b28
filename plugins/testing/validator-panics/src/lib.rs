//! Test validator that panics on every call, so the call traps with the panic message.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p validator-panics` in
//! `plugins/`.
use runledger_sdk::{Check, Result, RunSummary, Validator, export_validator};

struct Panics;

impl Validator for Panics {
    fn validate(_run: RunSummary, _config: serde_json::Value) -> Result<Vec<Check>> {
        panic!("deliberate panic from the validator-panics test plugin");
    }
}

export_validator!(Panics);
