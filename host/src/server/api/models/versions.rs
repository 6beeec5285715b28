//! Routes of model versions: register a run's artifact as a new version, which runs the
//! model's attached validators, and list, read, describe, tag and delete versions.

use super::{ModelPath, TagValue, actor, page_size, path_text, validate_tag, validate_text};
use crate::gates::{NewVersion, VersionList, VersionView};
use crate::server::auth::Caller;
use crate::server::error::{ApiResult, ErrorBody};
use crate::server::extract::{ApiJson, ApiPath, ApiQuery};
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// Default number of versions per page.
const DEFAULT_VERSION_PAGE: u64 = 100;

/// Returns the routes of model versions.
pub(super) fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(list_versions, create_version))
        .routes(documented!(get_version, update_version, delete_version))
        .routes(documented!(set_version_tag, delete_version_tag))
}

/// Path of the routes about one version.
#[derive(Debug, Deserialize)]
pub(super) struct VersionPath {
    #[serde(deserialize_with = "path_text")]
    pub(super) name: String,
    pub(super) version: u64,
}

/// Path of the routes about one tag of a version.
#[derive(Debug, Deserialize)]
struct VersionTagPath {
    #[serde(deserialize_with = "path_text")]
    name: String,
    version: u64,
    #[serde(deserialize_with = "path_text")]
    key: String,
}

/// Query of `GET /api/v1/models/{name}/versions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListVersionsQuery {
    /// Versions per page, 1 to 1000; default 100.
    pub page_size: Option<u64>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// Body of `POST /api/v1/models/{name}/versions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    /// The run that produced the artifact.
    pub run_id: String,
    /// The artifact: `STEP.OUTPUT` of a pipeline step, such as `train.model`, a run-level
    /// artifact name, or the SHA-256 digest of an artifact the run produced.
    pub artifact: String,
    /// Free-text description.
    #[serde(default)]
    pub description: String,
    /// Tags of the version.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Body of `PATCH /api/v1/models/{name}/versions/{version}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionChange {
    /// The new description.
    pub description: String,
}

/// `GET /api/v1/models/{name}/versions`: lists a model's versions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/versions",
    tag = "models",
    params(("name" = String, Path, description = "Model name"), ListVersionsQuery),
    responses(
        (status = 200, description = "One page of versions, newest first", body = VersionList),
        (status = 400, description = "The page size or page token is invalid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No model has this name", body = ErrorBody),
    )
)]
async fn list_versions(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ModelPath>,
    ApiQuery(query): ApiQuery<ListVersionsQuery>,
) -> ApiResult<Json<VersionList>> {
    let limit = page_size("page_size", query.page_size, DEFAULT_VERSION_PAGE)?;
    let token = query.page_token.filter(|token| !token.is_empty());
    let list = state
        .gates()
        .list_versions(&path.name, limit, token)
        .await?;
    Ok(Json(list))
}

/// `POST /api/v1/models/{name}/versions`: registers an artifact of a run as the model's next
/// version, then runs the model's attached validators on the run.
///
/// Failed checks do not stop the registration: they are returned with the version and block
/// promotions through policies such as `validations-passed`.
#[utoipa::path(
    post,
    path = "/api/v1/models/{name}/versions",
    tag = "models",
    params(("name" = String, Path, description = "Model name")),
    request_body = CreateVersion,
    responses(
        (status = 201, description = "The new version with its validation results",
            body = VersionView),
        (status = 400, description = "The run id, artifact, description or a tag is invalid",
            body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 404, description = "No model has this name, or no run has this id",
            body = ErrorBody),
    )
)]
async fn create_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<ModelPath>,
    ApiJson(request): ApiJson<CreateVersion>,
) -> ApiResult<(StatusCode, Json<VersionView>)> {
    crate::server::api::runs::check_run_id(&request.run_id)?;
    validate_text("artifact", &request.artifact)?;
    validate_text("description", &request.description)?;
    for (key, value) in &request.tags {
        validate_tag(&format!("tags.{key}"), key, value)?;
    }
    let new = NewVersion {
        model: path.name,
        run_id: request.run_id,
        artifact: request.artifact,
        description: request.description,
        tags: request.tags,
    };
    let registry = state.registry();
    let version = state
        .gates()
        .create_version(&registry, &actor(&caller), new)
        .await?;
    Ok((StatusCode::CREATED, Json(version)))
}

/// `GET /api/v1/models/{name}/versions/{version}`: one version with its validations.
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/versions/{version}",
    tag = "models",
    params(
        ("name" = String, Path, description = "Model name"),
        ("version" = u64, Path, description = "Version number, from 1"),
    ),
    responses(
        (status = 200, description = "The version", body = VersionView),
        (status = 400, description = "The version is not a number", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such model or version", body = ErrorBody),
    )
)]
async fn get_version(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<VersionPath>,
) -> ApiResult<Json<VersionView>> {
    Ok(Json(state.gates().version(&path.name, path.version).await?))
}

/// `PATCH /api/v1/models/{name}/versions/{version}`: changes a version's description.
#[utoipa::path(
    patch,
    path = "/api/v1/models/{name}/versions/{version}",
    tag = "models",
    params(
        ("name" = String, Path, description = "Model name"),
        ("version" = u64, Path, description = "Version number, from 1"),
    ),
    request_body = VersionChange,
    responses(
        (status = 200, description = "The changed version", body = VersionView),
        (status = 400, description = "The version or description is invalid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 404, description = "No such model or version", body = ErrorBody),
    )
)]
async fn update_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<VersionPath>,
    ApiJson(change): ApiJson<VersionChange>,
) -> ApiResult<Json<VersionView>> {
    validate_text("description", &change.description)?;
    let version = state
        .gates()
        .update_version(
            &actor(&caller),
            &path.name,
            path.version,
            &change.description,
        )
        .await?;
    Ok(Json(version))
}

/// `DELETE /api/v1/models/{name}/versions/{version}`: removes a version and the aliases that
/// point at it.
#[utoipa::path(
    delete,
    path = "/api/v1/models/{name}/versions/{version}",
    tag = "models",
    params(
        ("name" = String, Path, description = "Model name"),
        ("version" = u64, Path, description = "Version number, from 1"),
    ),
    responses(
        (status = 204, description = "The version is deleted"),
        (status = 400, description = "The version is not a number", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 404, description = "No such model or version", body = ErrorBody),
    )
)]
async fn delete_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<VersionPath>,
) -> ApiResult<StatusCode> {
    state
        .gates()
        .delete_version(&actor(&caller), &path.name, path.version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/v1/models/{name}/versions/{version}/tags/{key}`: sets a tag of a version.
#[utoipa::path(
    put,
    path = "/api/v1/models/{name}/versions/{version}/tags/{key}",
    tag = "models",
    params(
        ("name" = String, Path, description = "Model name"),
        ("version" = u64, Path, description = "Version number, from 1"),
        ("key" = String, Path, description = "Tag key"),
    ),
    request_body = TagValue,
    responses(
        (status = 200, description = "The version with the tag set", body = VersionView),
        (status = 400, description = "The version, key or value is invalid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 404, description = "No such model or version", body = ErrorBody),
    )
)]
async fn set_version_tag(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<VersionTagPath>,
    ApiJson(body): ApiJson<TagValue>,
) -> ApiResult<Json<VersionView>> {
    validate_tag("key", &path.key, &body.value)?;
    let gates = state.gates();
    gates
        .set_version_tag(
            &actor(&caller),
            &path.name,
            path.version,
            &path.key,
            &body.value,
        )
        .await?;
    Ok(Json(gates.version(&path.name, path.version).await?))
}

/// `DELETE /api/v1/models/{name}/versions/{version}/tags/{key}`: removes a tag of a version.
#[utoipa::path(
    delete,
    path = "/api/v1/models/{name}/versions/{version}/tags/{key}",
    tag = "models",
    params(
        ("name" = String, Path, description = "Model name"),
        ("version" = u64, Path, description = "Version number, from 1"),
        ("key" = String, Path, description = "Tag key"),
    ),
    responses(
        (status = 204, description = "The tag is removed, or the version had no such tag"),
        (status = 400, description = "The version is not a number", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 404, description = "No such model or version", body = ErrorBody),
    )
)]
async fn delete_version_tag(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<VersionTagPath>,
) -> ApiResult<StatusCode> {
    state
        .gates()
        .delete_version_tag(&actor(&caller), &path.name, path.version, &path.key)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
