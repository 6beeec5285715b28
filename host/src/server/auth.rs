//! Access control: bearer tokens with roles, checked per route by one middleware.
//!
//! A server bound to a loopback address with no tokens created runs in local single-user mode,
//! where every request acts as the local user with every role. Once a token exists, or on any
//! other address, every request except the health checks, the OpenAPI document and the web
//! UI's pages and files needs `Authorization: Bearer TOKEN`, and the route decides which role
//! is enough.

use super::error::{ApiError, ErrorCode};
use super::state::AppState;
use crate::store::Store;
use crate::store::tokens::hash_token;
use axum::extract::{Request, State};
use axum::http::{Method, header::AUTHORIZATION};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use std::time::{Duration, Instant};

/// How long a token found in the database is trusted before it is looked up again, so a token
/// revoked from the command line stops working within this time without a lookup per request.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);

pub use crate::gates::Role;

/// Who made a request, available to handlers as an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Token name, or `local` in local mode.
    pub name: String,
    /// The token's role.
    pub role: Role,
}

/// Whether requests need tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMode {
    /// Loopback address and no tokens: every request acts as the local user.
    Local,
    /// Every protected request needs a valid bearer token.
    Tokens,
}

/// Token checks with a short-lived cache of valid tokens.
#[derive(Debug)]
pub struct Auth {
    mode: AccessMode,
    cache: DashMap<String, (Caller, Instant)>,
}

impl Auth {
    /// Access control in `mode`.
    pub fn new(mode: AccessMode) -> Self {
        Self {
            mode,
            cache: DashMap::new(),
        }
    }

    /// The mode the server runs in.
    pub fn mode(&self) -> AccessMode {
        self.mode
    }

    /// Finds the caller a bearer token belongs to, or `None` if it is not valid.
    async fn caller_for(&self, store: &Store, token: &str) -> Result<Option<Caller>, ApiError> {
        let hash = hash_token(token);
        if let Some(entry) = self.cache.get(&hash)
            && entry.1.elapsed() < TOKEN_CACHE_TTL
        {
            return Ok(Some(entry.0.clone()));
        }
        let Some(row) = store.find_token_by_hash(&hash).await? else {
            self.cache.remove(&hash);
            return Ok(None);
        };
        let role = row.role.parse::<Role>().map_err(ApiError::internal)?;
        let caller = Caller {
            name: row.name,
            role,
        };
        self.cache.insert(hash, (caller.clone(), Instant::now()));
        Ok(Some(caller))
    }

    /// Forgets cached tokens, so a revocation takes effect at once.
    pub fn forget_cached_tokens(&self) {
        self.cache.clear();
    }
}

/// The role a request needs, or `None` for public routes.
///
/// Reads need `viewer`; writes need `editor`; approvals need `approver`; plugin uploads and
/// removals and everything about tokens need `admin`. Reports of external steps carry the
/// step's own token, which their handler checks, so they pass here.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    if matches!(path, "/healthz" | "/readyz" | "/api/v1/openapi.json")
        || is_external_step_report(path)
        || super::ui::is_ui_path(path)
    {
        return None;
    }
    if super::mlflow::is_mlflow_path(path) {
        let read = super::mlflow::is_mlflow_read(method, path);
        return Some(if read { Role::Viewer } else { Role::Editor });
    }
    let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if path.starts_with("/api/v1/tokens") || (path.starts_with("/api/v1/plugins") && !read) {
        return Some(Role::Admin);
    }
    if !read && (path.ends_with("/approve") || path.ends_with("/approvals")) {
        return Some(Role::Approver);
    }
    if let Some(role) = model_route_role(method, path) {
        return Some(role);
    }
    if read {
        Some(Role::Viewer)
    } else {
        Some(Role::Editor)
    }
}

/// Returns the role that the model registry's stricter writes need. Deleting a model and
/// attaching validators or policies need `admin`, and removing an alias needs `approver`,
/// because each bypasses or changes the promotion rules.
fn model_route_role(method: &Method, path: &str) -> Option<Role> {
    let rest = path.strip_prefix("/api/v1/models/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("DELETE", [_model]) => Some(Role::Admin),
        ("PUT", [_model, "validators"]) => Some(Role::Admin),
        ("PUT", [_model, "policies", _alias]) => Some(Role::Admin),
        ("DELETE", [_model, "aliases", _alias]) => Some(Role::Approver),
        _ => None,
    }
}

/// Whether `path` is an external step's report, authorised by the step token.
fn is_external_step_report(path: &str) -> bool {
    path.starts_with("/api/v1/external-steps/")
}

/// Middleware that authenticates the request, checks its role and stores the [`Caller`].
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let Some(needed) = required_role(request.method(), &path) else {
        return next.run(request).await;
    };
    let token = bearer_token(request.headers()).map(str::to_owned);
    let caller = match identify(&state, token.as_deref(), request.method(), &path).await {
        Ok(caller) => caller,
        Err(error) => return denial(&path, error),
    };
    if caller.role < needed {
        tracing::warn!(
            token_name = %caller.name,
            role = %caller.role,
            needed = %needed,
            method = %request.method(),
            path = %path,
            "request denied: role too low"
        );
        let error = ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "token `{}` has role {}, and {} {path} needs role {needed}; ask an admin for a \
                 token with that role",
                caller.name,
                caller.role,
                request.method()
            ),
        );
        return denial(&path, error);
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Returns the response of a rejected request: MLflow's error shape on MLflow paths, so the
/// MLflow client raises `RestException` with `UNAUTHENTICATED` or `PERMISSION_DENIED`, and
/// the native shape elsewhere.
fn denial(path: &str, error: ApiError) -> Response {
    if super::mlflow::is_mlflow_path(path) {
        super::mlflow::MlflowError::from(error).into_response()
    } else {
        error.into_response()
    }
}

/// Returns the caller of a request: the local user in local mode, else the bearer token's.
async fn identify(
    state: &AppState,
    token: Option<&str>,
    method: &Method,
    path: &str,
) -> Result<Caller, ApiError> {
    if state.auth().mode() == AccessMode::Local {
        return Ok(Caller {
            name: "local".to_owned(),
            role: Role::Admin,
        });
    }
    let Some(token) = token else {
        tracing::warn!(%method, path, "request denied: no bearer token");
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "this server needs a bearer token: send `Authorization: Bearer TOKEN`, with a token \
             from `runledger tokens create`",
        ));
    };
    match state.auth().caller_for(state.store(), token).await? {
        Some(caller) => Ok(caller),
        None => {
            tracing::warn!(%method, path, "request denied: unknown or revoked token");
            Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "the bearer token is not valid: it is unknown or was revoked; create a new one \
                 with `runledger tokens create`",
            ))
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_viewer_and_writes_need_editor() {
        assert_eq!(
            required_role(&Method::GET, "/api/v1/runs"),
            Some(Role::Viewer)
        );
        assert_eq!(
            required_role(&Method::POST, "/api/v1/runs"),
            Some(Role::Editor)
        );
    }

    #[test]
    fn plugin_uploads_and_tokens_need_admin() {
        assert_eq!(
            required_role(&Method::POST, "/api/v1/plugins"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role(&Method::GET, "/api/v1/tokens"),
            Some(Role::Admin)
        );
        assert_eq!(
            required_role(&Method::GET, "/api/v1/plugins"),
            Some(Role::Viewer)
        );
    }

    #[test]
    fn model_registry_routes_need_their_roles() {
        let cases = [
            (Method::GET, "/api/v1/models/wine", Role::Viewer),
            (Method::PATCH, "/api/v1/models/wine", Role::Editor),
            (Method::DELETE, "/api/v1/models/wine", Role::Admin),
            (
                Method::DELETE,
                "/api/v1/models/wine/tags/team",
                Role::Editor,
            ),
            (Method::PUT, "/api/v1/models/wine/validators", Role::Admin),
            (
                Method::PUT,
                "/api/v1/models/wine/policies/production",
                Role::Admin,
            ),
            (
                Method::PUT,
                "/api/v1/models/wine/aliases/production",
                Role::Editor,
            ),
            (
                Method::DELETE,
                "/api/v1/models/wine/aliases/production",
                Role::Approver,
            ),
            (
                Method::POST,
                "/api/v1/models/wine/versions/1/approvals",
                Role::Approver,
            ),
            (Method::GET, "/api/v1/models/wine/audit", Role::Viewer),
        ];
        for (method, path, role) in cases {
            assert_eq!(required_role(&method, path), Some(role), "{method} {path}");
        }
    }

    #[test]
    fn health_checks_are_public() {
        assert_eq!(required_role(&Method::GET, "/healthz"), None);
        assert_eq!(required_role(&Method::GET, "/api/v1/openapi.json"), None);
    }

    #[test]
    fn ui_pages_and_files_are_public() {
        assert_eq!(required_role(&Method::GET, "/runs"), None);
        assert_eq!(required_role(&Method::GET, "/ui/app.js"), None);
        assert_eq!(
            required_role(&Method::GET, "/api/v1/runs"),
            Some(Role::Viewer)
        );
    }

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin > Role::Approver);
        assert!(Role::Approver > Role::Editor);
        assert!(Role::Editor > Role::Viewer);
    }
}
