//! Pipeline definitions in YAML, validated against the JSON Schema in
//! `host/schemas/pipeline.schema.json`.
//!
//! ```yaml
//! name: wine-quality
//! inputs:
//!   wine: { path: data/winequality-red.csv, media-type: text/csv }
//! params: { seed: 42 }
//! steps:
//!   - name: ingest
//!     plugin: csv-ingest@0.1.0
//!     inputs: { source: inputs.wine }
//!   - name: split
//!     plugin: split
//!     inputs: { table: ingest.table }
//!     params: { seed: "${params.seed}" }
//!     retries: 2
//!     timeout: 30s
//!   - name: label
//!     executor: external
//!     inputs: { rows: split.train }
//!     outputs: [labels]
//!     timeout: 2h
//! ```
//!
//! A step with `executor: external` runs no plugin: it declares its `outputs`, and the run
//! waits until a client reports them over the API.
//!
//! An optional `validate:` list names metric-validator plugins that check a run after it
//! succeeds, each with its own `config`:
//!
//! ```yaml
//! validate:
//!   - plugin: metric-threshold@0.1.0
//!     config: { rules: ["test_rmse <= 0.75"] }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

/// The JSON Schema of pipeline definitions.
pub const PIPELINE_SCHEMA: &str = include_str!("../../schemas/pipeline.schema.json");

/// A pipeline input: a file relative to the definition, or a stored artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InputSpec {
    /// Path of a file, relative to the pipeline file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// SHA-256 of an artifact already in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Media type recorded for the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

/// One step of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StepSpec {
    /// Unique step name.
    pub name: String,
    /// The kind of executor that runs the step.
    #[serde(default, skip_serializing_if = "StepExecutor::is_wasm")]
    pub executor: StepExecutor,
    /// `NAME` or `NAME@VERSION`; required for a `wasm` step, absent for an `external` one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Output names of an `external` step; plugins declare theirs in their manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// Input name to `inputs.NAME` or `STEP.OUTPUT`.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Step params, possibly referencing pipeline params.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Retries after a failed attempt.
    #[serde(default)]
    pub retries: u32,
    /// Wall-clock limit per attempt, such as `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Whether the step may reuse an earlier identical step run's outputs.
    #[serde(default = "default_true")]
    pub cache: bool,
}

fn default_true() -> bool {
    true
}

/// The kind of executor that runs a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepExecutor {
    /// A step-executor plugin in the sandbox.
    #[default]
    Wasm,
    /// A client outside the sandbox, which reports the step's outputs over the API.
    External,
}

impl StepExecutor {
    /// Returns the name used in definitions and recorded with each step run.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wasm => "wasm",
            Self::External => "external",
        }
    }

    fn is_wasm(&self) -> bool {
        *self == Self::Wasm
    }
}

/// A parsed pipeline definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PipelineDefinition {
    /// Pipeline name.
    pub name: String,
    /// What the pipeline does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Project of its runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Named inputs.
    #[serde(default)]
    pub inputs: BTreeMap<String, InputSpec>,
    /// Default params.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Steps in definition order.
    pub steps: Vec<StepSpec>,
    /// Metric validators that check the run after it succeeds, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validate: Vec<ValidatorSpec>,
}

/// A metric-validator plugin and its configuration, as listed under `validate:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorSpec {
    /// `NAME` or `NAME@VERSION` of a metric-validator plugin.
    pub plugin: String,
    /// Configuration checked against the plugin's config schema; `{}` when omitted.
    #[serde(default = "empty_object")]
    pub config: Value,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// One problem in a definition, with the place it sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where: a JSON pointer such as `/steps/2/inputs/train`, or a step name.
    pub place: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// Every problem found in a definition before anything ran.
#[derive(Debug, Clone, thiserror::Error, Serialize)]
#[error("invalid pipeline {origin}:\n{}", render(.problems))]
pub struct DefinitionError {
    /// The definition's file name or other origin.
    pub origin: String,
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl DefinitionError {
    pub(crate) fn single(origin: &str, place: &str, message: impl Into<String>) -> Self {
        Self {
            origin: origin.to_owned(),
            problems: vec![Problem {
                place: place.to_owned(),
                message: message.into(),
            }],
        }
    }
}

fn schema_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: Value =
            serde_json::from_str(PIPELINE_SCHEMA).expect("the bundled pipeline schema is JSON");
        jsonschema::validator_for(&schema).expect("the bundled pipeline schema is valid")
    })
}

impl PipelineDefinition {
    /// Parses YAML text and checks it against the pipeline schema. `origin` names the text in
    /// errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, DefinitionError> {
        let value: Value = serde_yaml_ng::from_str::<UniqueKeys>(text)
            .map(|v| v.0)
            .map_err(|error| {
                DefinitionError::single(origin, "/", format!("invalid YAML: {error}"))
            })?;
        let problems: Vec<Problem> = schema_validator()
            .iter_errors(&value)
            .map(|error| Problem {
                place: pointer_or_root(&error.instance_path().to_string()),
                message: format!("{error} (rule `{}`)", error.kind().keyword()),
            })
            .collect();
        if !problems.is_empty() {
            return Err(DefinitionError {
                origin: origin.to_owned(),
                problems,
            });
        }
        serde_json::from_value(value)
            .map_err(|error| DefinitionError::single(origin, "/", error.to_string()))
    }
}

/// A JSON value read from YAML that rejects a mapping with the same key twice, which YAML
/// parsers otherwise resolve silently by keeping the last value.
struct UniqueKeys(Value);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let UniqueKeys(value) = map.next_value()?;
            if object.insert(key.clone(), value).is_some() {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key `{key}`: each key may appear once in a mapping"
                )));
            }
        }
        Ok(Value::Object(object))
    }
}

fn pointer_or_root(pointer: &str) -> String {
    if pointer.is_empty() {
        "/".to_owned()
    } else {
        pointer.to_owned()
    }
}

/// Parses a step timeout such as `250ms`, `30s`, `5m` or `2h`.
pub fn parse_timeout(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits.parse().ok().filter(|amount| *amount > 0)?;
    let millis = match unit {
        "ms" => amount,
        "s" => amount.checked_mul(1_000)?,
        "m" => amount.checked_mul(60_000)?,
        "h" => amount.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "
name: demo
inputs:
  data: { path: data.csv, media-type: text/csv }
params: { seed: 1 }
steps:
  - name: a
    plugin: hello@0.1.0
    inputs: { source: inputs.data }
    params: { name: \"${params.seed}\" }
    retries: 1
    timeout: 30s
";

    #[test]
    fn parses_valid_definition() {
        let definition = PipelineDefinition::parse(VALID, "demo.yaml").unwrap();

        assert_eq!(definition.name, "demo");
        assert_eq!(definition.steps[0].retries, 1);
        assert!(definition.steps[0].cache);
        assert_eq!(definition.inputs["data"].path.as_deref(), Some("data.csv"));
    }

    #[test]
    fn schema_errors_name_their_place() {
        let text = VALID
            .replace("retries: 1", "retries: -1")
            .replace("timeout: 30s", "tmeout: 1");

        let error = PipelineDefinition::parse(&text, "demo.yaml").unwrap_err();

        let places: Vec<&str> = error.problems.iter().map(|p| p.place.as_str()).collect();
        assert!(places.contains(&"/steps/0/retries"), "{error}");
        assert!(places.contains(&"/steps/0"), "{error}");
        assert!(error.to_string().contains("tmeout"), "{error}");
    }

    #[test]
    fn yaml_syntax_error_has_position() {
        let error = PipelineDefinition::parse("name: [unclosed", "bad.yaml").unwrap_err();

        assert!(error.to_string().contains("line"), "{error}");
    }

    #[test]
    fn rejects_duplicate_keys() {
        let text = VALID.replace("retries: 1", "retries: 1\n    retries: 2");

        let error = PipelineDefinition::parse(&text, "demo.yaml").unwrap_err();

        assert!(
            error.to_string().contains("duplicate key `retries`"),
            "{error}"
        );
    }

    const EXTERNAL: &str = "
name: demo
steps:
  - name: train
    executor: external
    inputs: { table: inputs.data }
    outputs: [model]
    timeout: 2h
";

    #[test]
    fn parses_external_step() {
        let definition = PipelineDefinition::parse(EXTERNAL, "demo.yaml").unwrap();

        let step = &definition.steps[0];
        assert_eq!(step.executor, StepExecutor::External);
        assert_eq!(step.plugin, None);
        assert_eq!(step.outputs, ["model"]);
    }

    #[test]
    fn external_step_needs_outputs() {
        let text = EXTERNAL.replace("    outputs: [model]\n", "");

        let error = PipelineDefinition::parse(&text, "demo.yaml").unwrap_err();

        assert_eq!(error.problems[0].place, "/steps/0", "{error}");
        assert!(error.to_string().contains("\"outputs\""), "{error}");
    }

    #[test]
    fn plugin_step_needs_plugin() {
        let text = VALID.replace("    plugin: hello@0.1.0\n", "");

        let error = PipelineDefinition::parse(&text, "demo.yaml").unwrap_err();

        assert_eq!(error.problems[0].place, "/steps/0", "{error}");
        assert!(error.to_string().contains("\"plugin\""), "{error}");
    }

    #[test]
    fn rejects_unknown_executor() {
        let text = EXTERNAL.replace("executor: external", "executor: gpu");

        let error = PipelineDefinition::parse(&text, "demo.yaml").unwrap_err();

        let places: Vec<&str> = error.problems.iter().map(|p| p.place.as_str()).collect();
        assert!(places.contains(&"/steps/0/executor"), "{error}");
    }

    #[test]
    fn parses_validators() {
        let text = format!(
            "{VALID}validate:\n  - plugin: metric-threshold@0.1.0\n    config: {{ rules: [\"a < 1\"] }}\n  - plugin: finite-metrics\n"
        );

        let definition = PipelineDefinition::parse(&text, "demo.yaml").unwrap();

        assert_eq!(definition.validate.len(), 2);
        assert_eq!(definition.validate[0].plugin, "metric-threshold@0.1.0");
        assert_eq!(
            definition.validate[0].config,
            serde_json::json!({ "rules": ["a < 1"] })
        );
        assert_eq!(definition.validate[1].config, serde_json::json!({}));
    }

    #[test]
    fn rejects_validator_without_plugin() {
        let text = format!("{VALID}validate:\n  - config: {{}}\n    severity: warning\n");

        let error = PipelineDefinition::parse(&text, "demo.yaml").unwrap_err();

        let places: Vec<&str> = error.problems.iter().map(|p| p.place.as_str()).collect();
        assert_eq!(places, ["/validate/0", "/validate/0"], "{error}");
        assert!(error.to_string().contains("\"plugin\""), "{error}");
        assert!(error.to_string().contains("severity"), "{error}");
    }

    #[test]
    fn parses_timeouts() {
        assert_eq!(parse_timeout("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_timeout("5 m"), None);
        assert_eq!(parse_timeout("s"), None);
        assert_eq!(parse_timeout("0s"), None);
    }
}
