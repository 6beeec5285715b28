//! Routes of the audit log of a model and of one version: read only, oldest entry first, paged
//! by sequence number. No route changes or deletes entries, and the database refuses both.
//!
//! Entries outlive the model they name, so the log of a deleted model stays readable.

use super::page_size;
use super::path_text;
use crate::gates::AuditEntry;
use crate::server::error::{ApiResult, ErrorBody};
use crate::server::extract::{ApiPath, ApiQuery};
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Default number of audit entries per page.
const DEFAULT_AUDIT_PAGE: u64 = 100;

/// Returns the routes of the audit log.
pub(super) fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(model_audit))
        .routes(documented!(version_audit))
}

/// Path of the model's audit log.
#[derive(Debug, Deserialize)]
struct AuditPath {
    #[serde(deserialize_with = "path_text")]
    name: String,
}

/// Path of a version's audit log.
#[derive(Debug, Deserialize)]
struct VersionAuditPath {
    #[serde(deserialize_with = "path_text")]
    name: String,
    version: u64,
}

/// Query of the audit routes.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries after this sequence number: the `next_after_seq` of the previous page.
    pub after_seq: Option<i64>,
    /// Entries per page, 1 to 1000; default 100.
    pub limit: Option<u64>,
}

/// One page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The entries, oldest first.
    pub entries: Vec<AuditEntry>,
    /// The `after_seq` of the next page; `null` when this page is the last.
    pub next_after_seq: Option<i64>,
}

/// `GET /api/v1/models/{name}/audit`: what happened to a model and its versions.
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/audit",
    tag = "models",
    params(("name" = String, Path, description = "Model name"), AuditQuery),
    responses(
        (status = 200, description = "One page of entries, oldest first; empty for a name \
            that never had entries", body = AuditPage),
        (status = 400, description = "The limit is out of range", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
    )
)]
async fn model_audit(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<AuditPath>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    audit_page(&state, &path.name, None, query).await.map(Json)
}

/// `GET /api/v1/models/{name}/versions/{version}/audit`: what happened to one version.
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/versions/{version}/audit",
    tag = "models",
    params(
        ("name" = String, Path, description = "Model name"),
        ("version" = u64, Path, description = "Version number, from 1"),
        AuditQuery,
    ),
    responses(
        (status = 200, description = "One page of entries, oldest first", body = AuditPage),
        (status = 400, description = "The version or limit is invalid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
    )
)]
async fn version_audit(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<VersionAuditPath>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    audit_page(&state, &path.name, Some(path.version), query)
        .await
        .map(Json)
}

async fn audit_page(
    state: &AppState,
    model: &str,
    version: Option<u64>,
    query: AuditQuery,
) -> ApiResult<AuditPage> {
    let limit = page_size("limit", query.limit, DEFAULT_AUDIT_PAGE)?;
    let entries = state
        .gates()
        .audit(model, version, query.after_seq, limit)
        .await?;

    // A full page may have a successor; an empty next page then ends the paging.
    let full = entries.len() as u64 == limit;
    let next_after_seq = entries.last().filter(|_| full).map(|entry| entry.seq);
    Ok(AuditPage {
        entries,
        next_after_seq,
    })
}
