//! Routes of the tokens API: list, create and revoke bearer tokens. Every route needs the admin
//! role.
//!
//! A token is returned once, when it is created; the store keeps only its SHA-256 hash, so the
//! listing shows names, roles and times.

use crate::server::auth::AccessMode;
use crate::server::error::{ApiError, ApiResult, ErrorBody};
use crate::server::extract::{ApiJson, ApiPath};
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use crate::server::{Caller, Role};
use crate::store::StoreError;
use crate::store::entity::api_token;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Maximum length of a token name, in characters. Names appear in every log line about a request.
const MAX_NAME_CHARS: usize = 64;

/// Builds the router of the tokens routes.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(list_tokens, create_token))
        .routes(documented!(revoke_token))
}

/// A token as listed: never the token itself nor its hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Unique name, shown in logs in place of the token.
    pub name: String,
    /// Role that decides which routes the token may call.
    pub role: Role,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Revocation time in milliseconds since the Unix epoch; `null` while the token is valid.
    pub revoked_at: Option<i64>,
}

/// Body of `GET /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// Every token, valid and revoked, by name.
    pub items: Vec<TokenView>,
}

/// Body of `POST /api/v1/tokens`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Unique name: 1 to 64 ASCII letters, digits, `.`, `_`, `@` or `-`, starting with a
    /// letter or digit.
    #[schema(
        pattern = "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$",
        min_length = 1,
        max_length = 64
    )]
    pub name: String,
    /// Role that decides which routes the token may call.
    pub role: Role,
}

/// A token just created: the only response that contains the token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// Unique name.
    pub name: String,
    /// Role that decides which routes the token may call.
    pub role: Role,
    /// Creation time, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The bearer token. It is not stored and cannot be shown again.
    pub token: String,
}

/// Path of one token.
#[derive(Debug, Deserialize)]
struct TokenPath {
    name: String,
}

/// `GET /api/v1/tokens`: every token, valid and revoked.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses(
        (status = 200, description = "Every token by name, without the tokens themselves",
            body = TokenList),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below admin", body = ErrorBody),
    )
)]
async fn list_tokens(State(state): State<AppState>) -> ApiResult<Json<TokenList>> {
    let rows = state.store().list_tokens().await?;
    let items = rows.into_iter().map(view).collect::<ApiResult<_>>()?;
    Ok(Json(TokenList { items }))
}

/// `POST /api/v1/tokens`: creates a token and returns it once.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = NewToken,
    responses(
        (status = 201, description = "The token, shown this once", body = CreatedToken),
        (status = 400, description = "The name or role is not valid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below admin", body = ErrorBody),
        (status = 409, description = "A token, valid or revoked, already has this name",
            body = ErrorBody),
        (status = 413, description = "The body is larger than the server's limit",
            body = ErrorBody),
        (status = 415, description = "The body is not JSON", body = ErrorBody),
    )
)]
async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    validate_name(&request.name)?;
    let (row, token) = state
        .store()
        .create_token(&request.name, request.role.as_str())
        .await?;
    tracing::info!(token_name = %row.name, role = %row.role, created_by = %caller.name,
        "api token created over the api");
    if state.auth().mode() == AccessMode::Local {
        tracing::warn!(token_name = %row.name,
            "this server runs in local mode and accepts tokens only after a restart");
    }
    let created = CreatedToken {
        name: row.name,
        role: request.role,
        created_at: row.created_at,
        token,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// `DELETE /api/v1/tokens/{name}`: revokes a token at once. Revoking a revoked token returns
/// it unchanged.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{name}",
    tag = "tokens",
    params(("name" = String, Path, description = "Name of the token")),
    responses(
        (status = 200, description = "The token, now revoked", body = TokenView),
        (status = 400, description = "The path is not valid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below admin", body = ErrorBody),
        (status = 404, description = "No token has this name", body = ErrorBody),
    )
)]
async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(path): ApiPath<TokenPath>,
) -> ApiResult<Json<TokenView>> {
    let store = state.store();
    match store.revoke_token(&path.name).await {
        Ok(()) | Err(StoreError::TokenNotFound(_)) => {}
        Err(error) => return Err(error.into()),
    }
    state.auth().forget_cached_tokens();
    let Some(row) = store.find_token_by_name(&path.name).await? else {
        return Err(StoreError::TokenNotFound(path.name).into());
    };
    tracing::info!(token_name = %row.name, revoked_by = %caller.name, "api token revoked over the api");
    Ok(Json(view(row)?))
}

/// Rejects names that break the pattern documented on [`NewToken::name`]. Names appear in log
/// lines and URL paths, so they are kept to characters that need no escaping in either. The
/// CLI accepts any non-empty name.
fn validate_name(name: &str) -> ApiResult<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if first_ok && rest_ok && name.len() <= MAX_NAME_CHARS {
        return Ok(());
    }
    Err(ApiError::invalid_field(
        "name",
        format!(
            "`{}` is not a valid token name: use 1 to {MAX_NAME_CHARS} ASCII letters, digits, \
             `.`, `_`, `@` or `-`, starting with a letter or digit, such as ci or alice",
            name.escape_default()
        ),
    ))
}

fn view(row: api_token::Model) -> ApiResult<TokenView> {
    let role = row.role.parse::<Role>().map_err(ApiError::internal)?;
    Ok(TokenView {
        name: row.name,
        role,
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema as _;

    #[test]
    fn name_check_matches_documented_pattern() {
        let schema = serde_json::to_value(NewToken::schema()).unwrap();
        let name_schema = &schema["properties"]["name"];
        let validator = jsonschema::validator_for(name_schema).unwrap();
        let long = "a".repeat(MAX_NAME_CHARS);
        let too_long = "a".repeat(MAX_NAME_CHARS + 1);
        let names = [
            "ci",
            "alice@example.org",
            "build-7",
            "a.b_c",
            "9lives",
            &long,
            "",
            " ci",
            "ci ",
            "-ci",
            "a b",
            "a\nb",
            "a/b",
            "é",
            &too_long,
        ];

        for name in names {
            let documented = validator.is_valid(&serde_json::json!(name));
            let checked = validate_name(name).is_ok();
            assert_eq!(documented, checked, "{name:?}");
        }
        assert!(validate_name("ci").is_ok());
        assert!(validate_name("a b").is_err());
    }
}
