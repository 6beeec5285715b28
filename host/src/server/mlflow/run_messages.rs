//! Request messages of the run routes, as MLflow's `service.proto` defines them. Unknown
//! fields are ignored.

use super::error::MlflowResult;
use super::experiments::{KeyValue, required};
use super::request::{lenient_f64, lenient_i64, lenient_string};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(super) struct CreateRun {
    #[serde(default, deserialize_with = "lenient_string")]
    pub(super) experiment_id: Option<String>,
    pub(super) user_id: Option<String>,
    pub(super) run_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub(super) start_time: Option<i64>,
    #[serde(default)]
    pub(super) tags: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RunRef {
    pub(super) run_id: Option<String>,
    pub(super) run_uuid: Option<String>,
}

impl RunRef {
    pub(super) fn id(self) -> MlflowResult<String> {
        required(self.run_id.or(self.run_uuid), "run_id")
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct UpdateRun {
    #[serde(flatten)]
    pub(super) run: RunRef,
    pub(super) status: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub(super) end_time: Option<i64>,
    pub(super) run_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct MetricMessage {
    pub(super) key: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    pub(super) value: Option<f64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub(super) timestamp: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub(super) step: Option<i64>,
    /// The logged model the value measures, which MLflow 3 clients add.
    pub(super) model_id: Option<String>,
    /// Name of the dataset the value was measured on.
    pub(super) dataset_name: Option<String>,
    /// Digest of the dataset the value was measured on.
    pub(super) dataset_digest: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(from = "LogMetricFields")]
pub(super) struct LogMetric {
    pub(super) run: RunRef,
    pub(super) metric: MetricMessage,
}

/// The fields of [`LogMetric`] as they arrive. Spelled out rather than flattened, because
/// serde buffers every field of a message with flattened parts before decoding it.
#[derive(Debug, Deserialize)]
struct LogMetricFields {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    #[serde(default, deserialize_with = "lenient_f64")]
    value: Option<f64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    timestamp: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    step: Option<i64>,
    model_id: Option<String>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

impl From<LogMetricFields> for LogMetric {
    fn from(fields: LogMetricFields) -> Self {
        Self {
            run: RunRef {
                run_id: fields.run_id,
                run_uuid: fields.run_uuid,
            },
            metric: MetricMessage {
                key: fields.key,
                value: fields.value,
                timestamp: fields.timestamp,
                step: fields.step,
                model_id: fields.model_id,
                dataset_name: fields.dataset_name,
                dataset_digest: fields.dataset_digest,
            },
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct LogKeyValue {
    #[serde(flatten)]
    pub(super) run: RunRef,
    pub(super) key: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(super) value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(from = "LogBatchFields")]
pub(super) struct LogBatch {
    pub(super) run: RunRef,
    pub(super) metrics: Vec<MetricMessage>,
    pub(super) params: Vec<KeyValue>,
    pub(super) tags: Vec<KeyValue>,
}

/// The fields of [`LogBatch`] as they arrive, spelled out for the reason given at
/// [`LogMetricFields`].
#[derive(Debug, Deserialize)]
struct LogBatchFields {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(default)]
    metrics: Vec<MetricMessage>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

impl From<LogBatchFields> for LogBatch {
    fn from(fields: LogBatchFields) -> Self {
        Self {
            run: RunRef {
                run_id: fields.run_id,
                run_uuid: fields.run_uuid,
            },
            metrics: fields.metrics,
            params: fields.params,
            tags: fields.tags,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct DeleteTag {
    #[serde(flatten)]
    pub(super) run: RunRef,
    pub(super) key: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct MetricHistory {
    #[serde(flatten)]
    pub(super) run: RunRef,
    pub(super) metric_key: Option<String>,
    pub(super) page_token: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub(super) max_results: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct DatasetMessage {
    pub(super) name: Option<String>,
    pub(super) digest: Option<String>,
    pub(super) source_type: Option<String>,
    pub(super) source: Option<String>,
    pub(super) schema: Option<String>,
    pub(super) profile: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct DatasetInputMessage {
    #[serde(default)]
    pub(super) tags: Vec<KeyValue>,
    pub(super) dataset: Option<DatasetMessage>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ModelInputMessage {
    pub(super) model_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct LogInputs {
    #[serde(flatten)]
    pub(super) run: RunRef,
    #[serde(default)]
    pub(super) datasets: Vec<DatasetInputMessage>,
    /// Logged models the run uses, which MLflow 3 clients send.
    #[serde(default)]
    pub(super) models: Vec<ModelInputMessage>,
}
