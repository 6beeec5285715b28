//! `required-approvals` policy: keeps a promotion pending until enough distinct users with a
//! high enough role approved it. Approvals by the requester or by the run's author never count.
//!
//! Build the component with `cargo xtask build-plugins`; run the unit tests natively with
//! `cd plugins && cargo test --target x86_64-unknown-linux-gnu -p required-approvals`.

pub mod tally;

use runledger_sdk::{Decision, Error, Policy, PromotionRequest, Result};
use serde::Deserialize;
use tally::{Role, Rules, Tally, Verdict, verdict};

/// The policy's configuration, as described by `config-schema` in `plugin.toml`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    count: u32,
    #[serde(default = "default_role")]
    role: Role,
}

fn default_role() -> Role {
    Role::Approver
}

/// The `required-approvals` policy.
pub struct RequiredApprovals;

impl Policy for RequiredApprovals {
    fn decide(request: PromotionRequest, config: serde_json::Value) -> Result<Decision> {
        let config: Config = runledger_sdk::config(config)?;
        if config.count == 0 {
            return Err(Error::invalid_params(
                "count is 0; require at least 1 approval, or detach the policy",
            ));
        }

        let rules = Rules {
            requester: &request.requester,
            author: &request.run.author,
            role: config.role,
        };
        let approvals = request
            .approvals
            .iter()
            .map(|approval| (approval.approver.as_str(), approval.role.as_str()));
        let tally = Tally::of(approvals, &rules);

        Ok(match verdict(&tally, config.count, &rules) {
            Verdict::Allow => Decision::Allow,
            Verdict::Pending { missing, reason } => Decision::Pending {
                count: missing,
                role: config.role.as_str().to_owned(),
                reason,
            },
        })
    }
}

// Only the component exports the policy, so that native test builds link no exports.
#[cfg(target_arch = "wasm32")]
runledger_sdk::export_policy!(RequiredApprovals);
