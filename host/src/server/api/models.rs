//! Routes of the model registry: registered models and their tags here, and in the submodules
//! their versions, attached validators and policies, aliases and promotions, and audit log.
//!
//! Every write acts as the request's [`Caller`]: the token name, or `local` in local mode.
//! Local mode cannot satisfy approval rules, because every request comes from the same person
//! and policies such as `required-approvals` count neither the requester nor the run's author.

pub mod aliases;
pub mod attachments;
pub mod audit;
pub mod versions;

use crate::gates::{Actor, ModelChange, ModelList, ModelView, NewModelRequest};
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult, ErrorBody};
use crate::server::extract::{ApiJson, ApiPath, ApiQuery};
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};

/// Default number of models per page.
const DEFAULT_MODEL_PAGE: u64 = 100;

/// Most models or versions one page may hold.
const MAX_REGISTRY_PAGE: u64 = 1000;

/// Returns the routes of the model registry.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(list_models, create_model))
        .routes(documented!(get_model, update_model, delete_model))
        .routes(documented!(set_model_tag, delete_model_tag))
        .merge(versions::router())
        .merge(attachments::router())
        .merge(aliases::router())
        .merge(audit::router())
}

/// Returns the governance identity of a request's caller.
fn actor(caller: &Caller) -> Actor {
    Actor {
        name: caller.name.clone(),
        role: caller.role,
    }
}

/// Checks a page size given in `field` and returns it, or the default when it is missing.
fn page_size(field: &str, requested: Option<u64>, default: u64) -> ApiResult<u64> {
    let size = requested.unwrap_or(default);
    if (1..=MAX_REGISTRY_PAGE).contains(&size) {
        return Ok(size);
    }
    Err(ApiError::invalid_field(
        field,
        format!("{size} is out of range; ask for 1 to {MAX_REGISTRY_PAGE} per page"),
    ))
}

/// Decodes a path segment, rejecting NUL characters, which no name contains and PostgreSQL
/// cannot compare.
fn path_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.contains('\0') {
        return Err(D::Error::custom(
            "a segment contains a NUL character; remove it",
        ));
    }
    Ok(text)
}

/// Path of the routes about one model.
#[derive(Debug, Deserialize)]
struct ModelPath {
    #[serde(deserialize_with = "path_text")]
    name: String,
}

/// Query of `GET /api/v1/models`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListModelsQuery {
    /// Only models whose name starts with this text.
    pub name_prefix: Option<String>,
    /// Models per page, 1 to 1000; default 100.
    pub page_size: Option<u64>,
    /// The `next_page_token` of the previous page, with the same prefix.
    pub page_token: Option<String>,
}

/// `GET /api/v1/models`: lists registered models by name, one page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/models",
    tag = "models",
    params(ListModelsQuery),
    responses(
        (status = 200, description = "One page of models, by name", body = ModelList),
        (status = 400, description = "The page size or page token is invalid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
    )
)]
async fn list_models(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListModelsQuery>,
) -> ApiResult<Json<ModelList>> {
    let limit = page_size("page_size", query.page_size, DEFAULT_MODEL_PAGE)?;
    if query
        .name_prefix
        .as_deref()
        .is_some_and(|p| p.contains('\0'))
    {
        return Err(ApiError::invalid_field(
            "name_prefix",
            "contains a NUL character; remove it",
        ));
    }
    let token = query.page_token.filter(|token| !token.is_empty());
    let list = state
        .gates()
        .list_models(query.name_prefix, limit, token)
        .await?;
    Ok(Json(list))
}

/// `POST /api/v1/models`: registers a model under a new name.
#[utoipa::path(
    post,
    path = "/api/v1/models",
    tag = "models",
    request_body = NewModelRequest,
    responses(
        (status = 201, description = "The model is registered", body = ModelView),
        (status = 400, description = "The name, description or a tag is invalid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 409, description = "A model with this name exists", body = ErrorBody),
    )
)]
async fn create_model(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<NewModelRequest>,
) -> ApiResult<(StatusCode, Json<ModelView>)> {
    validate_text("name", &request.name)?;
    validate_text("description", &request.description)?;
    for (key, value) in &request.tags {
        validate_tag(&format!("tags.{key}"), key, value)?;
    }
    let model = state.gates().create_model(&actor(&caller), request).await?;
    Ok((StatusCode::CREATED, Json(model)))
}

/// Rejects text that PostgreSQL cannot store: NUL characters.
fn validate_text(field: &str, text: &str) -> ApiResult<()> {
    if text.contains('\0') {
        return Err(ApiError::invalid_field(
            field,
            "contains a NUL character; remove it",
        ));
    }
    Ok(())
}

/// Checks a tag's key and value given in `field` for NUL characters. The store checks the
/// key's naming rule.
fn validate_tag(field: &str, key: &str, value: &str) -> ApiResult<()> {
    validate_text(field, key)?;
    validate_text(field, value)
}

/// `GET /api/v1/models/{name}`: one model with its tags, aliases, validators and policies.
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}",
    tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "The model", body = ModelView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No model has this name", body = ErrorBody),
    )
)]
async fn get_model(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ModelPath>,
) -> ApiResult<Json<ModelView>> {
    Ok(Json(state.gates().model(&path.name).await?))
}

/// `PATCH /api/v1/models/{name}`: changes a model's description or renames it.
#[utoipa::path(
    patch,
    path = "/api/v1/models/{name}",
    tag = "models",
    params(("name" = String, Path, description = "Model name")),
    request_body = ModelChange,
    responses(
        (status = 200, description = "The changed model", body = ModelView),
        (status = 400, description = "The new name or description is invalid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 404, description = "No model has this name", body = ErrorBody),
        (status = 409, description = "Another model has the new name", body = ErrorBody),
    )
)]
async fn update_model(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<ModelPath>,
    ApiJson(change): ApiJson<ModelChange>,
) -> ApiResult<Json<ModelView>> {
    if let Some(name) = &change.new_name {
        validate_text("new_name", name)?;
    }
    if let Some(description) = &change.description {
        validate_text("description", description)?;
    }
    let model = state
        .gates()
        .update_model(&actor(&caller), &path.name, change)
        .await?;
    Ok(Json(model))
}

/// `DELETE /api/v1/models/{name}`: removes a model with its versions, aliases, attachments
/// and promotions. Its audit entries stay.
#[utoipa::path(
    delete,
    path = "/api/v1/models/{name}",
    tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 204, description = "The model is deleted"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below admin", body = ErrorBody),
        (status = 404, description = "No model has this name", body = ErrorBody),
    )
)]
async fn delete_model(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<ModelPath>,
) -> ApiResult<StatusCode> {
    state
        .gates()
        .delete_model(&actor(&caller), &path.name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Path of the routes about one tag of a model.
#[derive(Debug, Deserialize)]
struct ModelTagPath {
    #[serde(deserialize_with = "path_text")]
    name: String,
    #[serde(deserialize_with = "path_text")]
    key: String,
}

/// Body of the routes that set a tag.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagValue {
    /// The tag's new value.
    pub value: String,
}

/// `PUT /api/v1/models/{name}/tags/{key}`: sets a tag of a model.
#[utoipa::path(
    put,
    path = "/api/v1/models/{name}/tags/{key}",
    tag = "models",
    params(
        ("name" = String, Path, description = "Model name"),
        ("key" = String, Path, description = "Tag key"),
    ),
    request_body = TagValue,
    responses(
        (status = 200, description = "The model with the tag set", body = ModelView),
        (status = 400, description = "The key or value is invalid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 404, description = "No model has this name", body = ErrorBody),
    )
)]
async fn set_model_tag(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<ModelTagPath>,
    ApiJson(body): ApiJson<TagValue>,
) -> ApiResult<Json<ModelView>> {
    validate_tag("key", &path.key, &body.value)?;
    let gates = state.gates();
    gates
        .set_model_tag(&actor(&caller), &path.name, &path.key, &body.value)
        .await?;
    Ok(Json(gates.model(&path.name).await?))
}

/// `DELETE /api/v1/models/{name}/tags/{key}`: removes a tag of a model.
#[utoipa::path(
    delete,
    path = "/api/v1/models/{name}/tags/{key}",
    tag = "models",
    params(
        ("name" = String, Path, description = "Model name"),
        ("key" = String, Path, description = "Tag key"),
    ),
    responses(
        (status = 204, description = "The tag is removed, or the model had no such tag"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 404, description = "No model has this name", body = ErrorBody),
    )
)]
async fn delete_model_tag(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<ModelTagPath>,
) -> ApiResult<StatusCode> {
    state
        .gates()
        .delete_model_tag(&actor(&caller), &path.name, &path.key)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
