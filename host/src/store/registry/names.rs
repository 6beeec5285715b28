//! Naming rules of models, aliases and tag keys, checked in the store so every caller applies
//! the same rule.

use crate::store::StoreError;

/// Maximum length of a model name, in characters.
const MAX_MODEL_NAME: usize = 200;

/// Maximum length of an alias, in characters.
const MAX_ALIAS: usize = 64;

/// Maximum length of a tag key, in characters; the limit MLflow applies to tag keys.
const MAX_TAG_KEY: usize = 250;

const MODEL_NAME_RULE: &str = "a model name has 1 to 200 ASCII letters, digits, `-`, `_` or \
    `.`, and starts with a letter or digit";

const ALIAS_RULE: &str = "an alias has 1 to 64 lowercase ASCII letters, digits, `-` or `_`, \
    and `latest` and `v` followed by digits are reserved because they name versions";

const TAG_KEY_RULE: &str = "a tag key has 1 to 250 characters and no control characters";

/// Checks a model name: 1 to 200 ASCII letters, digits, `-`, `_` or `.`, starting with a
/// letter or digit, so the name is safe in URL paths and file names.
pub fn check_model_name(name: &str) -> Result<(), StoreError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let valid = name.len() <= MAX_MODEL_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(allowed);
    ok_or_invalid(valid, "model name", name, MODEL_NAME_RULE)
}

/// Checks an alias: 1 to 64 lowercase ASCII letters, digits, `-` or `_`, other than `latest`
/// and `v` followed by digits, which would read as version references.
pub fn check_alias(alias: &str) -> Result<(), StoreError> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_');
    let valid = !alias.is_empty()
        && alias.len() <= MAX_ALIAS
        && alias.chars().all(allowed)
        && !is_reserved_alias(alias);
    ok_or_invalid(valid, "alias", alias, ALIAS_RULE)
}

/// Checks a tag key of a model or version: 1 to 250 characters without control characters.
pub fn check_tag_key(key: &str) -> Result<(), StoreError> {
    let valid =
        !key.is_empty() && key.chars().count() <= MAX_TAG_KEY && !key.chars().any(char::is_control);
    ok_or_invalid(valid, "tag key", key, TAG_KEY_RULE)
}

fn is_reserved_alias(alias: &str) -> bool {
    let version_like = alias
        .strip_prefix('v')
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()));
    alias == "latest" || version_like
}

fn ok_or_invalid(
    valid: bool,
    what: &'static str,
    value: &str,
    rule: &'static str,
) -> Result<(), StoreError> {
    if valid {
        return Ok(());
    }
    // A rejected value may be anything a client sent, so the message shows only its start.
    let shown: String = value.chars().take(MAX_TAG_KEY + 1).collect();
    Err(StoreError::InvalidName {
        what,
        value: shown,
        rule,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_follow_rule() {
        for name in ["wine-quality", "a", "Model_2.1", &"m".repeat(200)] {
            assert!(check_model_name(name).is_ok(), "{name}");
        }
        for name in [
            "",
            "-lead",
            ".hidden",
            "has space",
            "slash/name",
            "ünï",
            &"m".repeat(201),
        ] {
            let error = check_model_name(name).unwrap_err();
            assert!(
                matches!(
                    error,
                    StoreError::InvalidName {
                        what: "model name",
                        ..
                    }
                ),
                "{name}: {error}"
            );
        }
    }

    #[test]
    fn aliases_follow_rule() {
        for alias in [
            "production",
            "champion-2",
            "a_b",
            "v",
            "v1a",
            "version1",
            "latest2",
        ] {
            assert!(check_alias(alias).is_ok(), "{alias}");
        }
        for alias in [
            "",
            "Production",
            "v1",
            "v007",
            "latest",
            "with space",
            &"a".repeat(65),
        ] {
            let error = check_alias(alias).unwrap_err();
            assert!(
                matches!(error, StoreError::InvalidName { what: "alias", .. }),
                "{alias}: {error}"
            );
        }
    }

    #[test]
    fn tag_keys_follow_rule() {
        assert!(check_tag_key("owner team").is_ok());
        assert!(check_tag_key(&"k".repeat(250)).is_ok());
        for key in ["", "line\nbreak", &"k".repeat(251)] {
            let error = check_tag_key(key).unwrap_err();
            assert!(
                matches!(
                    error,
                    StoreError::InvalidName {
                        what: "tag key",
                        ..
                    }
                ),
                "{key}: {error}"
            );
        }
    }
}
