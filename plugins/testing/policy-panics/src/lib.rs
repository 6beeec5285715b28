//! Test policy that panics on every call, so the call traps with the panic message.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p policy-panics` in `plugins/`.
use runledger_sdk::{Decision, Policy, PromotionRequest, Result, export_policy};

struct Panics;

impl Policy for Panics {
    fn decide(_request: PromotionRequest, _config: serde_json::Value) -> Result<Decision> {
        panic!("deliberate panic from the policy-panics test plugin");
    }
}

export_policy!(Panics);
