//! Test policy that returns `Pending { count: 0, role: "", reason: "" }`, a decision that
//! waits for nothing from no one, which the host's gates must treat as a deny.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p policy-garbage` in `plugins/`.
use runledger_sdk::{Decision, Policy, PromotionRequest, Result, export_policy};

struct Garbage;

impl Policy for Garbage {
    fn decide(_request: PromotionRequest, _config: serde_json::Value) -> Result<Decision> {
        Ok(Decision::Pending {
            count: 0,
            role: String::new(),
            reason: String::new(),
        })
    }
}

export_policy!(Garbage);
