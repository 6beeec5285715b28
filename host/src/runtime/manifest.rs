//! `plugin.toml`: what a plugin is, what it accepts and what it requests from the host.
//!
//! ```toml
//! name = "hello"
//! version = "0.1.0"
//! kind = "step-executor"
//! description = "Writes a greeting"
//!
//! [params-schema]          # JSON Schema of the step params, written as TOML
//! type = "object"
//!                          # (metric validators and policies declare `[config-schema]`,
//!                          # the JSON Schema of their configuration, instead)
//!
//! [[outputs]]
//! name = "greeting"
//! media-type = "text/plain"
//!
//! [limits]
//! memory-mib = 16
//! timeout-ms = 5000
//! fuel = 1000000000
//! max-output-mib = 64
//!
//! [capabilities]
//! scratch-dir = false
//! ```

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The kind of plugin, which fixes the WIT world its component must implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Runs a pipeline step (`step-executor` world).
    StepExecutor,
    /// Judges a run summary (`metric-validator` world).
    MetricValidator,
    /// Stores artifact bytes (`storage-backend` world).
    StorageBackend,
    /// Decides promotion requests (`policy` world).
    Policy,
}

impl PluginKind {
    /// Returns the WIT world that components of this kind implement.
    pub fn world(self) -> &'static str {
        match self {
            Self::StepExecutor => "step-executor",
            Self::MetricValidator => "metric-validator",
            Self::StorageBackend => "storage-backend",
            Self::Policy => "policy",
        }
    }
}

/// A declared input or output artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArtifactDecl {
    /// Name the step uses for the artifact.
    pub name: String,
    /// Expected media type, such as `text/csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// What the artifact holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// For inputs: whether a pipeline may leave it unwired.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// Limits the plugin requests. The runtime caps each by its operator settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RequestedLimits {
    /// Largest linear memory, in MiB.
    pub memory_mib: Option<u64>,
    /// Wall-clock time of one call, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Fuel budget of one call (about one unit per WebAssembly instruction).
    pub fuel: Option<u64>,
    /// Largest single output artifact, in MiB.
    pub max_output_mib: Option<u64>,
}

/// Host capabilities beyond the default of none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Capabilities {
    /// An empty temporary directory, preopened as `/scratch` and deleted after the call.
    ///
    /// NOTE: the directory's size is not limited, and it lives on the host's temporary
    /// filesystem; a process killed with SIGKILL leaves it behind.
    #[serde(default)]
    pub scratch_dir: bool,
}

/// The parsed and validated contents of a `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// Plugin name: lowercase letters, digits and `-`.
    pub name: String,
    /// Semantic version, such as `0.1.0`.
    pub version: String,
    /// Plugin kind.
    pub kind: PluginKind,
    /// One-line description.
    pub description: String,
    /// JSON Schema of a step executor's params.
    #[serde(default = "empty_object_schema")]
    pub params_schema: serde_json::Value,
    /// JSON Schema of a metric validator's or policy's configuration; a JSON object with any
    /// keys when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<serde_json::Value>,
    /// Declared input artifacts.
    #[serde(default)]
    pub inputs: Vec<ArtifactDecl>,
    /// Declared output artifacts.
    #[serde(default)]
    pub outputs: Vec<ArtifactDecl>,
    /// Requested limits.
    #[serde(default)]
    pub limits: RequestedLimits,
    /// Requested capabilities.
    #[serde(default)]
    pub capabilities: Capabilities,
}

fn empty_object_schema() -> serde_json::Value {
    serde_json::json!({ "type": "object" })
}

/// Why a manifest was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read plugin manifest {path}: {source}")]
    Read {
        /// The manifest path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// TOML syntax, a missing field, a wrong type or an unknown key.
    #[error("invalid plugin manifest {path}: {message}")]
    Parse {
        /// The manifest path.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The fields parse but their values are unusable.
    #[error("invalid plugin manifest {path}: {message}")]
    Invalid {
        /// The manifest path.
        path: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|error| ManifestError::Parse {
            path: origin.to_owned(),
            message: error.to_string().trim_end().replace('\n', " "),
        })?;
        manifest
            .validate()
            .map_err(|message| ManifestError::Invalid {
                path: origin.to_owned(),
                message,
            })?;
        Ok(manifest)
    }

    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Returns the parsed semantic version, valid after [`Manifest::parse`].
    pub fn semver(&self) -> semver::Version {
        semver::Version::parse(&self.version).unwrap_or_else(|_| semver::Version::new(0, 0, 0))
    }

    fn validate(&self) -> Result<(), String> {
        validate_name("name", &self.name)?;
        semver::Version::parse(&self.version).map_err(|error| {
            format!(
                "version `{}` is not a semantic version such as 1.2.3: {error}",
                self.version
            )
        })?;
        if self.description.trim().is_empty() {
            return Err("description is empty: say in one line what the plugin does".into());
        }
        validate_decls("inputs", &self.inputs)?;
        validate_decls("outputs", &self.outputs)?;
        self.validate_limits()?;
        validate_object_schema("params-schema", "params", &self.params_schema)?;
        self.validate_config_schema()
    }

    fn validate_config_schema(&self) -> Result<(), String> {
        let Some(schema) = &self.config_schema else {
            return Ok(());
        };
        if !matches!(self.kind, PluginKind::MetricValidator | PluginKind::Policy) {
            return Err(format!(
                "config-schema applies to metric-validator and policy plugins, but this plugin \
                 is a {}: declare its params with params-schema",
                self.kind.world()
            ));
        }
        validate_object_schema("config-schema", "configurations", schema)
    }

    /// Returns the schema configurations of this validator or policy must match.
    pub fn config_schema(&self) -> serde_json::Value {
        self.config_schema
            .clone()
            .unwrap_or_else(empty_object_schema)
    }

    fn validate_limits(&self) -> Result<(), String> {
        let limits = &self.limits;
        let fields = [
            ("memory-mib", limits.memory_mib),
            ("timeout-ms", limits.timeout_ms),
            ("fuel", limits.fuel),
            ("max-output-mib", limits.max_output_mib),
        ];
        for (field, value) in fields {
            if value == Some(0) {
                return Err(format!(
                    "limits.{field} is 0: give a positive value or omit it"
                ));
            }
        }
        if limits.max_output_mib.is_some_and(|mib| mib > 1 << 24) {
            return Err("limits.max-output-mib is over 16 TiB: give a realistic size".into());
        }
        if limits.memory_mib.is_some_and(|mib| mib > 4096) {
            return Err(format!(
                "limits.memory-mib is {}, but a 32-bit WebAssembly memory holds at most 4096 MiB",
                limits.memory_mib.unwrap_or_default()
            ));
        }
        Ok(())
    }
}

fn validate_object_schema(
    field: &str,
    what: &str,
    schema: &serde_json::Value,
) -> Result<(), String> {
    if let Some(kind) = schema.get("type")
        && kind != "object"
    {
        return Err(format!(
            "{field} has type {kind}, but {what} are always a JSON object: use type = \"object\""
        ));
    }
    super::schema::compile_schema(schema)
        .map(|_| ())
        .map_err(|error| format!("{field} is not a valid JSON Schema: {error}"))
}

fn validate_name(field: &str, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{field} `{name}` is invalid: use 1 to 64 lowercase letters, digits, `-` or `_`, \
             starting with a letter"
        ))
    }
}

fn validate_decls(field: &str, decls: &[ArtifactDecl]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for decl in decls {
        validate_name(&format!("{field} name"), &decl.name)?;
        if !seen.insert(decl.name.as_str()) {
            return Err(format!("{field} declares `{}` twice", decl.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "hello"
version = "0.1.0"
kind = "step-executor"
description = "says hello"
"#;

    #[test]
    fn parses_minimal_manifest_with_defaults() {
        let manifest = Manifest::parse(MINIMAL, "plugin.toml").unwrap();

        assert_eq!(manifest.id(), "hello@0.1.0");
        assert_eq!(manifest.kind, PluginKind::StepExecutor);
        assert_eq!(manifest.params_schema["type"], "object");
    }

    #[test]
    fn rejects_unknown_key_naming_it() {
        let text = format!("{MINIMAL}colour = \"blue\"\n");

        let error = Manifest::parse(&text, "plugin.toml")
            .unwrap_err()
            .to_string();

        assert!(error.contains("colour"), "{error}");
    }

    #[test]
    fn rejects_missing_field_naming_it() {
        let text = MINIMAL.replace("kind = \"step-executor\"\n", "");

        let error = Manifest::parse(&text, "plugin.toml")
            .unwrap_err()
            .to_string();

        assert!(error.contains("missing field `kind`"), "{error}");
    }

    #[test]
    fn rejects_wrong_type() {
        let text = format!("{MINIMAL}[limits]\nmemory-mib = \"lots\"\n");

        let error = Manifest::parse(&text, "plugin.toml")
            .unwrap_err()
            .to_string();

        assert!(error.contains("memory-mib"), "{error}");
    }

    #[test]
    fn rejects_unknown_kind() {
        let text = MINIMAL.replace("step-executor", "step-exekutor");

        let error = Manifest::parse(&text, "plugin.toml")
            .unwrap_err()
            .to_string();

        assert!(error.contains("step-exekutor"), "{error}");
    }

    #[test]
    fn rejects_bad_version_and_name() {
        let bad_version = MINIMAL.replace("0.1.0", "one");
        let bad_name = MINIMAL.replace("\"hello\"", "\"Hello World\"");

        let version_error = Manifest::parse(&bad_version, "p").unwrap_err().to_string();
        let name_error = Manifest::parse(&bad_name, "p").unwrap_err().to_string();

        assert!(
            version_error.contains("semantic version"),
            "{version_error}"
        );
        assert!(name_error.contains("Hello World"), "{name_error}");
    }

    #[test]
    fn rejects_invalid_params_schema() {
        let text = format!("{MINIMAL}[params-schema]\ntype = \"objekt\"\n");

        let error = Manifest::parse(&text, "plugin.toml")
            .unwrap_err()
            .to_string();

        assert!(error.contains("params-schema"), "{error}");
    }

    #[test]
    fn rejects_params_schema_that_is_not_an_object() {
        let text = format!("{MINIMAL}[params-schema]\ntype = \"string\"\n");

        let error = Manifest::parse(&text, "plugin.toml")
            .unwrap_err()
            .to_string();

        assert!(error.contains("always a JSON object"), "{error}");
    }

    #[test]
    fn accepts_config_schema_of_a_policy() {
        let text = MINIMAL.replace("step-executor", "policy")
            + "[config-schema]\ntype = \"object\"\nrequired = [\"count\"]\n";

        let manifest = Manifest::parse(&text, "plugin.toml").unwrap();

        assert_eq!(manifest.config_schema()["required"][0], "count");
    }

    #[test]
    fn config_schema_defaults_to_any_object() {
        let text = MINIMAL.replace("step-executor", "metric-validator");

        let manifest = Manifest::parse(&text, "plugin.toml").unwrap();

        assert_eq!(
            manifest.config_schema(),
            serde_json::json!({ "type": "object" })
        );
    }

    #[test]
    fn rejects_config_schema_of_a_step_executor() {
        let text = format!("{MINIMAL}[config-schema]\ntype = \"object\"\n");

        let error = Manifest::parse(&text, "plugin.toml")
            .unwrap_err()
            .to_string();

        assert!(error.contains("config-schema applies to"), "{error}");
    }

    #[test]
    fn rejects_config_schema_that_is_not_an_object() {
        let text =
            MINIMAL.replace("step-executor", "policy") + "[config-schema]\ntype = \"array\"\n";

        let error = Manifest::parse(&text, "plugin.toml")
            .unwrap_err()
            .to_string();

        assert!(error.contains("config-schema has type"), "{error}");
    }

    #[test]
    fn rejects_zero_limit_and_duplicate_output() {
        let zero = format!("{MINIMAL}[limits]\nfuel = 0\n");
        let duplicate = format!("{MINIMAL}[[outputs]]\nname = \"a\"\n[[outputs]]\nname = \"a\"\n");

        let zero_error = Manifest::parse(&zero, "p").unwrap_err().to_string();
        let duplicate_error = Manifest::parse(&duplicate, "p").unwrap_err().to_string();

        assert!(zero_error.contains("limits.fuel"), "{zero_error}");
        assert!(duplicate_error.contains("`a` twice"), "{duplicate_error}");
    }
}
