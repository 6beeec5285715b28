//! Test component that implements the `policy` world's export but also imports the
//! `artifacts` interface of the step-executor world, so the host must reject it when loading:
//! a policy gets no artifact access.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p policy-wrong-imports` in
//! `plugins/`.
use runledger_sdk::bindings::runledger::plugin::artifacts;
use runledger_sdk::{Decision, Policy, PromotionRequest, Result, export_policy};

struct WrongImports;

impl Policy for WrongImports {
    fn decide(_request: PromotionRequest, _config: serde_json::Value) -> Result<Decision> {
        match artifacts::open_input("model") {
            Ok(_) => Ok(Decision::Allow),
            Err(_) => Ok(Decision::Deny("no artifact named `model`".into())),
        }
    }
}

export_policy!(WrongImports);
