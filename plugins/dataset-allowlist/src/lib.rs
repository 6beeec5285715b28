//! `dataset-allowlist` policy: denies a promotion when the lineage of the model version
//! includes a dataset whose digest (and, when configured, name) is not on an allowlist, or
//! includes no dataset at all.
//!
//! Build the component with `cargo xtask build-plugins`; run the unit tests natively with
//! `cd plugins && cargo test --target x86_64-unknown-linux-gnu -p dataset-allowlist`.

pub mod allowlist;

use allowlist::{Allowlist, Dataset, Subject};
use runledger_sdk::{Decision, Error, Policy, PromotionRequest, Result};
use serde::Deserialize;

/// The policy's configuration, as described by `config-schema` in `plugin.toml`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Config {
    digests: Vec<String>,
    names: Option<Vec<String>>,
}

impl Config {
    /// Checks the digests, which the schema also constrains, and builds the allowlist.
    fn into_allowlist(self) -> std::result::Result<Allowlist, String> {
        if let Some(bad) = self.digests.iter().find(|digest| !is_sha256_hex(digest)) {
            return Err(format!(
                "digest `{bad}` is not a SHA-256 digest; give 64 lowercase hex characters"
            ));
        }
        Ok(Allowlist {
            digests: self.digests.into_iter().collect(),
            names: self.names.map(|names| names.into_iter().collect()),
        })
    }
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// The `dataset-allowlist` policy.
pub struct DatasetAllowlist;

impl Policy for DatasetAllowlist {
    fn decide(request: PromotionRequest, config: serde_json::Value) -> Result<Decision> {
        let config: Config = runledger_sdk::config(config)?;
        let allowlist = config.into_allowlist().map_err(Error::invalid_params)?;

        let datasets: Vec<Dataset> = request
            .lineage
            .datasets
            .iter()
            .map(|dataset| Dataset {
                name: &dataset.name,
                digest: &dataset.digest,
            })
            .collect();
        let subject = Subject {
            model: &request.model,
            version: request.version,
            artifact_digest: &request.lineage.artifact_digest,
        };

        Ok(match allowlist.deny_reason(&datasets, &subject) {
            Some(reason) => Decision::Deny(reason),
            None => Decision::Allow,
        })
    }
}

// Only the component exports the policy, so that native test builds link no exports.
#[cfg(target_arch = "wasm32")]
runledger_sdk::export_policy!(DatasetAllowlist);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_digest() {
        let config = Config {
            digests: vec!["sha256:abc".into()],
            names: None,
        };
        let message = config.into_allowlist().unwrap_err();
        assert_eq!(
            message,
            "digest `sha256:abc` is not a SHA-256 digest; give 64 lowercase hex characters"
        );
    }
}
