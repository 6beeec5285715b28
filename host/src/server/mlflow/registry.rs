//! Model registry routes of the MLflow protocol: registered models, their tags and aliases.
//!
//! Registered models are the models of runledger's registry, so the governance rules apply to
//! MLflow clients too. Setting an alias is a promotion request: it succeeds only when every
//! policy attached to the alias allows it. A promotion that waits for approvals or that a
//! policy denies fails with `PERMISSION_DENIED` (403), whose message lists the approvals still
//! needed or each policy's reason. MLflow's client does not retry 403 responses.

use super::error::{MlflowCode, MlflowError, MlflowResult};
use super::experiments::{KeyValue, required};
use super::model_versions::{parse_version, version_json};
use super::proto::key_values;
use super::request::{MlflowRequest, lenient_string, string_list};
use crate::gates::{
    Actor, DecisionKind, ModelChange, ModelView, NewModelRequest, PromotionStatus, PromotionView,
    Role,
};
use crate::server::auth::Caller;
use crate::server::state::AppState;
use axum::Json;
use axum::extract::{Extension, State};
use axum::routing::{MethodRouter, delete, get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Returns the registered-model routes, relative to a prefix.
pub(super) fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/registered-models/create", post(create)),
        ("/registered-models/get", get(get_model)),
        ("/registered-models/rename", post(rename)),
        ("/registered-models/update", patch(update)),
        ("/registered-models/delete", delete(delete_model)),
        (
            "/registered-models/search",
            get(super::registry_search::search_models),
        ),
        (
            "/registered-models/get-latest-versions",
            post(latest_versions).get(latest_versions),
        ),
        ("/registered-models/set-tag", post(set_tag)),
        ("/registered-models/delete-tag", delete(delete_tag)),
        (
            "/registered-models/alias",
            post(set_alias).delete(delete_alias).get(get_by_alias),
        ),
    ]
}

#[derive(Debug, Deserialize)]
pub(super) struct CreateModel {
    name: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ModelName {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RenameModel {
    name: Option<String>,
    new_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct UpdateModel {
    name: Option<String>,
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct LatestVersions {
    name: Option<String>,
    #[serde(default, deserialize_with = "string_list")]
    stages: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ModelTag {
    name: Option<String>,
    key: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SetAlias {
    name: Option<String>,
    alias: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    version: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct AliasRef {
    name: Option<String>,
    alias: Option<String>,
}

/// Returns the identity of the request, as recorded in the audit log.
pub(super) fn actor(caller: &Caller) -> Actor {
    Actor {
        name: caller.name.clone(),
        role: caller.role,
    }
}

/// Fails with `PERMISSION_DENIED` unless the caller has at least role `needed`, as the native
/// routes require for the same operation.
fn require_role(caller: &Caller, needed: Role, action: &str) -> MlflowResult<()> {
    if caller.role >= needed {
        return Ok(());
    }
    Err(MlflowError::new(
        MlflowCode::PermissionDenied,
        format!(
            "{} has role {}, but {action} needs role {} or higher",
            caller.name,
            caller.role.as_str(),
            needed.as_str()
        ),
    ))
}

/// Builds MLflow's `RegisteredModel` message, whose `latest_versions` lists the highest version.
pub(super) async fn model_json(state: &AppState, model: &ModelView) -> MlflowResult<Value> {
    let mut latest = Vec::new();
    if let Some(number) = model.latest_version {
        let version = state.gates().version(&model.name, number).await?;
        latest.push(version_json(&version));
    }
    let aliases: Vec<Value> = model
        .aliases
        .iter()
        .map(|(alias, version)| json!({ "alias": alias, "version": version.to_string() }))
        .collect();
    Ok(json!({
        "name": model.name,
        "creation_timestamp": model.created_at,
        "last_updated_timestamp": model.updated_at,
        "user_id": model.created_by,
        "description": model.description,
        "latest_versions": latest,
        "tags": key_values(&model.tags),
        "aliases": aliases,
    }))
}

async fn model_response(state: &AppState, model: &ModelView) -> MlflowResult<Json<Value>> {
    Ok(Json(
        json!({ "registered_model": model_json(state, model).await? }),
    ))
}

/// `POST registered-models/create`.
async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<CreateModel>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name, "name")?;
    let mut tags = BTreeMap::new();
    for tag in request.tags {
        tags.insert(
            required(tag.key, "tags.key")?,
            tag.value.unwrap_or_default(),
        );
    }
    let new = NewModelRequest {
        name,
        description: request.description.unwrap_or_default(),
        tags,
    };
    let model = state.gates().create_model(&actor(&caller), new).await?;
    model_response(&state, &model).await
}

/// `GET registered-models/get`.
async fn get_model(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<ModelName>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name, "name")?;
    let model = state.gates().model(&name).await?;
    model_response(&state, &model).await
}

/// `POST registered-models/rename`.
async fn rename(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<RenameModel>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name, "name")?;
    let change = ModelChange {
        description: None,
        new_name: Some(required(request.new_name, "new_name")?),
    };
    let model = state
        .gates()
        .update_model(&actor(&caller), &name, change)
        .await?;
    model_response(&state, &model).await
}

/// `PATCH registered-models/update`: changes the description.
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<UpdateModel>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name, "name")?;
    let change = ModelChange {
        description: Some(request.description.unwrap_or_default()),
        new_name: None,
    };
    let model = state
        .gates()
        .update_model(&actor(&caller), &name, change)
        .await?;
    model_response(&state, &model).await
}

/// `DELETE registered-models/delete`: needs role admin, as on the native API, because it
/// drops the model's aliases and promotion rules.
async fn delete_model(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<ModelName>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name, "name")?;
    require_role(&caller, Role::Admin, "deleting a registered model")?;
    state.gates().delete_model(&actor(&caller), &name).await?;
    Ok(Json(json!({})))
}

/// `POST registered-models/get-latest-versions`: the highest version. Versions here have no
/// stage, which MLflow writes as `None`, so asking for other stages returns nothing.
async fn latest_versions(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<LatestVersions>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name, "name")?;
    let model = state.gates().model(&name).await?;
    let wants_none = request.stages.is_empty()
        || request
            .stages
            .iter()
            .any(|stage| stage.eq_ignore_ascii_case("none"));
    let mut versions = Vec::new();
    if let (true, Some(number)) = (wants_none, model.latest_version) {
        versions.push(version_json(&state.gates().version(&name, number).await?));
    }
    Ok(Json(json!({ "model_versions": versions })))
}

/// `POST registered-models/set-tag`.
async fn set_tag(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<ModelTag>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name, "name")?;
    let key = required(request.key, "key")?;
    let value = required(request.value, "value")?;
    state
        .gates()
        .set_model_tag(&actor(&caller), &name, &key, &value)
        .await?;
    Ok(Json(json!({})))
}

/// `DELETE registered-models/delete-tag`.
async fn delete_tag(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<ModelTag>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name, "name")?;
    let key = required(request.key, "key")?;
    state
        .gates()
        .delete_model_tag(&actor(&caller), &name, &key)
        .await?;
    Ok(Json(json!({})))
}

/// `POST registered-models/alias`: requests the promotion of the version to the alias. It
/// returns `{}` once the alias has moved, and `PERMISSION_DENIED` when the promotion waits for
/// approvals or a policy denied it.
async fn set_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<SetAlias>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name, "name")?;
    let alias = required(request.alias, "alias")?;
    let version = parse_version(&required(request.version, "version")?)?;
    let registry = state.registry();
    let promotion = state
        .gates()
        .request_promotion(&registry, &actor(&caller), &name, version, &alias)
        .await?;
    match promotion.status {
        PromotionStatus::Completed => Ok(Json(json!({}))),
        PromotionStatus::Pending => Err(pending_error(&promotion)),
        PromotionStatus::Denied => Err(denied_error(&state, &promotion).await),
        PromotionStatus::Superseded => Err(MlflowError::new(
            MlflowCode::ResourceConflict,
            format!(
                "the promotion of {name} version {version} to '{alias}' was superseded by a \
                 newer request for the same alias; set the alias again"
            ),
        )),
    }
}

/// Builds the error of a promotion that waits for approvals: per waiting policy, how many
/// approvals of which role it needs and who did not count.
fn pending_error(promotion: &PromotionView) -> MlflowError {
    let needed: Vec<String> = promotion
        .needed
        .iter()
        .map(|need| {
            format!(
                "{} needs {} more approval(s) by role {} or higher: {}",
                need.plugin, need.count, need.role, need.reason
            )
        })
        .collect();
    MlflowError::new(
        MlflowCode::PermissionDenied,
        format!(
            "alias '{alias}' of {model} was not moved to version {version}: the promotion \
             (id {id}) waits for approvals. {needed}. An approver approves it with POST \
             /api/v1/models/{model}/versions/{version}/approvals {{\"alias\": \"{alias}\"}}, \
             which moves the alias once every policy allows it",
            alias = promotion.alias,
            model = promotion.model,
            version = promotion.version,
            id = promotion.id,
            needed = needed.join("; "),
        ),
    )
}

/// Builds the error of a denied promotion: each denying policy's reason and the version's
/// failed blocking checks.
async fn denied_error(state: &AppState, promotion: &PromotionView) -> MlflowError {
    let reasons: Vec<String> = promotion
        .decisions
        .iter()
        .filter(|decision| decision.decision == DecisionKind::Deny)
        .map(|decision| format!("{} denied it: {}", decision.plugin, decision.reason))
        .collect();
    let mut message = format!(
        "alias '{}' of {} was not moved to version {}: the promotion (id {}) was denied. {}",
        promotion.alias,
        promotion.model,
        promotion.version,
        promotion.id,
        reasons.join("; ")
    );
    if let Ok(version) = state
        .gates()
        .version(&promotion.model, promotion.version)
        .await
    {
        let failed = failed_checks(&version.validations);
        if !failed.is_empty() {
            message.push_str(&format!(". Failed validations: {}", failed.join("; ")));
        }
    }
    MlflowError::new(MlflowCode::PermissionDenied, message)
}

fn failed_checks(records: &[crate::gates::ValidationRecord]) -> Vec<String> {
    let mut failed = Vec::new();
    for record in records {
        if let Some(error) = &record.error {
            failed.push(format!("{} could not run: {error}", record.plugin));
        }
        for check in record.checks.iter().filter(|check| !check.passed) {
            failed.push(format!(
                "{} check '{}' ({}): {}",
                record.plugin, check.name, check.severity, check.message
            ));
        }
    }
    failed
}

/// `DELETE registered-models/alias`: removes the alias without a promotion, so it needs role
/// approver, as on the native API.
async fn delete_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<AliasRef>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name, "name")?;
    let alias = required(request.alias, "alias")?;
    require_role(&caller, Role::Approver, "removing an alias")?;
    state
        .gates()
        .remove_alias(&actor(&caller), &name, &alias)
        .await?;
    Ok(Json(json!({})))
}

/// `GET registered-models/alias`: the version the alias points at.
async fn get_by_alias(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<AliasRef>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name, "name")?;
    let alias = required(request.alias, "alias")?;
    let model = state.gates().model(&name).await?;
    let Some(number) = model.aliases.get(&alias) else {
        return Err(MlflowError::not_found(format!(
            "registered model '{name}' has no alias '{alias}'"
        )));
    };
    let version = state.gates().version(&name, *number).await?;
    Ok(Json(json!({ "model_version": version_json(&version) })))
}
