//! MLflow 3's logged models: create, get, finalize, delete, params, tags, artifact listing,
//! the runs' model outputs (`runs/outputs`), and the `MLmodel` metadata that `Model.log`
//! records on a run (`runs/log-model`).
//!
//! A logged model belongs to the project of its experiment. Its artifact URI is the
//! experiment's artifact location followed by `models/<model_id>/artifacts`, so files the
//! client uploads through the artifact proxy are stored content-addressed and linked to the
//! model. Metric values logged with a `model_id` are recorded for the run and for the model.

use super::artifacts::{StoredFile, children, entry_json};
use super::error::{MlflowCode, MlflowError, MlflowResult};
use super::experiments::{KeyValue, required, resolve, resolve_active};
use super::logged_model_search::search;
use super::proto::{artifact_location, double, experiment_id, key_values};
use super::request::{MlflowRequest, lenient_i64};
use super::run_messages::MetricMessage;
use super::runs::{check_tag, load, write_batch};
use crate::server::state::AppState;
use crate::store::mlflow::{
    LifecycleStage, LoggedModel, LoggedModelError, LoggedModelStatus, NewLoggedModel,
    NewModelMetric,
};
use crate::store::{NewMetric, RunBatch, StoreError};
use axum::Json;
use axum::extract::{Path, State};
use axum::routing::{MethodRouter, get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};

/// Maximum length of a logged model's name and type, in bytes, as MLflow 3.17's schema
/// stores them.
const MAX_NAME_BYTES: usize = 500;

/// Maximum length of a param or tag key of a logged model, in bytes, as MLflow 3.17's schema
/// stores it.
const MAX_KEY_BYTES: usize = 255;

/// Characters MLflow 3.17 rejects in a logged model's name, because the name is a segment of
/// `runs:/` and `models:/` URIs.
const NAME_FORBIDDEN: [char; 6] = ['/', ':', '.', '%', '"', '\''];

/// Run tag in which MLflow servers keep the `MLmodel` metadata of each model a run logged, as
/// a JSON list.
const LOG_MODEL_HISTORY_TAG: &str = "mlflow.log-model.history";

/// Lists the logged-model routes, relative to a prefix.
pub(super) fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/logged-models", post(create)),
        ("/logged-models/search", post(search)),
        (
            "/logged-models/{model_id}",
            get(get_model).patch(finalize).delete(delete),
        ),
        ("/logged-models/{model_id}/tags", patch(set_tags)),
        (
            "/logged-models/{model_id}/tags/{*tag_key}",
            axum::routing::delete(delete_tag),
        ),
        ("/logged-models/{model_id}/params", post(log_params)),
        (
            "/logged-models/{model_id}/artifacts/directories",
            get(list_artifacts),
        ),
        ("/runs/outputs", post(log_outputs)),
        ("/runs/log-model", post(record_model)),
    ]
}

impl From<LoggedModelError> for MlflowError {
    fn from(error: LoggedModelError) -> Self {
        match error {
            LoggedModelError::NotFound(_) | LoggedModelError::TagNotFound { .. } => {
                MlflowError::not_found(error.to_string())
            }
            LoggedModelError::ParamConflict { .. } => MlflowError::invalid(error.to_string()),
            LoggedModelError::Store(StoreError::RunNotFound(run_id)) => {
                MlflowError::not_found(format!("run with id '{run_id}' not found"))
            }
            LoggedModelError::Store(error) => error.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CreateLoggedModel {
    experiment_id: Option<String>,
    name: Option<String>,
    model_type: Option<String>,
    source_run_id: Option<String>,
    #[serde(default)]
    params: Vec<KeyValue>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
pub(super) struct GetLoggedModel {
    allow_deleted: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FinalizeLoggedModel {
    status: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct KeyValues {
    #[serde(default)]
    tags: Vec<KeyValue>,
    #[serde(default)]
    params: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ListArtifacts {
    artifact_directory_path: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ModelOutputMessage {
    model_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    step: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct LogModel {
    run_id: Option<String>,
    model_json: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct LogOutputs {
    run_id: Option<String>,
    #[serde(default)]
    models: Vec<ModelOutputMessage>,
}

/// `POST logged-models`: creates a pending model in an active experiment.
async fn create(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<CreateLoggedModel>,
) -> MlflowResult<Json<Value>> {
    let experiment_id = required(request.experiment_id, "experiment_id")?;
    let experiment = resolve_active(&state, &experiment_id).await?;
    let name = match request.name.filter(|name| !name.is_empty()) {
        Some(name) => check_name(name)?,
        None => generated_name(),
    };
    let model_type = request.model_type.filter(|kind| !kind.is_empty());
    if let Some(kind) = &model_type {
        check_length("model_type", kind, MAX_NAME_BYTES)?;
    }
    let source_run_id = request.source_run_id.filter(|id| !id.is_empty());
    if let Some(run_id) = &source_run_id {
        load(&state, run_id).await?;
    }

    let new = NewLoggedModel {
        project_id: experiment.project.id,
        name,
        model_type,
        source_run_id,
        experiment_artifacts: artifact_location(&experiment),
        params: pairs(request.params, "params")?,
        tags: pairs(request.tags, "tags")?,
    };
    let model = state.store().mlflow_create_logged_model(new).await?;
    tracing::info!(model_id = %model.model.id, experiment_id = %experiment_id, "mlflow logged model created");
    let message = model_json(&model, &experiment_id);
    Ok(Json(json!({ "model": message })))
}

/// `GET logged-models/{model_id}`: a deleted model only with `allow_deleted=true`.
async fn get_model(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    MlflowRequest(request): MlflowRequest<GetLoggedModel>,
) -> MlflowResult<Json<Value>> {
    let allow_deleted = request
        .allow_deleted
        .is_some_and(|flag| flag.eq_ignore_ascii_case("true"));
    let model = state
        .store()
        .mlflow_logged_model(&model_id, allow_deleted)
        .await?
        .ok_or_else(|| LoggedModelError::NotFound(model_id.clone()))?;
    Ok(Json(json!({ "model": message_of(&state, &model).await? })))
}

/// `PATCH logged-models/{model_id}`: sets the final status, READY or FAILED.
async fn finalize(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    MlflowRequest(request): MlflowRequest<FinalizeLoggedModel>,
) -> MlflowResult<Json<Value>> {
    let status = parse_final_status(required(request.status, "status")?)?;
    let model = state
        .store()
        .mlflow_finalize_logged_model(&model_id, status)
        .await?;
    tracing::info!(model_id = %model_id, status = status.as_str(), "mlflow logged model finalized");
    Ok(Json(json!({ "model": message_of(&state, &model).await? })))
}

/// `DELETE logged-models/{model_id}`: moves the model to the trash.
async fn delete(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
) -> MlflowResult<Json<Value>> {
    state.store().mlflow_delete_logged_model(&model_id).await?;
    tracing::info!(model_id = %model_id, "mlflow logged model deleted");
    Ok(Json(json!({})))
}

/// `PATCH logged-models/{model_id}/tags`.
async fn set_tags(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    MlflowRequest(request): MlflowRequest<KeyValues>,
) -> MlflowResult<Json<Value>> {
    let tags = pairs(request.tags, "tags")?;
    let store = state.store();
    store.mlflow_set_logged_model_tags(&model_id, &tags).await?;
    Ok(Json(json!({})))
}

/// `DELETE logged-models/{model_id}/tags/{tag_key}`: fails when the model lacks the tag.
async fn delete_tag(
    State(state): State<AppState>,
    Path((model_id, tag_key)): Path<(String, String)>,
) -> MlflowResult<Json<Value>> {
    let store = state.store();
    store
        .mlflow_delete_logged_model_tag(&model_id, &tag_key)
        .await?;
    Ok(Json(json!({})))
}

/// `POST logged-models/{model_id}/params`.
async fn log_params(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    MlflowRequest(request): MlflowRequest<KeyValues>,
) -> MlflowResult<Json<Value>> {
    let params = pairs(request.params, "params")?;
    let store = state.store();
    store
        .mlflow_log_logged_model_params(&model_id, &params)
        .await?;
    Ok(Json(json!({})))
}

/// `GET logged-models/{model_id}/artifacts/directories`: the entries directly under
/// `artifact_directory_path`, named relative to the model's artifact root.
async fn list_artifacts(
    State(state): State<AppState>,
    Path(model_id): Path<String>,
    MlflowRequest(request): MlflowRequest<ListArtifacts>,
) -> MlflowResult<Json<Value>> {
    let model = load_model(&state, &model_id).await?;
    let prefix = request
        .artifact_directory_path
        .unwrap_or_default()
        .trim_matches('/')
        .to_owned();
    let stored = model_files(&state, &model_id).await?;
    let files: Vec<Value> = children(&stored, &prefix)
        .into_iter()
        .map(|(name, size)| {
            let full = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            entry_json(&full, size)
        })
        .collect();
    Ok(Json(json!({
        "root_uri": model.model.artifact_location,
        "files": files,
    })))
}

/// `POST runs/outputs`: records models as outputs of an active run.
async fn log_outputs(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<LogOutputs>,
) -> MlflowResult<Json<Value>> {
    let run_id = required(request.run_id, "run_id")?;
    let outputs = request
        .models
        .into_iter()
        .map(|model| {
            Ok((
                required(model.model_id, "models.model_id")?,
                model.step.unwrap_or(0),
            ))
        })
        .collect::<MlflowResult<Vec<_>>>()?;
    let loaded = load(&state, &run_id).await?;
    if loaded.stage == LifecycleStage::Deleted {
        return Err(MlflowError::invalid(format!(
            "the run {run_id} must be in the 'active' state, and it is deleted; restore it first"
        )));
    }
    let store = state.store();
    store.mlflow_log_model_outputs(&run_id, &outputs).await?;
    Ok(Json(json!({})))
}

/// `POST runs/log-model`: appends a model's `MLmodel` metadata to the run's
/// `mlflow.log-model.history` tag, as MLflow servers do.
async fn record_model(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<LogModel>,
) -> MlflowResult<Json<Value>> {
    let run_id = required(request.run_id, "run_id")?;
    let text = required(request.model_json, "model_json")?;
    let model: Value = serde_json::from_str(&text).map_err(|error| {
        MlflowError::invalid(format!(
            "invalid model_json: {error}; send the model's metadata as a JSON object"
        ))
    })?;
    if !model.is_object() {
        return Err(MlflowError::invalid(
            "invalid model_json: send the model's metadata as a JSON object",
        ));
    }
    load(&state, &run_id).await?;

    let tags = state.store().get_tags(&run_id).await?;
    let mut history: Vec<Value> = tags
        .get(LOG_MODEL_HISTORY_TAG)
        .and_then(|stored| serde_json::from_str(stored).ok())
        .unwrap_or_default();
    history.push(model);
    let value = Value::Array(history).to_string();
    check_tag(LOG_MODEL_HISTORY_TAG, &value)?;
    let batch = RunBatch {
        tags: vec![(LOG_MODEL_HISTORY_TAG.to_owned(), value)],
        ..RunBatch::default()
    };
    write_batch(&state, &run_id, &batch).await?;
    Ok(Json(json!({})))
}

/// Records models that a run declares as inputs, after `runs/log-inputs` checked the run.
pub(super) async fn log_model_inputs(
    state: &AppState,
    run_id: &str,
    model_ids: Vec<Option<String>>,
) -> MlflowResult<()> {
    let ids = model_ids
        .into_iter()
        .map(|id| required(id.filter(|id| !id.is_empty()), "models.model_id"))
        .collect::<MlflowResult<Vec<_>>>()?;
    let store = state.store();
    store.mlflow_log_model_inputs(run_id, &ids).await?;
    Ok(())
}

/// The model a metric message names, with the dataset the value was measured on.
#[derive(Debug, Clone, Default)]
pub(super) struct MetricModel {
    model_id: Option<String>,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

impl MetricModel {
    /// Takes the model and dataset fields of a metric message, reading an empty string as
    /// absent.
    pub(super) fn of(message: &MetricMessage) -> Self {
        let present = |text: &Option<String>| text.clone().filter(|text| !text.is_empty());
        Self {
            model_id: present(&message.model_id),
            dataset_name: present(&message.dataset_name),
            dataset_digest: present(&message.dataset_digest),
        }
    }
}

/// Pairs metric values with the models their messages named, keeping those that name one.
pub(super) fn model_metrics(
    models: Vec<MetricModel>,
    metrics: &[NewMetric],
) -> Vec<NewModelMetric> {
    models
        .into_iter()
        .zip(metrics)
        .filter_map(|(model, metric)| {
            Some(NewModelMetric {
                model_id: model.model_id?,
                key: metric.key.clone(),
                value: metric.value,
                timestamp_ms: metric.timestamp_ms,
                step: metric.step,
                dataset_name: model.dataset_name,
                dataset_digest: model.dataset_digest,
            })
        })
        .collect()
}

/// Checks that every model the values name exists, before the run's values are written.
pub(super) async fn check_metric_models(
    state: &AppState,
    values: &[NewModelMetric],
) -> MlflowResult<()> {
    let mut checked: Vec<&str> = Vec::new();
    for value in values {
        if !checked.contains(&value.model_id.as_str()) {
            state
                .store()
                .mlflow_require_logged_model(&value.model_id)
                .await?;
            checked.push(&value.model_id);
        }
    }
    Ok(())
}

/// Records metric values for the models they name.
pub(super) async fn log_model_metrics(
    state: &AppState,
    run_id: &str,
    values: &[NewModelMetric],
) -> MlflowResult<()> {
    let store = state.store();
    store.mlflow_log_model_metrics(run_id, values).await?;
    Ok(())
}

/// Adds `inputs.model_inputs` and `outputs.model_outputs` to `Run` messages, reading the
/// links of all the runs at once.
pub(super) async fn add_run_models(state: &AppState, messages: &mut [Value]) -> MlflowResult<()> {
    let ids: Vec<String> = messages
        .iter()
        .filter_map(|message| message["info"]["run_id"].as_str().map(str::to_owned))
        .collect();
    let mut links = state.store().mlflow_run_models(&ids).await?;
    for message in messages.iter_mut() {
        let run_id = message["info"]["run_id"].as_str().unwrap_or("").to_owned();
        let models = links.remove(&run_id).unwrap_or_default();
        let inputs: Vec<Value> = models
            .inputs
            .iter()
            .map(|id| json!({ "model_id": id }))
            .collect();
        let outputs: Vec<Value> = models
            .outputs
            .iter()
            .map(|(id, step)| json!({ "model_id": id, "step": step }))
            .collect();
        message["inputs"]["model_inputs"] = json!(inputs);
        message["outputs"] = json!({ "model_outputs": outputs });
    }
    Ok(())
}

/// Loads a logged model that is not deleted, or fails with `RESOURCE_DOES_NOT_EXIST`.
pub(super) async fn load_model(state: &AppState, model_id: &str) -> MlflowResult<LoggedModel> {
    let found = state.store().mlflow_logged_model(model_id, false).await?;
    found.ok_or_else(|| LoggedModelError::NotFound(model_id.to_owned()).into())
}

/// Lists the files of a logged model by path.
pub(super) async fn model_files(state: &AppState, model_id: &str) -> MlflowResult<Vec<StoredFile>> {
    let artifacts = state.store().mlflow_model_artifacts(model_id).await?;
    Ok(artifacts
        .into_iter()
        .map(|item| StoredFile {
            path: item.path,
            size: item.size,
            digest: item.digest,
            media_type: item.media_type,
        })
        .collect())
}

/// Links an uploaded file to a logged model at `path`.
pub(super) async fn put_model_file(
    state: &AppState,
    model_id: &str,
    path: &str,
    digest: &str,
) -> MlflowResult<()> {
    let store = state.store();
    store
        .mlflow_put_model_artifact(model_id, path, digest)
        .await?;
    Ok(())
}

/// Builds the `LoggedModel` message of a model, looking up its experiment id.
async fn message_of(state: &AppState, model: &LoggedModel) -> MlflowResult<Value> {
    let experiment = state
        .store()
        .mlflow_experiment(model.model.project_id)
        .await?
        .ok_or_else(|| LoggedModelError::NotFound(model.model.id.clone()))?;
    Ok(model_json(model, &experiment_id(&experiment.project)))
}

/// Builds MLflow's `LoggedModel` message.
pub(super) fn model_json(model: &LoggedModel, experiment_id: &str) -> Value {
    let row = &model.model;
    let mut info = json!({
        "model_id": row.id,
        "experiment_id": experiment_id,
        "name": row.name,
        "creation_timestamp_ms": row.created_at,
        "last_updated_timestamp_ms": row.updated_at,
        "artifact_uri": row.artifact_location,
        "status": status_name(model.status()),
        "tags": key_values(&model.tags),
    });
    let optional = [
        ("model_type", &row.model_type),
        ("source_run_id", &row.source_run_id),
        ("status_message", &row.status_message),
    ];
    for (field, value) in optional {
        if let Some(value) = value {
            info[field] = json!(value);
        }
    }
    let metrics: Vec<Value> = model.metrics.iter().map(metric_json).collect();
    json!({
        "info": info,
        "data": { "params": key_values(&model.params), "metrics": metrics },
    })
}

fn metric_json(metric: &crate::store::mlflow::entity::logged_model_metric::Model) -> Value {
    let mut message = json!({
        "key": metric.key,
        "value": double(metric.value.unwrap_or(f64::NAN)),
        "timestamp": metric.timestamp_ms,
        "step": metric.step,
        "model_id": metric.model_id,
        "run_id": metric.run_id,
    });
    if let Some(name) = &metric.dataset_name {
        message["dataset_name"] = json!(name);
    }
    if let Some(digest) = &metric.dataset_digest {
        message["dataset_digest"] = json!(digest);
    }
    message
}

/// Returns the name of MLflow's `LoggedModelStatus` enum value for a status.
fn status_name(status: LoggedModelStatus) -> &'static str {
    match status {
        LoggedModelStatus::Pending => "LOGGED_MODEL_PENDING",
        LoggedModelStatus::Ready => "LOGGED_MODEL_READY",
        LoggedModelStatus::Failed => "LOGGED_MODEL_UPLOAD_FAILED",
    }
}

/// Parses the status of a finalize request, given by enum name or number.
fn parse_final_status(value: Value) -> MlflowResult<LoggedModelStatus> {
    let text = match &value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        other => other.to_string(),
    };
    match text.as_str() {
        "LOGGED_MODEL_READY" | "READY" | "2" => Ok(LoggedModelStatus::Ready),
        "LOGGED_MODEL_UPLOAD_FAILED" | "FAILED" | "3" => Ok(LoggedModelStatus::Failed),
        other => Err(MlflowError::new(
            MlflowCode::InvalidParameterValue,
            format!(
                "invalid logged model status '{other}': finalize a model with \
                 LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED"
            ),
        )),
    }
}

fn check_name(name: String) -> MlflowResult<String> {
    if name.contains(NAME_FORBIDDEN) {
        return Err(MlflowError::invalid(format!(
            "invalid logged model name '{name}': a name cannot contain any of / : . % \" '; \
             use letters, digits, '-' or '_'"
        )));
    }
    check_length("name", &name, MAX_NAME_BYTES)?;
    Ok(name)
}

fn check_length(field: &str, text: &str, limit: usize) -> MlflowResult<()> {
    if text.len() > limit {
        return Err(MlflowError::invalid(format!(
            "'{field}' is {} bytes, longer than the limit of {limit}; shorten it",
            text.len()
        )));
    }
    Ok(())
}

/// Names a model the client left unnamed, as MLflow servers do; the last hex digits of a
/// UUIDv7 are random.
fn generated_name() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("model-{}", &id[id.len() - 8..])
}

/// Checks key-value pairs of a request; `field` names them in errors.
fn pairs(entries: Vec<KeyValue>, field: &str) -> MlflowResult<Vec<(String, String)>> {
    entries
        .into_iter()
        .map(|entry| {
            let key = required(entry.key, &format!("{field}.key"))?;
            if key.is_empty() || key.chars().any(char::is_control) {
                return Err(MlflowError::invalid(format!(
                    "invalid key '{}' in '{field}': give a non-empty key without control \
                     characters",
                    key.escape_debug()
                )));
            }
            check_length(&format!("{field}.key"), &key, MAX_KEY_BYTES)?;
            Ok((key, entry.value.unwrap_or_default()))
        })
        .collect()
}

/// Finds the experiments of a search's ids, skipping ids of no experiment, as MLflow's
/// server does.
pub(super) async fn search_experiments(
    state: &AppState,
    ids: &[String],
) -> MlflowResult<Vec<(String, i64)>> {
    let mut found = Vec::new();
    for id in ids {
        match resolve(state, id).await {
            Ok(experiment) => {
                found.push((experiment_id(&experiment.project), experiment.project.id))
            }
            Err(error) if error.code == MlflowCode::ResourceDoesNotExist => {}
            Err(error) => return Err(error),
        }
    }
    Ok(found)
}
