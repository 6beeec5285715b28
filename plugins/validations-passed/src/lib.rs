//! `validations-passed` policy: denies a promotion while any blocking check recorded for the
//! model version failed, and, unless configured otherwise, when no check is recorded at all.
//!
//! Build the component with `cargo xtask build-plugins`; run the unit tests natively with
//! `cd plugins && cargo test --target x86_64-unknown-linux-gnu -p validations-passed`.

pub mod verdict;

use runledger_sdk::{Decision, Policy, PromotionRequest, Result, Severity};
use serde::Deserialize;
use verdict::{CheckView, Subject, deny_reason};

/// The policy's configuration, as described by `config-schema` in `plugin.toml`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    #[serde(default = "default_require_checks")]
    require_checks: bool,
}

fn default_require_checks() -> bool {
    true
}

/// The `validations-passed` policy.
pub struct ValidationsPassed;

impl Policy for ValidationsPassed {
    fn decide(request: PromotionRequest, config: serde_json::Value) -> Result<Decision> {
        let config: Config = runledger_sdk::config(config)?;

        let checks: Vec<CheckView> = request
            .validations
            .iter()
            .map(|recorded| CheckView {
                validator: &recorded.validator,
                name: &recorded.check.name,
                passed: recorded.check.passed,
                blocking: recorded.check.severity == Severity::Blocking,
                message: &recorded.check.message,
            })
            .collect();
        let subject = Subject {
            model: &request.model,
            version: request.version,
            run_id: &request.run.run_id,
        };

        Ok(
            match deny_reason(&checks, config.require_checks, &subject) {
                Some(reason) => Decision::Deny(reason),
                None => Decision::Allow,
            },
        )
    }
}

// Only the component exports the policy, so that native test builds link no exports.
#[cfg(target_arch = "wasm32")]
runledger_sdk::export_policy!(ValidationsPassed);
