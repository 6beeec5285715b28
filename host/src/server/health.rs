//! Liveness and readiness checks.

use super::error::{ApiError, ErrorBody, ErrorCode};
use super::state::AppState;
use axum::Json;
use axum::extract::State;
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of a successful health check.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthStatus {
    /// Always `ok`.
    pub status: String,
}

fn ok() -> Json<HealthStatus> {
    Json(HealthStatus {
        status: "ok".to_owned(),
    })
}

/// `GET /healthz`: the process is up and serving requests.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The server is alive", body = HealthStatus))
)]
pub async fn healthz() -> Json<HealthStatus> {
    ok()
}

/// `GET /readyz`: reports whether the server can take work, which needs a server that is not
/// stopping and a database that responds.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "The server is ready", body = HealthStatus),
        (status = 503, description = "Stopping, or the database does not respond", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<HealthStatus>, ApiError> {
    if state.is_stopping() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "the server is shutting down; send requests to another instance",
        ));
    }
    let ping = state
        .store()
        .connection()
        .execute_unprepared("SELECT 1")
        .await;
    match ping {
        Ok(_) => Ok(ok()),
        Err(error) => {
            tracing::warn!(cause = %error, "readiness check failed: database does not respond");
            Err(ApiError::new(
                ErrorCode::Unavailable,
                "the database does not answer; check that it is running and reachable",
            ))
        }
    }
}
