//! `GET /api/v1/whoami`: the caller's name and role, which the web UI shows and uses to hide
//! actions the role cannot take.

use crate::server::auth::{AccessMode, Caller, Role};
use crate::server::error::ErrorBody;
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

/// Returns the whoami route with its OpenAPI description.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new().routes(documented!(whoami))
}

/// Body of `GET /api/v1/whoami`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// Token name, or `local` when the server runs without tokens.
    pub name: String,
    /// Role of the token; `admin` without tokens.
    pub role: Role,
    /// `local` when every request acts as the local user, `tokens` when requests need a
    /// bearer token.
    #[schema(example = "tokens")]
    pub access_mode: String,
}

/// `GET /api/v1/whoami`: the caller's name and role.
#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    tag = "tokens",
    responses(
        (status = 200, description = "The caller", body = WhoAmI),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
    )
)]
async fn whoami(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<WhoAmI> {
    let access_mode = match state.auth().mode() {
        AccessMode::Local => "local",
        AccessMode::Tokens => "tokens",
    };
    Json(WhoAmI {
        name: caller.name,
        role: caller.role,
        access_mode: access_mode.to_owned(),
    })
}
