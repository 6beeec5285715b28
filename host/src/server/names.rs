//! Checks of names that clients choose, such as artifact names and metric keys.

use super::error::ApiError;

/// Longest accepted artifact name, in bytes.
const MAX_ARTIFACT_NAME_BYTES: usize = 1024;

/// Longest accepted key of a metric, param or tag, in bytes. Keys are names, and the indexes
/// over them stay small.
const MAX_KEY_BYTES: usize = 250;

/// Checks a key of a metric, param or tag, or a run name, given in `field`: not empty, at most
/// 250 bytes, and without control characters.
pub fn validate_key(field: &str, key: &str) -> Result<(), ApiError> {
    let problem = if key.is_empty() {
        Some("is empty; give a name such as `loss`")
    } else if key.len() > MAX_KEY_BYTES {
        Some("is longer than 250 bytes; use a shorter name")
    } else if key.chars().any(char::is_control) {
        Some("contains a control character; use printable characters")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(ApiError::invalid_field(
            field,
            format!("`{}` {problem}", key.escape_debug()),
        )),
    }
}

/// Checks an artifact name given in `field`: a relative path of `/`-separated segments, none of
/// them empty, `.` or `..`, without NUL bytes, control characters or backslashes.
pub fn validate_artifact_name(field: &str, name: &str) -> Result<(), ApiError> {
    let problem = artifact_name_problem(name);
    match problem {
        None => Ok(()),
        Some(problem) => Err(ApiError::invalid_field(
            field,
            format!("artifact name `{}` {problem}", name.escape_debug()),
        )),
    }
}

fn artifact_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty; give a relative path such as `model/weights.bin`");
    }
    if name.len() > MAX_ARTIFACT_NAME_BYTES {
        return Some("is longer than 1024 bytes; use a shorter path");
    }
    if name.contains('\0') || name.chars().any(char::is_control) {
        return Some("contains a NUL or control character; use printable characters");
    }
    if name.contains('\\') {
        return Some("contains a backslash; separate path segments with `/`");
    }
    if name.starts_with('/') {
        return Some("is an absolute path; give a path relative to the run");
    }
    if name
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Some("has an empty, `.` or `..` segment; give a plain relative path");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_relative_paths() {
        assert!(validate_artifact_name("name", "model/weights.bin").is_ok());
        assert!(validate_artifact_name("name", "metrics.json").is_ok());
    }

    #[test]
    fn rejects_escaping_and_odd_names() {
        for name in [
            "",
            "../etc/passwd",
            "a/../b",
            "/abs",
            "a\\b",
            "a\0b",
            "a//b",
            "./a",
        ] {
            let error = validate_artifact_name("name", name).unwrap_err();
            assert_eq!(error.details[0].field, "name", "{name:?}");
        }
    }
}
