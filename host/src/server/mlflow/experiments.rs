//! Experiment routes: create, get, get-by-name, search, update, delete, restore and tags.

use super::error::{MlflowCode, MlflowError, MlflowResult};
use super::filter::{self, Clause, Entity, SortOrder};
use super::proto::{
    DEFAULT_EXPERIMENT_ID, experiment_id, experiment_json, experiment_name, project_name,
};
use super::request::{MlflowRequest, lenient_i64, lenient_string, string_list};
use crate::server::names::validate_key;
use crate::server::state::AppState;
use crate::store::DEFAULT_PROJECT;
use crate::store::mlflow::{Experiment, LifecycleStage};
use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

/// Maximum number of experiments one search page returns, as on an MLflow server.
const MAX_EXPERIMENTS_PER_PAGE: i64 = 50_000;

/// Page size when the request names none, as on an MLflow server.
const DEFAULT_EXPERIMENTS_PER_PAGE: i64 = 1000;

/// Maximum length of an experiment name, in bytes, as MLflow 3.17 enforces it.
const MAX_NAME_BYTES: usize = 500;

/// Maximum length of an experiment tag value, in bytes, as MLflow 3.17 enforces it.
const MAX_TAG_VALUE_BYTES: usize = 20_000;

#[derive(Debug, Deserialize)]
pub(super) struct KeyValue {
    pub(super) key: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(super) value: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CreateExperiment {
    name: Option<String>,
    artifact_location: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ExperimentRef {
    #[serde(default, deserialize_with = "lenient_string")]
    experiment_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ExperimentByName {
    experiment_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct UpdateExperiment {
    #[serde(default, deserialize_with = "lenient_string")]
    experiment_id: Option<String>,
    new_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ExperimentTag {
    #[serde(default, deserialize_with = "lenient_string")]
    experiment_id: Option<String>,
    key: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SearchExperiments {
    #[serde(default, deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    page_token: Option<String>,
    filter: Option<String>,
    #[serde(default, deserialize_with = "string_list")]
    order_by: Vec<String>,
    view_type: Option<String>,
}

/// Returns the value of a required field, or `INVALID_PARAMETER_VALUE` naming it.
pub(super) fn required<T>(value: Option<T>, field: &str) -> MlflowResult<T> {
    value.ok_or_else(|| {
        MlflowError::invalid(format!("missing value for required parameter '{field}'"))
    })
}

/// Finds the experiment with this id, or fails with `RESOURCE_DOES_NOT_EXIST`.
pub(super) async fn resolve(state: &AppState, id: &str) -> MlflowResult<Experiment> {
    let not_found = || MlflowError::not_found(format!("no experiment with id '{id}'"));
    let found = if id == DEFAULT_EXPERIMENT_ID {
        state.store().ensure_project(DEFAULT_PROJECT).await?;
        state
            .store()
            .mlflow_experiment_by_name(DEFAULT_PROJECT)
            .await?
    } else {
        let project_id: i64 = id.trim().parse().map_err(|_| not_found())?;
        state.store().mlflow_experiment(project_id).await?
    };
    found.ok_or_else(not_found)
}

/// Finds an experiment that is not deleted, or fails naming why it cannot take writes.
pub(super) async fn resolve_active(state: &AppState, id: &str) -> MlflowResult<Experiment> {
    let experiment = resolve(state, id).await?;
    if experiment.lifecycle_stage == LifecycleStage::Deleted {
        return Err(MlflowError::invalid(format!(
            "experiment '{id}' is deleted; restore it before adding runs"
        )));
    }
    Ok(experiment)
}

/// `POST experiments/create`.
pub(super) async fn create(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<CreateExperiment>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name, "name")?;
    check_name(&name)?;
    let tags = tag_pairs(request.tags)?;
    let location = request.artifact_location.filter(|text| !text.is_empty());
    let created = state
        .store()
        .mlflow_create_experiment(project_name(&name), location.as_deref(), &tags)
        .await?;
    let Some(created) = created else {
        return Err(MlflowError::new(
            MlflowCode::ResourceAlreadyExists,
            format!("experiment '{name}' already exists; choose another name"),
        ));
    };
    Ok(Json(
        json!({ "experiment_id": experiment_id(&created.project) }),
    ))
}

/// `GET experiments/get`.
pub(super) async fn get(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<ExperimentRef>,
) -> MlflowResult<Json<Value>> {
    let id = required(request.experiment_id, "experiment_id")?;
    let experiment = resolve(&state, &id).await?;
    Ok(Json(json!({ "experiment": experiment_json(&experiment) })))
}

/// `GET experiments/get-by-name`.
pub(super) async fn get_by_name(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<ExperimentByName>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.experiment_name, "experiment_name")?;
    let project = project_name(&name);
    if project == DEFAULT_PROJECT {
        state.store().ensure_project(DEFAULT_PROJECT).await?;
    }
    let found = state.store().mlflow_experiment_by_name(project).await?;
    let experiment =
        found.ok_or_else(|| MlflowError::not_found(format!("no experiment named '{name}'")))?;
    Ok(Json(json!({ "experiment": experiment_json(&experiment) })))
}

/// `POST experiments/update`: renames an experiment.
pub(super) async fn update(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<UpdateExperiment>,
) -> MlflowResult<Json<Value>> {
    let id = required(request.experiment_id, "experiment_id")?;
    let new_name = required(request.new_name, "new_name")?;
    check_name(&new_name)?;
    let experiment = resolve_active(&state, &id).await?;
    if experiment.project.name == DEFAULT_PROJECT {
        return Err(MlflowError::invalid(
            "the Default experiment cannot be renamed; create a new experiment instead",
        ));
    }
    let renamed = state
        .store()
        .mlflow_rename_experiment(experiment.project.id, project_name(&new_name))
        .await?;
    if !renamed {
        return Err(MlflowError::new(
            MlflowCode::ResourceAlreadyExists,
            format!("experiment '{new_name}' already exists; choose another name"),
        ));
    }
    Ok(Json(json!({})))
}

/// `POST experiments/delete`: moves an experiment and its runs to the trash.
pub(super) async fn delete(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<ExperimentRef>,
) -> MlflowResult<Json<Value>> {
    let id = required(request.experiment_id, "experiment_id")?;
    let experiment = resolve(&state, &id).await?;
    if experiment.project.name == DEFAULT_PROJECT {
        return Err(MlflowError::invalid(
            "the Default experiment cannot be deleted",
        ));
    }
    let store = state.store();
    store
        .mlflow_set_experiment_stage(experiment.project.id, LifecycleStage::Deleted)
        .await?;
    Ok(Json(json!({})))
}

/// `POST experiments/restore`.
pub(super) async fn restore(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<ExperimentRef>,
) -> MlflowResult<Json<Value>> {
    let id = required(request.experiment_id, "experiment_id")?;
    let experiment = resolve(&state, &id).await?;
    let store = state.store();
    store
        .mlflow_set_experiment_stage(experiment.project.id, LifecycleStage::Active)
        .await?;
    Ok(Json(json!({})))
}

/// `POST experiments/set-experiment-tag`.
pub(super) async fn set_tag(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<ExperimentTag>,
) -> MlflowResult<Json<Value>> {
    let id = required(request.experiment_id, "experiment_id")?;
    let key = required(request.key, "key")?;
    let value = request.value.unwrap_or_default();
    check_tag(&key, &value)?;
    let experiment = resolve_active(&state, &id).await?;
    let store = state.store();
    store
        .mlflow_set_experiment_tag(experiment.project.id, &key, &value)
        .await?;
    Ok(Json(json!({})))
}

/// `POST experiments/delete-experiment-tag`.
pub(super) async fn delete_tag(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<ExperimentTag>,
) -> MlflowResult<Json<Value>> {
    let id = required(request.experiment_id, "experiment_id")?;
    let key = required(request.key, "key")?;
    let experiment = resolve_active(&state, &id).await?;
    let store = state.store();
    store
        .mlflow_delete_experiment_tag(experiment.project.id, &key)
        .await?;
    Ok(Json(json!({})))
}

/// `POST experiments/search`: filters on `name`, `creation_time`, `last_update_time` and
/// tags, ordered by those or by `experiment_id`, with offset page tokens.
pub(super) async fn search(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<SearchExperiments>,
) -> MlflowResult<Json<Value>> {
    let page_size = request.max_results.unwrap_or(DEFAULT_EXPERIMENTS_PER_PAGE);
    if !(1..=MAX_EXPERIMENTS_PER_PAGE).contains(&page_size) {
        return Err(MlflowError::invalid(format!(
            "invalid value {page_size} for parameter 'max_results': give 1 to \
             {MAX_EXPERIMENTS_PER_PAGE}"
        )));
    }
    let clauses = filter::parse_filter(request.filter.as_deref().unwrap_or(""))?;
    let orders = request
        .order_by
        .iter()
        .map(|text| filter::parse_order_by(text))
        .collect::<MlflowResult<Vec<_>>>()?;
    let view = super::runs::parse_view_type(request.view_type.as_deref())?;
    let offset = decode_offset(request.page_token.as_deref())?;

    let mut experiments = Vec::new();
    for experiment in state.store().mlflow_experiments().await? {
        if view.includes(experiment.lifecycle_stage) && matches_all(&experiment, &clauses)? {
            experiments.push(experiment);
        }
    }
    sort_experiments(&mut experiments, &orders)?;

    let page_size = usize::try_from(page_size).unwrap_or(usize::MAX);
    let end = offset.saturating_add(page_size).min(experiments.len());
    let page: Vec<Value> = experiments
        .get(offset.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(experiment_json)
        .collect();
    let mut body = json!({ "experiments": page });
    if end < experiments.len() {
        body["next_page_token"] = json!(encode_offset(end));
    }
    Ok(Json(body))
}

/// Encodes an offset as an opaque page token.
pub(super) fn encode_offset(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

/// Decodes a page token from [`encode_offset`]; no token is offset 0.
pub(super) fn decode_offset(token: Option<&str>) -> MlflowResult<usize> {
    let Some(token) = token.filter(|text| !text.is_empty()) else {
        return Ok(0);
    };
    let invalid = || {
        MlflowError::invalid(format!(
            "invalid page_token '{token}': pass the next_page_token of the previous page \
             unchanged"
        ))
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let offset = text.strip_prefix("offset:").ok_or_else(invalid)?;
    offset.parse().map_err(|_| invalid())
}

fn matches_all(experiment: &Experiment, clauses: &[Clause]) -> MlflowResult<bool> {
    for clause in clauses {
        if !matches(experiment, clause)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn matches(experiment: &Experiment, clause: &Clause) -> MlflowResult<bool> {
    match (clause.entity, clause.key.as_str()) {
        (Entity::Attribute, "name") => {
            let name = experiment_name(&experiment.project);
            filter::text_matches(&name, clause)
        }
        (Entity::Attribute, "creation_time") => {
            filter::number_matches(experiment.project.created_at as f64, clause)
        }
        (Entity::Attribute, "last_update_time") => {
            filter::number_matches(experiment.last_update_time as f64, clause)
        }
        (Entity::Tag, key) => match experiment.tags.get(key) {
            Some(value) => filter::text_matches(value, clause),
            None => Ok(false),
        },
        _ => Err(MlflowError::invalid(format!(
            "invalid experiment search key '{}': filter on name, creation_time, \
             last_update_time or tags.<key>",
            clause.key
        ))),
    }
}

fn sort_experiments(experiments: &mut [Experiment], orders: &[SortOrder]) -> MlflowResult<()> {
    for order in orders {
        let known = order.entity == Entity::Attribute
            && matches!(
                order.key.as_str(),
                "name" | "experiment_id" | "creation_time" | "last_update_time"
            );
        if !known {
            return Err(MlflowError::invalid(format!(
                "invalid order_by key '{}': order experiments by name, experiment_id, \
                 creation_time or last_update_time",
                order.key
            )));
        }
    }
    experiments.sort_by(|a, b| {
        let requested = filter::compare_in_order(orders, |key| match key {
            "name" => experiment_name(&a.project).cmp(&experiment_name(&b.project)),
            "creation_time" => a.project.created_at.cmp(&b.project.created_at),
            "last_update_time" => a.last_update_time.cmp(&b.last_update_time),
            _ => experiment_rank(a).cmp(&experiment_rank(b)),
        });

        // MLflow's default order: newest first.
        requested.then_with(|| {
            b.project
                .created_at
                .cmp(&a.project.created_at)
                .then(experiment_rank(b).cmp(&experiment_rank(a)))
        })
    });
    Ok(())
}

/// Orders the Default experiment, id 0, before the others.
fn experiment_rank(experiment: &Experiment) -> i64 {
    if experiment.project.name == DEFAULT_PROJECT {
        0
    } else {
        experiment.project.id
    }
}

fn check_name(name: &str) -> MlflowResult<()> {
    if name.trim().is_empty() {
        return Err(MlflowError::invalid(
            "invalid experiment name '': give a non-empty name",
        ));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(MlflowError::invalid(format!(
            "experiment name is longer than {MAX_NAME_BYTES} bytes; use a shorter name"
        )));
    }
    Ok(())
}

fn check_tag(key: &str, value: &str) -> MlflowResult<()> {
    validate_key("key", key).map_err(MlflowError::from)?;
    if value.len() > MAX_TAG_VALUE_BYTES {
        return Err(MlflowError::invalid(format!(
            "the value of experiment tag '{key}' is longer than {MAX_TAG_VALUE_BYTES} bytes"
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
