//! Test policy that returns the decision its configuration names, so tests can drive any
//! decision: `{"decision": "allow"}` (the default), `{"decision": "deny", "reason": R}`,
//! `{"decision": "pending", "count": N, "role": ROLE, "reason": R}`, `{"decision": "echo"}`
//! (a deny whose reason is the request as JSON) or `{"decision": "error", "reason": R}` (an
//! error value).
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p policy-allow` in `plugins/`.
use runledger_sdk::{Decision, Error, Policy, PromotionRequest, Result, export_policy};
use serde_json::{Value, json};

struct ConfiguredDecision;

impl Policy for ConfiguredDecision {
    fn decide(request: PromotionRequest, config: Value) -> Result<Decision> {
        let text = |key: &str| {
            config
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        runledger_sdk::log::info(format!("deciding {}@{}", request.model, request.version));
        match text("decision").as_str() {
            "" | "allow" => Ok(Decision::Allow),
            "deny" => Ok(Decision::Deny(text("reason"))),
            "pending" => Ok(Decision::Pending {
                count: config.get("count").and_then(Value::as_u64).unwrap_or(1) as u32,
                role: text("role"),
                reason: text("reason"),
            }),
            "echo" => Ok(Decision::Deny(request_json(&request).to_string())),
            "error" => Err(Error::other(text("reason"))),
            other => Err(Error::invalid_params(format!("unknown decision `{other}`"))),
        }
    }
}

fn request_json(request: &PromotionRequest) -> Value {
    let validations: Vec<Value> = request
        .validations
        .iter()
        .map(|recorded| {
            let check = &recorded.check;
            json!([
                recorded.validator,
                recorded.validator_digest,
                check.name,
                check.passed,
                format!("{:?}", check.severity),
                check.message,
            ])
        })
        .collect();
    let approvals: Vec<Value> = request
        .approvals
        .iter()
        .map(|a| json!([a.approver, a.role, a.approved_at_ms, a.comment]))
        .collect();
    let datasets: Vec<Value> = request
        .lineage
        .datasets
        .iter()
        .map(|dataset| json!([dataset.name, dataset.digest]))
        .collect();
    json!({
        "model": request.model,
        "version": request.version,
        "alias": request.alias,
        "requester": request.requester,
        "run_id": request.run.run_id,
        "run_author": request.run.author,
        "metrics": request.run.metrics.iter().map(|m| json!([m.key, m.value, m.step])).collect::<Vec<_>>(),
        "validations": validations,
        "artifact_digest": request.lineage.artifact_digest,
        "datasets": datasets,
        "approvals": approvals,
    })
}

export_policy!(ConfiguredDecision);
