//! Run routes: create, get, update, delete, restore, logging, tags, metric history and
//! dataset inputs.
//!
//! Metric values go through the MetricWriter, as those of the native API do, so concurrent
//! requests share transactions; other writes through the store's MLflow batch. Both accept runs
//! of any status, since MLflow clients write to runs that have ended, and refuse runs in the
//! trash, as an MLflow server does. Each checks the run in its own write transaction, so a
//! write costs no separate lookup.
//!
//! A metric value that names a logged model (`model_id`) is also recorded for that model, and
//! `Run` messages carry the models a run used and produced.

use super::error::{MlflowError, MlflowResult};
use super::experiments::{
    KeyValue, decode_offset, encode_offset, required, resolve, resolve_active,
};
use super::keys::check_key;
use super::logged_models::{
    MetricModel, add_run_models, check_metric_models, log_model_inputs, log_model_metrics,
    model_metrics,
};
use super::proto::{DEFAULT_EXPERIMENT_ID, artifact_location, metric_json, parse_status};
use super::request::MlflowRequest;
use super::run_messages::{
    CreateRun, DatasetInputMessage, DeleteTag, LogBatch, LogInputs, LogKeyValue, LogMetric,
    MetricHistory, MetricMessage, RunRef, UpdateRun,
};
use super::view::{RunBody, RunHead, run_json};
use crate::server::auth::Caller;
use crate::server::names::validate_key;
use crate::server::state::AppState;
use crate::store::entity::run;
use crate::store::mlflow::{Experiment, LifecycleStage, NewDatasetInput};
use crate::store::{NewExternalRun, NewMetric, RunBatch, RunsAccepting, StoreError};
use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Maximum number of metric values in one log-batch request, as MLflow 3.17 enforces it.
const MAX_BATCH_METRICS: usize = 1000;

/// Maximum number of params in one log-batch request, as MLflow 3.17 enforces it.
const MAX_BATCH_PARAMS: usize = 100;

/// Maximum number of tags in one log-batch request, as MLflow 3.17 enforces it.
const MAX_BATCH_TAGS: usize = 100;

/// Maximum number of metrics, params and tags together in one log-batch request, as MLflow
/// 3.17 enforces it.
const MAX_BATCH_ITEMS: usize = 1000;

/// Maximum length of a param value, in characters, as MLflow 3.17 enforces it.
const MAX_PARAM_VALUE_CHARS: usize = 6000;

/// Maximum length of a run tag value, in characters, as MLflow 3.17 enforces it.
const MAX_TAG_VALUE_CHARS: usize = 8000;

/// Maximum length of a dataset name, in bytes, as MLflow 3.17 enforces it.
const MAX_DATASET_NAME_BYTES: usize = 500;

/// Metric values one history page returns when the request names no page size.
const DEFAULT_HISTORY_PAGE: i64 = 25_000;

/// Tag that carries the run name, which MLflow keeps equal to `run_name`.
const RUN_NAME_TAG: &str = "mlflow.runName";

/// Lifecycle stages that a search includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ViewType {
    ActiveOnly,
    DeletedOnly,
    All,
}

/// Parses MLflow's `ViewType` by name; none is `ACTIVE_ONLY`.
pub(super) fn parse_view_type(name: Option<&str>) -> MlflowResult<ViewType> {
    match name.unwrap_or("ACTIVE_ONLY") {
        "ACTIVE_ONLY" | "" => Ok(ViewType::ActiveOnly),
        "DELETED_ONLY" => Ok(ViewType::DeletedOnly),
        "ALL" => Ok(ViewType::All),
        other => Err(MlflowError::invalid(format!(
            "invalid view type '{other}': expected ACTIVE_ONLY, DELETED_ONLY or ALL"
        ))),
    }
}

/// A run with its experiment and lifecycle stage.
pub(super) struct LoadedRun {
    pub(super) run: run::Model,
    pub(super) experiment: Experiment,
    pub(super) stage: LifecycleStage,
}

impl LoadedRun {
    pub(super) fn head(&self) -> RunHead {
        RunHead::of_run(
            &self.run,
            &self.experiment.project,
            artifact_location(&self.experiment),
            self.stage,
        )
    }
}

/// Loads a run, or fails with `RESOURCE_DOES_NOT_EXIST`.
pub(super) async fn load(state: &AppState, run_id: &str) -> MlflowResult<LoadedRun> {
    let store = state.store();
    let run = store
        .get_run(run_id)
        .await?
        .ok_or_else(|| run_not_found(run_id))?;
    let experiment = store
        .mlflow_experiment(run.project_id)
        .await?
        .ok_or_else(|| run_not_found(run_id))?;
    let stages = store
        .mlflow_deleted_runs(std::slice::from_ref(&run.id))
        .await?;
    let stage = stages
        .get(&run.id)
        .copied()
        .unwrap_or(LifecycleStage::Active);
    Ok(LoadedRun {
        run,
        experiment,
        stage,
    })
}

/// Loads a run that is not deleted, for a write.
async fn load_active(state: &AppState, run_id: &str) -> MlflowResult<LoadedRun> {
    let loaded = load(state, run_id).await?;
    if loaded.stage == LifecycleStage::Deleted {
        return Err(MlflowError::invalid(format!(
            "the run {run_id} must be in the 'active' state, and it is deleted; restore it \
             first"
        )));
    }
    Ok(loaded)
}

/// Builds the `Run` message of a loaded run.
async fn run_message(state: &AppState, loaded: &LoadedRun) -> MlflowResult<Value> {
    let store = state.store();
    let run_id = loaded.run.id.clone();
    let ids = [run_id.clone()];
    let body = RunBody {
        params: store.get_params(&run_id).await?,
        tags: store.get_tags(&run_id).await?,
        metrics: store.latest_metrics(&run_id).await?,
        inputs: store
            .mlflow_dataset_inputs(&ids)
            .await?
            .remove(&run_id)
            .unwrap_or_default(),
    };
    let mut messages = [run_json(&loaded.head(), &body)];
    add_run_models(state, &mut messages).await?;
    let [message] = messages;
    Ok(message)
}

/// `POST runs/create`.
// NOTE: a nested run's `mlflow.parentRunId` tag is stored as a tag only. runledger keeps a run's
// parent solely in the OpenLineage run record, which also needs an OpenLineage job, so the
// child's lineage shows no parent.
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<CreateRun>,
) -> MlflowResult<Json<Value>> {
    let experiment_id = request
        .experiment_id
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| DEFAULT_EXPERIMENT_ID.to_owned());
    let experiment = resolve_active(&state, &experiment_id).await?;
    let mut tags = tag_pairs(request.tags)?;
    let name = run_name(request.run_name, &tags);
    tags.retain(|(key, _)| key != RUN_NAME_TAG);
    tags.push((RUN_NAME_TAG.to_owned(), name.clone()));
    let user = request
        .user_id
        .filter(|user| !user.is_empty())
        .unwrap_or(caller.name);

    let new = NewExternalRun {
        project: experiment.project.name.clone(),
        name,
        user_name: user,
        started_at: request.start_time,
        params: Vec::new(),
        tags,
    };
    let record = state.store().create_external_run(new).await?;
    tracing::info!(run_id = %record.run.id, experiment_id = %experiment_id, "mlflow run created");
    let loaded = LoadedRun {
        run: record.run,
        experiment,
        stage: LifecycleStage::Active,
    };
    Ok(Json(json!({ "run": run_message(&state, &loaded).await? })))
}

/// `GET runs/get`.
pub(super) async fn get(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<RunRef>,
) -> MlflowResult<Json<Value>> {
    let loaded = load(&state, &request.id()?).await?;
    Ok(Json(json!({ "run": run_message(&state, &loaded).await? })))
}

/// `POST runs/update`: changes the status, end time or name.
pub(super) async fn update(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<UpdateRun>,
) -> MlflowResult<Json<Value>> {
    let run_id = request.run.id()?;
    let loaded = load_active(&state, &run_id).await?;
    let status = match request.status.as_deref() {
        Some(name) => Some(parse_status(name)?[0]),
        None => None,
    };
    let name = request.run_name.filter(|name| !name.is_empty());
    if let Some(name) = &name {
        validate_key("run_name", name).map_err(MlflowError::from)?;
    }
    let run = state
        .store()
        .mlflow_update_run(&run_id, status, request.end_time, name)
        .await?;
    let updated = LoadedRun { run, ..loaded };
    Ok(Json(json!({ "run_info": updated.head().info_json() })))
}

/// `POST runs/delete`.
pub(super) async fn delete(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<RunRef>,
) -> MlflowResult<Json<Value>> {
    set_stage(&state, &request.id()?, LifecycleStage::Deleted).await
}

/// `POST runs/restore`.
pub(super) async fn restore(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<RunRef>,
) -> MlflowResult<Json<Value>> {
    set_stage(&state, &request.id()?, LifecycleStage::Active).await
}

async fn set_stage(
    state: &AppState,
    run_id: &str,
    stage: LifecycleStage,
) -> MlflowResult<Json<Value>> {
    load(state, run_id).await?;
    state.store().mlflow_set_run_stage(run_id, stage).await?;
    Ok(Json(json!({})))
}

/// `POST runs/log-metric`, through the group-commit metric writer.
pub(super) async fn log_metric(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<LogMetric>,
) -> MlflowResult<Json<Value>> {
    let run_id = request.run.id()?;
    let model = MetricModel::of(&request.metric);
    let metric = new_metric(request.metric)?;
    let for_models = model_metrics(vec![model], std::slice::from_ref(&metric));
    check_metric_models(&state, &for_models).await?;
    log_run_metrics(&state, &run_id, vec![metric]).await?;
    log_model_metrics(&state, &run_id, &for_models).await?;
    Ok(Json(json!({})))
}

/// Records metric values of a run that is not deleted, whatever its status, through the
/// MetricWriter, so that concurrent requests share a transaction.
async fn log_run_metrics(
    state: &AppState,
    run_id: &str,
    metrics: Vec<NewMetric>,
) -> MlflowResult<()> {
    let accepts = RunsAccepting::NotDeleted;
    let written = state
        .writer()
        .log_metrics(run_id.to_owned(), metrics, accepts)
        .await;
    match written {
        Err(StoreError::RunNotFound(_)) => Err(run_not_found(run_id)),
        other => Ok(other?),
    }
}

/// Builds MLflow's error for a run id that names no run.
fn run_not_found(run_id: &str) -> MlflowError {
    MlflowError::not_found(format!("run with id '{run_id}' not found"))
}

/// `POST runs/log-parameter`.
pub(super) async fn log_param(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<LogKeyValue>,
) -> MlflowResult<Json<Value>> {
    let run_id = request.run.id()?;
    let key = required(request.key, "key")?;
    let value = request.value.unwrap_or_default();
    check_param(&key, &value)?;
    let batch = RunBatch {
        params: vec![(key, value)],
        ..RunBatch::default()
    };
    write_batch(&state, &run_id, &batch).await?;
    Ok(Json(json!({})))
}

/// `POST runs/set-tag`. Setting `mlflow.runName` renames the run, as on an MLflow server.
pub(super) async fn set_tag(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<LogKeyValue>,
) -> MlflowResult<Json<Value>> {
    let run_id = request.run.id()?;
    let key = required(request.key, "key")?;
    let value = request.value.unwrap_or_default();
    check_tag(&key, &value)?;
    if key == RUN_NAME_TAG {
        load_active(&state, &run_id).await?;
        let store = state.store();
        store
            .mlflow_update_run(&run_id, None, None, Some(value))
            .await?;
        return Ok(Json(json!({})));
    }
    let batch = RunBatch {
        tags: vec![(key, value)],
        ..RunBatch::default()
    };
    write_batch(&state, &run_id, &batch).await?;
    Ok(Json(json!({})))
}

/// `POST runs/delete-tag`. Deleting a tag the run lacks fails, as on an MLflow server.
pub(super) async fn delete_tag(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<DeleteTag>,
) -> MlflowResult<Json<Value>> {
    let run_id = request.run.id()?;
    let key = required(request.key, "key")?;
    load_active(&state, &run_id).await?;
    let tags = state.store().get_tags(&run_id).await?;
    if !tags.contains_key(&key) {
        return Err(MlflowError::not_found(format!(
            "no tag with name '{key}' in run with id '{run_id}'"
        )));
    }
    state.store().delete_tag(&run_id, &key).await?;
    Ok(Json(json!({})))
}

/// `POST runs/log-batch`: metric values, params and tags in one transaction.
pub(super) async fn log_batch(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<LogBatch>,
) -> MlflowResult<Json<Value>> {
    let run_id = request.run.id()?;
    check_batch_sizes(&request.metrics, &request.params, &request.tags)?;
    let models: Vec<MetricModel> = request.metrics.iter().map(MetricModel::of).collect();
    let metrics = request
        .metrics
        .into_iter()
        .map(new_metric)
        .collect::<MlflowResult<Vec<_>>>()?;
    let mut params = Vec::with_capacity(request.params.len());
    for param in request.params {
        let key = required(param.key, "params.key")?;
        let value = param.value.unwrap_or_default();
        check_param(&key, &value)?;
        params.push((key, value));
    }
    let tags = tag_pairs(request.tags)?;
    let for_models = model_metrics(models, &metrics);
    check_metric_models(&state, &for_models).await?;
    if params.is_empty() && tags.is_empty() {
        log_run_metrics(&state, &run_id, metrics).await?;
    } else {
        let batch = RunBatch {
            metrics,
            params,
            tags,
        };
        write_batch(&state, &run_id, &batch).await?;
    }
    log_model_metrics(&state, &run_id, &for_models).await?;
    Ok(Json(json!({})))
}

/// Writes a batch to a run that is not deleted, whatever its status.
pub(super) async fn write_batch(
    state: &AppState,
    run_id: &str,
    batch: &RunBatch,
) -> MlflowResult<()> {
    match state.store().mlflow_log_batch(run_id, batch).await {
        Err(StoreError::RunNotFound(_)) => Err(run_not_found(run_id)),
        other => Ok(other?),
    }
}

/// `GET metrics/get-history`, paged by offset.
pub(super) async fn metric_history(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<MetricHistory>,
) -> MlflowResult<Json<Value>> {
    let run_id = request.run.id()?;
    let key = required(request.metric_key, "metric_key")?;
    let page_size = request.max_results.unwrap_or(DEFAULT_HISTORY_PAGE);
    if page_size < 1 {
        return Err(MlflowError::invalid(format!(
            "invalid value {page_size} for parameter 'max_results': give a positive number"
        )));
    }
    let offset = decode_offset(request.page_token.as_deref())?;
    load(&state, &run_id).await?;

    // One row past the page shows whether another page follows. The cap keeps the SQL limit
    // within a 64-bit signed integer and is larger than any metric's history.
    let page_size = (page_size as u64).min(u64::from(u32::MAX));
    let mut history = state
        .store()
        .mlflow_metric_history_page(&run_id, &key, offset as u64, page_size + 1)
        .await?;
    let more = history.len() as u64 > page_size;
    history.truncate(page_size as usize);
    let metrics: Vec<Value> = history.iter().map(metric_json).collect();
    let mut body = json!({ "metrics": metrics });
    if more {
        body["next_page_token"] = json!(encode_offset(offset + history.len()));
    }
    Ok(Json(body))
}

/// `POST runs/log-inputs`: datasets and logged models become lineage inputs of the run.
pub(super) async fn log_inputs(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<LogInputs>,
) -> MlflowResult<Json<Value>> {
    let run_id = request.run.id()?;
    let inputs = request
        .datasets
        .into_iter()
        .map(dataset_input)
        .collect::<MlflowResult<Vec<_>>>()?;
    load_active(&state, &run_id).await?;
    state.store().mlflow_log_inputs(&run_id, &inputs).await?;
    let models = request.models.into_iter().map(|model| model.model_id);
    log_model_inputs(&state, &run_id, models.collect()).await?;
    Ok(Json(json!({})))
}

fn dataset_input(message: DatasetInputMessage) -> MlflowResult<NewDatasetInput> {
    let dataset = required(message.dataset, "datasets.dataset")?;
    let mut tags = BTreeMap::new();
    for tag in message.tags {
        let key = required(tag.key, "datasets.tags.key")?;
        tags.insert(key, tag.value.unwrap_or_default());
    }
    let name = required(dataset.name, "datasets.dataset.name")?;
    if name.is_empty() || name.len() > MAX_DATASET_NAME_BYTES {
        return Err(MlflowError::invalid(format!(
            "dataset name '{name}' must have 1 to {MAX_DATASET_NAME_BYTES} bytes"
        )));
    }
    Ok(NewDatasetInput {
        name,
        digest: required(dataset.digest, "datasets.dataset.digest")?,
        source_type: required(dataset.source_type, "datasets.dataset.source_type")?,
        source: required(dataset.source, "datasets.dataset.source")?,
        schema: dataset.schema,
        profile: dataset.profile,
        tags,
    })
}

fn new_metric(message: MetricMessage) -> MlflowResult<NewMetric> {
    let key = required(message.key, "key")?;
    check_key("key", &key)?;
    Ok(NewMetric {
        step_run_id: None,
        value: required(message.value, "value")?,
        timestamp_ms: required(message.timestamp, "timestamp")?,
        step: message.step.unwrap_or(0),
        key,
    })
}

fn run_name(requested: Option<String>, tags: &[(String, String)]) -> String {
    if let Some(name) = requested.filter(|name| !name.is_empty()) {
        return name;
    }
    if let Some((_, name)) = tags
        .iter()
        .find(|(key, value)| key == RUN_NAME_TAG && !value.is_empty())
    {
        return name.clone();
    }
    // MLflow servers name unnamed runs; a short random suffix keeps names apart.
    // The last hex digits of a UUIDv7 are random.
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("run-{}", &id[id.len() - 8..])
}

fn check_batch_sizes(
    metrics: &[MetricMessage],
    params: &[KeyValue],
    tags: &[KeyValue],
) -> MlflowResult<()> {
    let limits = [
        ("metrics", metrics.len(), MAX_BATCH_METRICS),
        ("params", params.len(), MAX_BATCH_PARAMS),
        ("tags", tags.len(), MAX_BATCH_TAGS),
        (
            "metrics, params and tags together",
            metrics.len() + params.len() + tags.len(),
            MAX_BATCH_ITEMS,
        ),
    ];
    for (what, count, limit) in limits {
        if count > limit {
            return Err(MlflowError::invalid(format!(
                "a batch may contain at most {limit} {what}, and this one has {count}; split \
                 it into several requests"
            )));
        }
    }
    Ok(())
}

fn check_param(key: &str, value: &str) -> MlflowResult<()> {
    check_key("key", key)?;
    check_value_length("param", key, value, MAX_PARAM_VALUE_CHARS)
}

/// Checks a run tag's key and the length of its value.
pub(super) fn check_tag(key: &str, value: &str) -> MlflowResult<()> {
    check_key("key", key)?;
    check_value_length("tag", key, value, MAX_TAG_VALUE_CHARS)
}

/// Checks that the value of the param or tag `key` has at most `limit` characters, which is
/// how MLflow counts.
fn check_value_length(what: &str, key: &str, value: &str, limit: usize) -> MlflowResult<()> {
    let length = value.chars().count();
    if length > limit {
        return Err(MlflowError::invalid(format!(
            "the value of {what} '{key}' is {length} characters long; the limit is {limit}: \
             shorten it"
        )));
    }
    Ok(())
}

fn tag_pairs(tags: Vec<KeyValue>) -> MlflowResult<Vec<(String, String)>> {
    tags.into_iter()
        .map(|tag| {
            let key = required(tag.key, "tags.key")?;
            let value = tag.value.unwrap_or_default();
            check_tag(&key, &value)?;
            Ok((key, value))
        })
        .collect()
}

/// Finds the experiment of a search's id, for the search handler.
pub(super) async fn experiment_for_search(state: &AppState, id: &str) -> MlflowResult<Experiment> {
    resolve(state, id).await
}
