//! Routes of a run's validations: the checks metric validators made on it, after its pipeline
//! succeeded, when it became a model version, or on request.

use crate::gates::{Actor, Trigger, ValidationRecord, ValidatorSpec};
use crate::runtime::PluginKind;
use crate::server::api::runs::check_run_id;
use crate::server::auth::Caller;
use crate::server::error::{ApiResult, ErrorBody};
use crate::server::extract::{ApiJson, ApiPath};
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Returns the routes of run validations.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new().routes(documented!(list_validations, validate_run))
}

/// Path of the validation routes.
#[derive(Debug, Deserialize)]
struct RunPath {
    run_id: String,
}

/// Body of `GET /api/v1/runs/{run_id}/validations`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationList {
    /// Every validation of the run, oldest first.
    pub validations: Vec<ValidationRecord>,
}

/// Body of `POST /api/v1/runs/{run_id}/validations`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationResult {
    /// One validation per validator of the request, in the order given.
    pub validations: Vec<ValidationRecord>,
    /// Failed blocking checks, counting a validator that could not judge the run as one.
    pub blocking_failures: usize,
    /// Failed warning checks.
    pub warnings: usize,
}

/// `GET /api/v1/runs/{run_id}/validations`: the validations recorded for a run.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run_id}/validations",
    tag = "runs",
    params(("run_id" = String, Path, description = "Run id, a UUID")),
    responses(
        (status = 200, description = "The run's validations, oldest first", body = ValidationList),
        (status = 400, description = "The run id is not a UUID", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
    )
)]
async fn list_validations(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<RunPath>,
) -> ApiResult<Json<ValidationList>> {
    check_run_id(&path.run_id)?;
    let validations = state.gates().run_validations(&path.run_id).await?;
    Ok(Json(ValidationList { validations }))
}

/// `POST /api/v1/runs/{run_id}/validations`: runs metric validators on a recorded run, such
/// as an external one, and records their checks with trigger `manual`.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run_id}/validations",
    tag = "runs",
    params(("run_id" = String, Path, description = "Run id, a UUID")),
    request_body = Vec<ValidatorSpec>,
    responses(
        (status = 201, description = "The validations made, with the failures counted",
            body = ValidationResult),
        (status = 400, description = "The run id is not a UUID, or an entry names a missing \
            plugin, one that is not a metric-validator, or a config its schema rejects",
            body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below editor", body = ErrorBody),
        (status = 404, description = "No run has this id", body = ErrorBody),
    )
)]
async fn validate_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<RunPath>,
    ApiJson(specs): ApiJson<Vec<ValidatorSpec>>,
) -> ApiResult<(StatusCode, Json<ValidationResult>)> {
    check_run_id(&path.run_id)?;
    let registry = state.registry();
    let gates = state.gates();
    gates.check_specs(&registry, PluginKind::MetricValidator, &specs)?;
    let actor = Actor {
        name: caller.name.clone(),
        role: caller.role,
    };
    let outcome = gates
        .validate_run(
            &registry,
            &actor,
            &path.run_id,
            &specs,
            Trigger::Manual,
            None,
        )
        .await?;
    let result = ValidationResult {
        validations: outcome.records,
        blocking_failures: outcome.blocking_failures,
        warnings: outcome.warnings,
    };
    Ok((StatusCode::CREATED, Json(result)))
}
