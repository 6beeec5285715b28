//! Bodies of the ingest routes shared by several of them, and the checks that turn request
//! values into store values, naming the field at fault.

use crate::server::error::{ApiError, ApiResult};
use crate::server::names::validate_key;
use crate::store::{
    ExternalRunRecord, LinkedArtifact, NewMetric, RunSource, RunStatus, StepRunDetail, StepStatus,
};
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// A metric value: a JSON number, or one of the strings `NaN`, `Infinity` and `-Infinity`,
/// which JSON numbers cannot express.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct MetricValue(pub(super) f64);

impl<'de> Deserialize<'de> for MetricValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MetricValueVisitor)
    }
}

struct MetricValueVisitor;

impl Visitor<'_> for MetricValueVisitor {
    type Value = MetricValue;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .write_str("a number, or one of the strings \"NaN\", \"Infinity\" and \"-Infinity\"")
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<MetricValue, E> {
        Ok(MetricValue(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<MetricValue, E> {
        Ok(MetricValue(value as f64))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<MetricValue, E> {
        Ok(MetricValue(value as f64))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<MetricValue, E> {
        match value {
            "NaN" => Ok(MetricValue(f64::NAN)),
            "Infinity" => Ok(MetricValue(f64::INFINITY)),
            "-Infinity" => Ok(MetricValue(f64::NEG_INFINITY)),
            other => Err(E::invalid_value(Unexpected::Str(other), &self)),
        }
    }
}

impl PartialSchema for MetricValue {
    fn schema() -> RefOr<Schema> {
        let number = ObjectBuilder::new().schema_type(Type::Number);
        let special = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["NaN", "Infinity", "-Infinity"]));
        OneOfBuilder::new()
            .item(number)
            .item(special)
            .description(Some(
                "A number, or `NaN`, `Infinity` or `-Infinity` as a string",
            ))
            .into()
    }
}

impl ToSchema for MetricValue {}

/// One metric value in a request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricBody {
    /// Metric name: 1 to 250 bytes without control characters.
    key: String,
    /// The value.
    value: MetricValue,
    /// Training step or iteration, or 0 when omitted.
    #[serde(default)]
    step: Option<i64>,
    /// Time of measurement in milliseconds since the Unix epoch, or the time of the request
    /// when omitted.
    #[serde(default)]
    timestamp: Option<i64>,
    /// The step run that measured the value. The value belongs to the run when omitted.
    #[serde(default)]
    step_run_id: Option<String>,
}

/// Checks metric values of a request and converts them, naming a bad one as
/// `metrics[INDEX].FIELD`.
pub(super) fn new_metrics(items: Vec<MetricBody>) -> ApiResult<Vec<NewMetric>> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut metrics = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        validate_key(&format!("metrics[{index}].key"), &item.key)?;
        check_time(&format!("metrics[{index}].timestamp"), item.timestamp)?;
        metrics.push(NewMetric {
            step_run_id: item.step_run_id,
            key: item.key,
            value: item.value.0,
            step: item.step.unwrap_or(0),
            timestamp_ms: item.timestamp.unwrap_or(now),
        });
    }
    Ok(metrics)
}

/// Checks params or tags, `section` naming which, and converts the values to the text the
/// store keeps: a string as it is, a number, boolean, array or object as its JSON text.
pub(super) fn key_values(
    section: &str,
    map: BTreeMap<String, Value>,
) -> ApiResult<Vec<(String, String)>> {
    let mut pairs = Vec::with_capacity(map.len());
    for (key, value) in map {
        let field = format!("{section}.{key}");
        validate_key(&field, &key)?;
        let text = match value {
            Value::String(text) => text,
            Value::Null => {
                return Err(ApiError::invalid_field(
                    field,
                    "is null; give a string, number or boolean, or leave the key out",
                ));
            }
            other => other.to_string(),
        };
        pairs.push((key, text));
    }
    Ok(pairs)
}

/// Fails unless the time in `field`, in milliseconds since the Unix epoch, is absent or not
/// negative.
pub(super) fn check_time(field: &str, millis: Option<i64>) -> ApiResult<()> {
    match millis {
        Some(value) if value < 0 => Err(ApiError::invalid_field(
            field,
            format!(
                "{value} is negative; give milliseconds since the Unix epoch, such as \
                 1733300000000"
            ),
        )),
        _ => Ok(()),
    }
}

/// Fails with a 400 unless `id` in the URL path is a UUID, as every run and step run id is.
pub(super) fn check_path_id(field: &str, id: &str) -> ApiResult<()> {
    match uuid::Uuid::try_parse(id) {
        Ok(_) => Ok(()),
        Err(_) => Err(ApiError::invalid_field(
            field,
            format!(
                "`{}` is not a UUID; use the id the API returned when it created the resource",
                id.escape_debug()
            ),
        )),
    }
}

/// A run as the ingest routes return it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct RunRecord {
    /// Run id, a UUIDv7.
    id: String,
    /// Display name.
    name: String,
    /// Project name.
    project: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled` or `interrupted`.
    #[schema(value_type = String)]
    status: RunStatus,
    /// `external` for runs reported over this API.
    #[schema(value_type = String)]
    source: RunSource,
    /// Token name that created the run, or `local` in local mode.
    user: String,
    /// Creation time in milliseconds since the Unix epoch.
    created_at: i64,
    /// Start time in milliseconds since the Unix epoch.
    started_at: Option<i64>,
    /// End time in milliseconds since the Unix epoch, once the run has ended.
    ended_at: Option<i64>,
    /// Reason the run failed or was cancelled.
    error: Option<String>,
}

impl From<ExternalRunRecord> for RunRecord {
    fn from(record: ExternalRunRecord) -> Self {
        let run = record.run;
        Self {
            id: run.id,
            name: run.name,
            project: record.project,
            status: run.status,
            source: run.source,
            user: run.user_name,
            created_at: run.created_at,
            started_at: run.started_at,
            ended_at: run.ended_at,
            error: run.error,
        }
    }
}

/// An artifact linked to a run or step run.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LinkRecord {
    /// Name of the input or output.
    name: String,
    /// `input` or `output`.
    #[schema(value_type = String)]
    direction: crate::store::Direction,
    /// SHA-256 of the content.
    digest: String,
    /// Size in bytes.
    size: i64,
    /// Media type.
    media_type: String,
    /// The step run, or null for an input or output of the run itself.
    step_run_id: Option<String>,
}

impl From<LinkedArtifact> for LinkRecord {
    fn from(linked: LinkedArtifact) -> Self {
        Self {
            name: linked.link.name,
            direction: linked.link.direction,
            digest: linked.link.digest,
            size: linked.size,
            media_type: linked.media_type,
            step_run_id: linked.link.step_run_id,
        }
    }
}

/// A step run as the ingest routes return it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct StepRunRecord {
    /// Step run id, a UUIDv7.
    id: String,
    /// The run.
    run_id: String,
    /// Step name, unique within the run.
    name: String,
    /// `external` for step runs reported over this API.
    executor: String,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped`, `cached` or `cancelled`.
    #[schema(value_type = String)]
    status: StepStatus,
    /// Attempts started.
    attempts: i32,
    /// Creation time in milliseconds since the Unix epoch.
    created_at: i64,
    /// Time the step started running, in milliseconds since the Unix epoch.
    started_at: Option<i64>,
    /// Time the step ended, in milliseconds since the Unix epoch.
    ended_at: Option<i64>,
    /// Params of the step.
    params: Value,
    /// Reason the step failed, was skipped or was cancelled.
    error: Option<String>,
    /// Artifacts the step consumed.
    inputs: Vec<LinkRecord>,
    /// Artifacts the step produced.
    outputs: Vec<LinkRecord>,
}

impl From<StepRunDetail> for StepRunRecord {
    fn from(detail: StepRunDetail) -> Self {
        let step = detail.step_run;
        Self {
            id: step.id,
            run_id: step.run_id,
            name: step.name,
            executor: step.executor,
            status: step.status,
            attempts: step.attempts,
            created_at: step.created_at,
            started_at: step.started_at,
            ended_at: step.ended_at,
            params: step.params_json,
            error: step.error,
            inputs: detail.inputs.into_iter().map(LinkRecord::from).collect(),
            outputs: detail.outputs.into_iter().map(LinkRecord::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_value_accepts_numbers_and_special_strings() {
        let values: Vec<MetricValue> =
            serde_json::from_str(r#"[1, -2, 0.5, "NaN", "Infinity", "-Infinity"]"#).unwrap();

        assert_eq!(values[0].0, 1.0);
        assert_eq!(values[1].0, -2.0);
        assert_eq!(values[2].0, 0.5);
        assert!(values[3].0.is_nan());
        assert_eq!(values[4].0, f64::INFINITY);
        assert_eq!(values[5].0, f64::NEG_INFINITY);
    }

    #[test]
    fn metric_value_rejects_other_strings_and_types() {
        for text in [r#""nan""#, "true", "null", "[1]"] {
            let error = serde_json::from_str::<MetricValue>(text).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("a number, or one of the strings"),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn key_values_keep_strings_and_encode_other_values() {
        let map = BTreeMap::from([
            ("alpha".to_owned(), Value::from(0.1)),
            ("name".to_owned(), Value::from("ridge")),
            ("layers".to_owned(), serde_json::json!([64, 32])),
        ]);
        let pairs = key_values("params", map).unwrap();

        assert_eq!(pairs[0], ("alpha".to_owned(), "0.1".to_owned()));
        assert_eq!(pairs[1], ("layers".to_owned(), "[64,32]".to_owned()));
        assert_eq!(pairs[2], ("name".to_owned(), "ridge".to_owned()));
    }

    #[test]
    fn key_values_reject_null_and_bad_keys() {
        let null = BTreeMap::from([("alpha".to_owned(), Value::Null)]);
        let error = key_values("params", null).unwrap_err();
        assert_eq!(error.details[0].field, "params.alpha");

        let control = BTreeMap::from([("a\u{7}".to_owned(), Value::from(1))]);
        let error = key_values("tags", control).unwrap_err();
        assert_eq!(error.details[0].field, "tags.a\u{7}");
    }
}
