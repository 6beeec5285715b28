//! Experiment routes: create, get, get-by-name, search, update, delete, restore and tags.

use super::error::{MlflowCode, MlflowError, MlflowResult};
use super::filter::{self, Clause, Entity, Operator};
use super::keys::check_key;
use super::proto::{
    DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME, experiment_id, experiment_json, project_name,
};
use super::request::{MlflowRequest, lenient_i64, lenient_string, string_list};
use super::run_filter::{number, numeric_operator, text_tests};
use super::runs::ViewType;
use crate::server::state::AppState;
use crate::store::DEFAULT_PROJECT;
use crate::store::mlflow::{
    Experiment, ExperimentCondition, ExperimentKey, ExperimentSearch, LifecycleStage,
};
use crate::store::{CompareOp, TextMatch};
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

/// Maximum length of an experiment name, in characters, as MLflow 3.17 enforces it.
const MAX_NAME_CHARS: usize = 500;

/// Maximum length of an experiment tag value, in characters, as MLflow 3.17 enforces it.
const MAX_TAG_VALUE_CHARS: usize = 20_000;

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
        let project_id = canonical_id(id).ok_or_else(not_found)?;
        state.store().mlflow_experiment(project_id).await?
    };
    found
        .filter(|experiment| experiment_id(&experiment.project) == id)
        .ok_or_else(not_found)
}

/// Parses an experiment id written as the canonical decimal text of a positive number, so
/// that `01`, `+1` and ` 1` name no experiment, as on an MLflow server.
fn canonical_id(id: &str) -> Option<i64> {
    let project_id: i64 = id.parse().ok()?;
    (project_id > 0 && project_id.to_string() == id).then_some(project_id)
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
    // The project `default` is the experiment `Default`, so the name `default` names nothing.
    let found = if name == DEFAULT_PROJECT {
        None
    } else {
        state.store().mlflow_experiment_by_name(project).await?
    };
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

/// `POST experiments/search`: filters on `name`, `experiment_id`, `creation_time`,
/// `last_update_time` and tags, ordered by those attributes, with offset page tokens. The
/// search runs in the database.
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
    let mut conditions = Vec::new();
    for clause in filter::parse_filter(request.filter.as_deref().unwrap_or(""))? {
        conditions.extend(experiment_conditions(&clause)?);
    }
    let view = super::runs::parse_view_type(request.view_type.as_deref())?;
    let offset = decode_offset(request.page_token.as_deref())?;
    let search = ExperimentSearch {
        conditions,
        order: experiment_order(&request.order_by)?,
        stage: stage_of(view),
        offset: offset as u64,
        limit: page_size as u64 + 1,
    };

    let mut experiments = state.store().mlflow_search_experiments(&search).await?;
    let more = experiments.len() as u64 > page_size as u64;
    experiments.truncate(page_size as usize);
    let page: Vec<Value> = experiments.iter().map(experiment_json).collect();
    let mut body = json!({ "experiments": page });
    if more {
        body["next_page_token"] = json!(encode_offset(offset + experiments.len()));
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
    // Databases take offsets as signed 64-bit integers.
    let offset: i64 = offset.parse().map_err(|_| invalid())?;
    usize::try_from(offset).map_err(|_| invalid())
}

/// Returns the lifecycle stage that a view includes; `None` includes both.
fn stage_of(view: ViewType) -> Option<LifecycleStage> {
    match view {
        ViewType::ActiveOnly => Some(LifecycleStage::Active),
        ViewType::DeletedOnly => Some(LifecycleStage::Deleted),
        ViewType::All => None,
    }
}

/// Translates one comparison of an experiment filter into the store's conditions.
fn experiment_conditions(clause: &Clause) -> MlflowResult<Vec<ExperimentCondition>> {
    let texts = |condition: fn(TextMatch) -> ExperimentCondition| text_tests(clause, condition);
    let time = |condition: fn(CompareOp, i64) -> ExperimentCondition| {
        Ok(vec![condition(
            numeric_operator(clause)?,
            number(clause)? as i64,
        )])
    };
    match (clause.entity, clause.key.as_str()) {
        (Entity::Attribute, "name") => texts(ExperimentCondition::Name),
        (Entity::Attribute, "experiment_id") => texts(ExperimentCondition::Id),
        (Entity::Attribute, "creation_time") => time(ExperimentCondition::CreationTime),
        (Entity::Attribute, "last_update_time") => time(ExperimentCondition::LastUpdateTime),
        (Entity::Tag, key) => match clause.operator {
            Operator::IsNull | Operator::IsNotNull => Ok(vec![ExperimentCondition::TagExists {
                key: key.to_owned(),
                exists: clause.operator == Operator::IsNotNull,
            }]),
            _ => text_tests(clause, |test| ExperimentCondition::Tag {
                key: key.to_owned(),
                test,
            }),
        },
        _ => Err(MlflowError::invalid(format!(
            "invalid experiment search key '{}': filter on name, experiment_id, \
             creation_time, last_update_time or tags.<key>",
            clause.key
        ))),
    }
}

/// Translates `order_by` into sort keys. No terms is MLflow's default, newest first; the
/// experiment id, descending, breaks ties unless a term names it.
fn experiment_order(terms: &[String]) -> MlflowResult<Vec<(ExperimentKey, bool)>> {
    let mut order = Vec::with_capacity(terms.len() + 1);
    if terms.is_empty() {
        order.push((ExperimentKey::CreationTime, true));
        order.push((ExperimentKey::Id, false));
    }
    for text in terms {
        let term = filter::parse_order_by(text)?;
        let key = match (term.entity, term.key.as_str()) {
            (Entity::Attribute, "name") => ExperimentKey::Name,
            (Entity::Attribute, "experiment_id") => ExperimentKey::Id,
            (Entity::Attribute, "creation_time") => ExperimentKey::CreationTime,
            (Entity::Attribute, "last_update_time") => ExperimentKey::LastUpdateTime,
            _ => {
                return Err(MlflowError::invalid(format!(
                    "invalid order_by key '{}': order experiments by name, experiment_id, \
                     creation_time or last_update_time",
                    term.key
                )));
            }
        };
        order.push((key, term.descending));
    }
    if !order.iter().any(|(key, _)| *key == ExperimentKey::Id) {
        order.push((ExperimentKey::Id, true));
    }
    Ok(order)
}

fn check_name(name: &str) -> MlflowResult<()> {
    if name.trim().is_empty() {
        return Err(MlflowError::invalid(
            "invalid experiment name '': give a non-empty name",
        ));
    }
    let length = name.chars().count();
    if length > MAX_NAME_CHARS {
        return Err(MlflowError::invalid(format!(
            "the experiment name is {length} characters long; the limit is {MAX_NAME_CHARS}: \
             shorten it"
        )));
    }
    if name == DEFAULT_PROJECT {
        return Err(MlflowError::invalid(format!(
            "invalid experiment name '{name}': runledger stores the experiment \
             '{DEFAULT_EXPERIMENT_NAME}' as the project '{DEFAULT_PROJECT}', so that name is \
             taken; choose another name"
        )));
    }
    Ok(())
}

fn check_tag(key: &str, value: &str) -> MlflowResult<()> {
    check_key("key", key)?;
    let length = value.chars().count();
    if length > MAX_TAG_VALUE_CHARS {
        return Err(MlflowError::invalid(format!(
            "the value of experiment tag '{key}' is {length} characters long; the limit is \
             {MAX_TAG_VALUE_CHARS}: shorten it"
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
