//! Checking the datasets of a model version's lineage against an allowlist.

use std::collections::BTreeSet;

/// The datasets a promotion may use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allowlist {
    /// Allowed lowercase hex SHA-256 digests.
    pub digests: BTreeSet<String>,
    /// Allowed dataset names; `None` allows any name.
    pub names: Option<BTreeSet<String>>,
}

/// A dataset of the lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dataset<'a> {
    /// The name the run gave the dataset.
    pub name: &'a str,
    /// Hex SHA-256 of its content.
    pub digest: &'a str,
}

/// The version under promotion, named in messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Subject<'a> {
    /// The registered model.
    pub model: &'a str,
    /// The version under promotion.
    pub version: u64,
    /// SHA-256 of the version's artifact.
    pub artifact_digest: &'a str,
}

impl Allowlist {
    /// Returns why `dataset` is not allowed, or `None` when it is.
    fn violation(&self, dataset: &Dataset) -> Option<&'static str> {
        let digest_allowed = self.digests.contains(&dataset.digest.to_ascii_lowercase());
        let name_allowed = self
            .names
            .as_ref()
            .is_none_or(|names| names.contains(dataset.name));
        match (digest_allowed, name_allowed) {
            (true, true) => None,
            (false, true) => Some("digest not on the allowlist"),
            (true, false) => Some("name not on the allowlist"),
            (false, false) => Some("name and digest not on the allowlist"),
        }
    }

    /// Returns the reason to deny the promotion, or `None` to allow it. Offending datasets
    /// are listed sorted by name and digest.
    pub fn deny_reason(&self, datasets: &[Dataset], subject: &Subject) -> Option<String> {
        if datasets.is_empty() {
            return Some(format!(
                "no training data recorded: the lineage of version {} of model `{}` (artifact \
                 {}) has no datasets, so none can be checked against the allowlist",
                subject.version, subject.model, subject.artifact_digest
            ));
        }

        let mut sorted = datasets.to_vec();
        sorted.sort();
        sorted.dedup();
        let offending: Vec<String> = sorted
            .iter()
            .filter_map(|dataset| {
                self.violation(dataset)
                    .map(|why| format!("`{}` {} ({why})", dataset.name, dataset.digest))
            })
            .collect();
        if offending.is_empty() {
            return None;
        }
        let count = offending.len();
        let noun = if count == 1 { "dataset" } else { "datasets" };
        Some(format!(
            "{count} {noun} in the lineage of version {} of model `{}` not allowed: {}",
            subject.version,
            subject.model,
            offending.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINE: &str = "a3f1c2d4e5b6a7980112233445566778899aabbccddeeff00112233445566778";
    const OTHER: &str = "0000000000000000000000000000000000000000000000000000000000000001";
    const SUBJECT: Subject<'static> = Subject {
        model: "wine-quality",
        version: 2,
        artifact_digest: "ff00",
    };

    fn allowlist(digests: &[&str], names: Option<&[&str]>) -> Allowlist {
        Allowlist {
            digests: digests.iter().map(|digest| digest.to_string()).collect(),
            names: names.map(|names| names.iter().map(|name| name.to_string()).collect()),
        }
    }

    #[test]
    fn allows_listed_digests() {
        let list = allowlist(&[WINE, OTHER], None);
        let datasets = [Dataset {
            name: "wine",
            digest: WINE,
        }];
        assert_eq!(list.deny_reason(&datasets, &SUBJECT), None);
    }

    #[test]
    fn denies_unlisted_digest_with_full_digest() {
        let list = allowlist(&[WINE], None);
        let datasets = [
            Dataset {
                name: "wine",
                digest: WINE,
            },
            Dataset {
                name: "extra",
                digest: OTHER,
            },
        ];
        let reason = list.deny_reason(&datasets, &SUBJECT).unwrap();
        assert_eq!(
            reason,
            format!(
                "1 dataset in the lineage of version 2 of model `wine-quality` not allowed: \
                 `extra` {OTHER} (digest not on the allowlist)"
            )
        );
    }

    #[test]
    fn lists_every_offender_sorted() {
        let list = allowlist(&[WINE], Some(&["wine"]));
        let datasets = [
            Dataset {
                name: "zeta",
                digest: OTHER,
            },
            Dataset {
                name: "alpha",
                digest: WINE,
            },
            Dataset {
                name: "wine",
                digest: OTHER,
            },
            Dataset {
                name: "wine",
                digest: WINE,
            },
        ];
        let reason = list.deny_reason(&datasets, &SUBJECT).unwrap();
        assert!(reason.starts_with("3 datasets in the lineage"), "{reason}");
        let expected = format!(
            "`alpha` {WINE} (name not on the allowlist); `wine` {OTHER} (digest not on the \
             allowlist); `zeta` {OTHER} (name and digest not on the allowlist)"
        );
        assert!(reason.ends_with(&expected), "{reason}");
    }

    #[test]
    fn denies_empty_lineage() {
        let list = allowlist(&[WINE], None);
        let reason = list.deny_reason(&[], &SUBJECT).unwrap();
        assert!(reason.starts_with("no training data recorded"), "{reason}");
        assert!(reason.contains("(artifact ff00)"), "{reason}");
    }

    #[test]
    fn compares_digests_case_insensitively() {
        let list = allowlist(&[WINE], None);
        let upper = WINE.to_ascii_uppercase();
        let datasets = [Dataset {
            name: "wine",
            digest: &upper,
        }];
        assert_eq!(list.deny_reason(&datasets, &SUBJECT), None);
    }
}
