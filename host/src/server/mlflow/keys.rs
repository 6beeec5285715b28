//! MLflow's rule for the keys of params, metrics and tags, as its server (3.17) enforces it in
//! `mlflow.utils.validation`: keys are names that may become file paths, so they contain only
//! letters, digits, underscores, dashes, periods, spaces, slashes and colons, and must not
//! resolve to another path. MLflow's servers on Windows also reject colons, and this one
//! accepts them, as MLflow's servers on Linux and macOS do.

use super::error::{MlflowError, MlflowResult};

/// Maximum length of a key, in characters, as MLflow 3.17 enforces it.
const MAX_KEY_CHARS: usize = 250;

/// Checks a key of a param, metric or tag given in request field `field`. The key must have 1
/// to 250 characters, none of them a control character or one that MLflow rejects. It must not
/// start with `/` or `..`, nor have empty, `.` or `..` path segments, which
/// `posixpath.normpath` would change.
pub(super) fn check_key(field: &str, key: &str) -> MlflowResult<()> {
    check_key_length(field, key)?;
    if let Some(bad) = key.chars().find(|c| !allowed(*c)) {
        return Err(MlflowError::invalid(format!(
            "invalid value '{key}' for parameter '{field}': the character '{bad}' is not \
             allowed; names may only contain letters, digits, underscores (_), dashes (-), \
             periods (.), spaces ( ), colons (:) and slashes (/)"
        )));
    }
    if !is_normal_path(key) {
        return Err(MlflowError::invalid(format!(
            "invalid value '{key}' for parameter '{field}': names may become file paths and \
             must not resolve to another one; remove the leading '/' or '..', and the empty, \
             '.' and '..' path segments"
        )));
    }
    Ok(())
}

fn check_key_length(field: &str, key: &str) -> MlflowResult<()> {
    if key.is_empty() {
        return Err(MlflowError::invalid(format!(
            "missing value for required parameter '{field}': give a name such as 'loss'"
        )));
    }
    let length = key.chars().count();
    if length > MAX_KEY_CHARS {
        return Err(MlflowError::invalid(format!(
            "invalid value for parameter '{field}': the key is {length} characters long; the \
             limit is {MAX_KEY_CHARS}: shorten it"
        )));
    }
    Ok(())
}

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '/' | ':')
}

/// Returns whether `key` is already a normalized relative path that starts with no `..`.
fn is_normal_path(key: &str) -> bool {
    !key.starts_with('/')
        && !key.starts_with("..")
        && key
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_mlflow_names() {
        for key in [
            "loss",
            "val loss",
            "train/loss",
            "mlflow.runName",
            "step-1:a",
            "größe",
            "a..b",
        ] {
            assert!(check_key("key", key).is_ok(), "{key}");
        }
    }

    #[test]
    fn counts_key_length_in_characters() {
        assert!(check_key("key", &"é".repeat(250)).is_ok());
        let error = check_key("key", &"é".repeat(251)).unwrap_err();
        assert!(
            error.message.contains("251 characters"),
            "{}",
            error.message
        );
    }

    #[test]
    fn rejects_characters_mlflow_rejects() {
        for key in ["a=b", "a*", "loss!", "a\\b", "(x)"] {
            let error = check_key("key", key).unwrap_err();
            assert!(error.message.contains(key), "{}", error.message);
        }
    }

    #[test]
    fn rejects_paths_that_resolve_elsewhere() {
        for key in [
            "/abs", "..", "../up", "..a", "a/../b", "a//b", "a/", "./a", ".", "a/.",
        ] {
            assert!(check_key("key", key).is_err(), "{key}");
        }
    }
}
