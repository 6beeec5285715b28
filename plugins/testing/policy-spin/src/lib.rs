//! Test policy that loops forever, so the call must end on its fuel budget or its timeout.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p policy-spin` in `plugins/`.
use runledger_sdk::{Decision, Policy, PromotionRequest, Result, export_policy};

struct Spin;

impl Policy for Spin {
    fn decide(_request: PromotionRequest, _config: serde_json::Value) -> Result<Decision> {
        let mut counter = 0u64;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

export_policy!(Spin);
