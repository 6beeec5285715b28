//! Routes of the plugins attached to a model: the metric validators every new version runs,
//! and the policies each alias's promotions must pass.
//!
//! A `PUT` replaces the whole list. Each entry is checked before anything is stored: the plugin
//! exists, is of the right kind, and its config passes the plugin's config schema.

use super::{ModelPath, actor, path_text};
use crate::gates::ValidatorSpec;
use crate::runtime::PluginKind;
use crate::server::auth::Caller;
use crate::server::error::{ApiResult, ErrorBody};
use crate::server::extract::{ApiJson, ApiPath};
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use axum::Json;
use axum::extract::{Extension, State};
use serde::Deserialize;

/// Returns the routes of validator and policy attachments.
pub(super) fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(get_validators, set_validators))
        .routes(documented!(get_policies, set_policies))
}

/// Path of the routes about one alias's policies.
#[derive(Debug, Deserialize)]
struct PolicyPath {
    #[serde(deserialize_with = "path_text")]
    name: String,
    #[serde(deserialize_with = "path_text")]
    alias: String,
}

/// `GET /api/v1/models/{name}/validators`: the metric validators run on every new version.
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/validators",
    tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "The attached validators, in the order they run",
            body = Vec<ValidatorSpec>),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No model has this name", body = ErrorBody),
    )
)]
async fn get_validators(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ModelPath>,
) -> ApiResult<Json<Vec<ValidatorSpec>>> {
    Ok(Json(state.gates().model(&path.name).await?.validators))
}

/// `PUT /api/v1/models/{name}/validators`: replaces the metric validators of a model.
#[utoipa::path(
    put,
    path = "/api/v1/models/{name}/validators",
    tag = "models",
    params(("name" = String, Path, description = "Model name")),
    request_body = Vec<ValidatorSpec>,
    responses(
        (status = 200, description = "The validators now attached", body = Vec<ValidatorSpec>),
        (status = 400, description = "An entry names a missing plugin, one that is not a \
            metric-validator, or a config its schema rejects; the message names the index, \
            the plugin and the schema path", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below admin", body = ErrorBody),
        (status = 404, description = "No model has this name", body = ErrorBody),
    )
)]
async fn set_validators(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<ModelPath>,
    ApiJson(specs): ApiJson<Vec<ValidatorSpec>>,
) -> ApiResult<Json<Vec<ValidatorSpec>>> {
    let registry = state.registry();
    let gates = state.gates();
    gates.check_specs(&registry, PluginKind::MetricValidator, &specs)?;
    let model = gates
        .set_validators(&registry, &actor(&caller), &path.name, specs)
        .await?;
    Ok(Json(model.validators))
}

/// `GET /api/v1/models/{name}/policies/{alias}`: the policies a promotion to the alias must
/// pass.
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/policies/{alias}",
    tag = "models",
    params(
        ("name" = String, Path, description = "Model name"),
        ("alias" = String, Path, description = "Alias, such as `production`"),
    ),
    responses(
        (status = 200, description = "The attached policies, in the order they decide; empty \
            when promotions to the alias complete at once", body = Vec<ValidatorSpec>),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No model has this name", body = ErrorBody),
    )
)]
async fn get_policies(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<PolicyPath>,
) -> ApiResult<Json<Vec<ValidatorSpec>>> {
    let mut model = state.gates().model(&path.name).await?;
    let policies = model.policies.remove(&path.alias).unwrap_or_default();
    Ok(Json(policies))
}

/// `PUT /api/v1/models/{name}/policies/{alias}`: replaces the policies of one alias.
#[utoipa::path(
    put,
    path = "/api/v1/models/{name}/policies/{alias}",
    tag = "models",
    params(
        ("name" = String, Path, description = "Model name"),
        ("alias" = String, Path, description = "Alias, such as `production`"),
    ),
    request_body = Vec<ValidatorSpec>,
    responses(
        (status = 200, description = "The policies now attached to the alias",
            body = Vec<ValidatorSpec>),
        (status = 400, description = "The alias is invalid, or an entry names a missing plugin, \
            one that is not a policy, or a config its schema rejects; the message names the \
            index, the plugin and the schema path", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below admin", body = ErrorBody),
        (status = 404, description = "No model has this name", body = ErrorBody),
    )
)]
async fn set_policies(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<PolicyPath>,
    ApiJson(specs): ApiJson<Vec<ValidatorSpec>>,
) -> ApiResult<Json<Vec<ValidatorSpec>>> {
    let registry = state.registry();
    let gates = state.gates();
    gates.check_specs(&registry, PluginKind::Policy, &specs)?;
    let mut model = gates
        .set_policies(&registry, &actor(&caller), &path.name, &path.alias, specs)
        .await?;
    Ok(Json(model.policies.remove(&path.alias).unwrap_or_default()))
}
