//! Routes of aliases and promotions: moving an alias is a promotion request that every policy
//! attached to the alias must allow, approvals let waiting promotions proceed, and the
//! promotions of a model can be listed and read.
//!
//! A completed promotion returns 200, one that waits for approvals 202 with the approvals still
//! needed, and one a policy denies 409 `promotion_denied` with each policy's reason.

use super::versions::VersionPath;
use super::{ModelPath, actor, path_text, validate_text};
use crate::gates::{PromotionStatus, PromotionView};
use crate::server::auth::Caller;
use crate::server::error::{ApiError, ApiResult, ErrorBody, ErrorCode, FieldProblem};
use crate::server::extract::{ApiJson, ApiPath, ApiQuery};
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// Returns the routes of aliases, approvals and promotions.
pub(super) fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(list_aliases))
        .routes(documented!(promote, remove_alias))
        .routes(documented!(approve))
        .routes(documented!(list_promotions))
        .routes(documented!(get_promotion))
}

/// Path of the routes about one alias.
#[derive(Debug, Deserialize)]
struct AliasPath {
    #[serde(deserialize_with = "path_text")]
    name: String,
    #[serde(deserialize_with = "path_text")]
    alias: String,
}

/// Body of `PUT /api/v1/models/{name}/aliases/{alias}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotionRequestBody {
    /// The version the alias should point at.
    pub version: u64,
}

/// Body of `POST /api/v1/models/{name}/versions/{version}/approvals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalBody {
    /// The alias of the pending promotion to approve.
    pub alias: String,
    /// Free text recorded with the approval.
    #[serde(default)]
    pub comment: String,
}

/// Body of `GET /api/v1/models/{name}/aliases`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AliasList {
    /// The version each alias points at, by alias.
    pub aliases: BTreeMap<String, u64>,
}

/// Body of `GET /api/v1/models/{name}/promotions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PromotionList {
    /// The promotions, newest first.
    pub promotions: Vec<PromotionView>,
}

/// Query of `GET /api/v1/models/{name}/promotions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListPromotionsQuery {
    /// Only promotions in this state.
    pub status: Option<PromotionStatus>,
}

/// Path of `GET /api/v1/promotions/{id}`.
#[derive(Debug, Deserialize)]
struct PromotionPath {
    id: i64,
}

/// `GET /api/v1/models/{name}/aliases`: the version each alias points at.
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/aliases",
    tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "The model's aliases", body = AliasList),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No model has this name", body = ErrorBody),
    )
)]
async fn list_aliases(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ModelPath>,
) -> ApiResult<Json<AliasList>> {
    let model = state.gates().model(&path.name).await?;
    Ok(Json(AliasList {
        aliases: model.aliases,
    }))
}

/// `PUT /api/v1/models/{name}/aliases/{alias}`: requests a promotion that points the alias at
/// a version.
///
/// Every policy attached to the alias decides, in attachment order; with none attached the
/// alias moves at once. A policy that fails, traps or runs out of its limits denies.
#[utoipa::path(
    put,
    path = "/api/v1/models/{name}/aliases/{alias}",
    tag = "models",
    params(
        ("name" = String, Path, description = "Model name"),
        ("alias" = String, Path, description = "Alias, such as `production`"),
    ),
    request_body = PromotionRequestBody,
    responses(
        (status = 200, description = "Every policy allowed the promotion and the alias moved",
            body = PromotionView),
        (status = 202, description = "The promotion waits for approvals; `needed` lists them",
            body = PromotionView),
        (status = 400, description = "The alias or version is invalid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 404, description = "No such model or version", body = ErrorBody),
        (status = 409, description = "A policy denied the promotion (`promotion_denied`); \
            `details` has each denying policy's reason", body = ErrorBody),
    )
)]
async fn promote(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<AliasPath>,
    ApiJson(body): ApiJson<PromotionRequestBody>,
) -> ApiResult<Response> {
    let registry = state.registry();
    let promotion = state
        .gates()
        .request_promotion(
            &registry,
            &actor(&caller),
            &path.name,
            body.version,
            &path.alias,
        )
        .await?;
    promotion_response(promotion)
}

/// `DELETE /api/v1/models/{name}/aliases/{alias}`: removes an alias, without a promotion.
#[utoipa::path(
    delete,
    path = "/api/v1/models/{name}/aliases/{alias}",
    tag = "models",
    params(
        ("name" = String, Path, description = "Model name"),
        ("alias" = String, Path, description = "Alias, such as `production`"),
    ),
    responses(
        (status = 204, description = "The alias is removed"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below approver", body = ErrorBody),
        (status = 404, description = "No such model, or the model has no such alias",
            body = ErrorBody),
    )
)]
async fn remove_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<AliasPath>,
) -> ApiResult<StatusCode> {
    state
        .gates()
        .remove_alias(&actor(&caller), &path.name, &path.alias)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/models/{name}/versions/{version}/approvals`: approves the pending promotion
/// of a version to an alias, then lets the alias's policies decide again.
///
/// Neither the requester of the promotion nor the author of the run may approve it, and each
/// approver counts once. In local mode every request acts as `local`, the requester and
/// author of everything, so approval rules can only be met on a server with tokens.
#[utoipa::path(
    post,
    path = "/api/v1/models/{name}/versions/{version}/approvals",
    tag = "models",
    params(
        ("name" = String, Path, description = "Model name"),
        ("version" = u64, Path, description = "Version number, from 1"),
    ),
    request_body = ApprovalBody,
    responses(
        (status = 200, description = "The approval completed the promotion and the alias moved",
            body = PromotionView),
        (status = 202, description = "The approval is recorded and the promotion still waits",
            body = PromotionView),
        (status = 400, description = "The alias, comment or version is invalid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below approver, or the approver \
            requested the promotion or ran the run (`self_approval`)", body = ErrorBody),
        (status = 404, description = "No such model or version, or no pending promotion of \
            the version to the alias (`no_pending_promotion`)", body = ErrorBody),
        (status = 409, description = "The approver already approved (`duplicate_approval`), or \
            a policy denied the promotion (`promotion_denied`)", body = ErrorBody),
    )
)]
async fn approve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<VersionPath>,
    ApiJson(body): ApiJson<ApprovalBody>,
) -> ApiResult<Response> {
    validate_text("alias", &body.alias)?;
    validate_text("comment", &body.comment)?;
    let registry = state.registry();
    let promotion = state
        .gates()
        .approve(
            &registry,
            &actor(&caller),
            &path.name,
            path.version,
            &body.alias,
            &body.comment,
        )
        .await?;
    promotion_response(promotion)
}

/// Returns 200 for a completed promotion, 202 for a pending one and 409 `promotion_denied`
/// for a denied one, with each denying policy's reason as a detail.
fn promotion_response(promotion: PromotionView) -> ApiResult<Response> {
    match promotion.status {
        PromotionStatus::Completed => Ok((StatusCode::OK, Json(promotion)).into_response()),
        PromotionStatus::Pending => Ok((StatusCode::ACCEPTED, Json(promotion)).into_response()),
        PromotionStatus::Denied => Err(denied(&promotion)),
        PromotionStatus::Superseded => Err(ApiError::conflict(format!(
            "promotion {} of {} version {} to `{}` was superseded by a newer request for the \
             same alias; GET /api/v1/models/{}/promotions lists them",
            promotion.id, promotion.model, promotion.version, promotion.alias, promotion.model
        ))),
    }
}

/// Builds the 409 of a denied promotion: the message joins the reasons, and each denying
/// policy is one detail, named by plugin and digest.
fn denied(promotion: &PromotionView) -> ApiError {
    let details: Vec<FieldProblem> = promotion
        .decisions
        .iter()
        .filter(|decision| decision.decision == crate::gates::DecisionKind::Deny)
        .map(|decision| FieldProblem {
            field: format!("policy {} (sha256 {})", decision.plugin, decision.digest),
            problem: decision.reason.clone(),
        })
        .collect();
    let reasons: Vec<String> = details
        .iter()
        .map(|detail| format!("{}: {}", detail.field, detail.problem))
        .collect();
    let summary = if reasons.is_empty() {
        promotion.reason.clone().unwrap_or_default()
    } else {
        reasons.join("; ")
    };
    let mut error = ApiError::new(
        ErrorCode::PromotionDenied,
        format!(
            "promotion {} of {} version {} to `{}` was denied: {summary}",
            promotion.id, promotion.model, promotion.version, promotion.alias
        ),
    );
    error.details = details;
    error
}

/// `GET /api/v1/models/{name}/promotions`: the promotions of a model, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/promotions",
    tag = "models",
    params(("name" = String, Path, description = "Model name"), ListPromotionsQuery),
    responses(
        (status = 200, description = "The promotions, newest first", body = PromotionList),
        (status = 400, description = "The status is not a promotion state", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No model has this name", body = ErrorBody),
    )
)]
async fn list_promotions(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ModelPath>,
    ApiQuery(query): ApiQuery<ListPromotionsQuery>,
) -> ApiResult<Json<PromotionList>> {
    let promotions = state.gates().promotions(&path.name, query.status).await?;
    Ok(Json(PromotionList { promotions }))
}

/// `GET /api/v1/promotions/{id}`: one promotion with its approvals.
#[utoipa::path(
    get,
    path = "/api/v1/promotions/{id}",
    tag = "models",
    params(("id" = i64, Path, description = "Promotion id")),
    responses(
        (status = 200, description = "The promotion", body = PromotionView),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No promotion has this id", body = ErrorBody),
    )
)]
async fn get_promotion(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<PromotionPath>,
) -> ApiResult<Json<PromotionView>> {
    Ok(Json(state.gates().promotion(path.id).await?))
}
