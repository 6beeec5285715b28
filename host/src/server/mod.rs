//! `runledger serve`: the HTTP server over the store, the artifacts and the engine.
//!
//! [`app`] builds the whole router from an [`AppState`], so tests drive it without a socket;
//! [`serve`] runs it on a listener until a shutdown signal, then finishes in-flight requests,
//! commits pending metric writes and stops the pipeline runs it executes.

mod accept;
pub mod api;
pub mod auth;
pub mod connection;
pub mod error;
pub mod extract;
pub mod filter;
pub mod health;
pub mod idempotency;
pub mod jobs;
pub mod mlflow;
pub mod names;
pub mod openapi;
pub mod openlineage;
pub mod routes;
pub mod state;
pub mod telemetry;
pub mod ui;
pub mod writer;

pub use auth::{AccessMode, Caller, Role};
pub use connection::DEFAULT_POLL_BUDGET;
pub use error::{ApiError, ApiResult, ErrorBody, ErrorCode};
pub use state::{AppState, DEFAULT_MAX_BODY_BYTES, ServerSettings};

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use connection::{Polling, PollingListener};
use routes::{ApiRouter, documented};
use std::future::Future;
use std::sync::OnceLock;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;

/// Builds the router of every route, with access control, idempotency keys, metrics, request
/// spans, the body limit, and the wait for staged metric values before reads.
pub fn app(state: AppState) -> Router {
    let router = documented_routes().into_router();
    // The MLflow and web UI routes are not among the documented routes, so they stay out of
    // the OpenAPI document.
    let router = router.merge(mlflow::router()).merge(ui::router());
    let max_body = state.settings().max_body_bytes;
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            writer::settle_staged,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::deduplicate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            telemetry::measure,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// The OpenAPI document of every route, as served at `/api/v1/openapi.json`.
pub fn openapi_document() -> &'static serde_json::Value {
    static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let document = documented_routes().document(openapi::ApiDoc::openapi());
        serde_json::to_value(document).unwrap_or_default()
    })
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
        body = serde_json::Value))
)]
async fn openapi_json() -> Json<&'static serde_json::Value> {
    Json(openapi_document())
}

fn documented_routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(health::healthz))
        .routes(documented!(health::readyz))
        .routes(documented!(telemetry::metrics))
        .routes(documented!(openapi_json))
        .merge(api::router())
}

/// A span per request with its method and path; the status and latency are logged when the
/// response is sent.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str);
    tracing::info_span!(
        "runledger.request",
        method = %request.method(),
        path = %request.uri().path(),
        route = route,
    )
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route for {method} {}; the API is described at /api/v1/openapi.json",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{method} is not allowed on {}; /api/v1/openapi.json lists the methods of each path",
            uri.path()
        ),
    )
}

/// Turns a handler panic into a 500 with the error shape; the panic is logged, not sent.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    let error = ApiError::internal(format!("handler panicked: {message}"));
    (StatusCode::INTERNAL_SERVER_ERROR, Json(error.body())).into_response()
}

/// Serves `state` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish, commits accepted metric writes and stops the runs this server executes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = state.clone();
    let signal = async move {
        shutdown.await;
        stopping.begin_stopping();
        tracing::info!("shutdown requested: finishing in-flight requests");
    };
    let polling = Polling::for_this_machine(state.settings().poll_budget);
    let listener = PollingListener::new(listener, polling);
    accept::serve_connections(listener, app(state.clone()), signal).await;
    state.writer().shutdown().await;
    state.jobs().shutdown().await;
    tracing::info!("server stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(cause = %error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(cause = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
