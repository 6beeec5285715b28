//! The MLflow tracking protocol, so the MLflow client (mlflow-skinny 3.x) logs to runledger
//! unchanged: `MLFLOW_TRACKING_URI=http://HOST:PORT`.
//!
//! It serves MLflow's REST routes under `/api/2.0/mlflow/` and, for MLflow's web UI, under
//! `/ajax-api/2.0/mlflow/`; the artifact proxy under `/api/2.0/mlflow-artifacts/`; and
//! `/api/3.0/mlflow/server-info`. Experiments are projects and runs are runledger runs, so
//! runs logged here show in `runledger runs show`, the native API and lineage. These routes
//! are not part of the native OpenAPI document.
//!
//! The model registry routes serve runledger's registry, so an alias set through MLflow is a
//! promotion that the alias's policies must allow.
//!
//! MLflow 3's logged models belong to the project of their experiment. Their files go through
//! the artifact proxy into the content-addressed artifact store, metric values logged with a
//! `model_id` are recorded for the run and for the model, and a run's link to a model it
//! produced or used is an edge of the lineage graph to or from the model's node,
//! `mlflow-models/<model_id>`.

mod artifacts;
mod error;
mod experiments;
mod filter;
mod keys;
mod logged_model_search;
mod logged_models;
mod model_versions;
mod proto;
mod registry;
mod registry_search;
mod request;
mod run_filter;
mod run_messages;
mod runs;
mod search;
mod version_sources;
mod view;

pub use error::{MlflowCode, MlflowError, MlflowResult};

use crate::server::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::{MethodRouter, any, get, post};
use serde_json::json;

/// Prefixes under which the tracking routes are served: the client's and the web UI's.
const PREFIXES: [&str; 2] = ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"];

/// Returns the router of every MLflow route. Unknown paths under the MLflow prefixes, and
/// known paths with another method, return `ENDPOINT_NOT_FOUND` in MLflow's error shape.
pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for prefix in PREFIXES {
        let routes = tracking_routes()
            .into_iter()
            .chain(logged_models::routes())
            .chain(registry::routes())
            .chain(model_versions::routes());
        for (path, route) in routes {
            router = router.route(
                &format!("{prefix}{path}"),
                route.fallback(endpoint_not_found),
            );
        }
        router = router.route(&format!("{prefix}/{{*rest}}"), any(endpoint_not_found));
    }
    router
        .merge(artifacts::router())
        .route(
            "/api/3.0/mlflow/server-info",
            get(server_info).fallback(endpoint_not_found),
        )
        .route("/api/3.0/mlflow/{*rest}", any(endpoint_not_found))
        .route("/api/2.0/mlflow-artifacts/{*rest}", any(endpoint_not_found))
}

/// Lists the tracking routes, relative to a prefix.
fn tracking_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/experiments/create", post(experiments::create)),
        ("/experiments/get", get(experiments::get)),
        ("/experiments/get-by-name", get(experiments::get_by_name)),
        ("/experiments/search", post(experiments::search)),
        ("/experiments/update", post(experiments::update)),
        ("/experiments/delete", post(experiments::delete)),
        ("/experiments/restore", post(experiments::restore)),
        (
            "/experiments/set-experiment-tag",
            post(experiments::set_tag),
        ),
        (
            "/experiments/delete-experiment-tag",
            post(experiments::delete_tag),
        ),
        ("/runs/create", post(runs::create)),
        ("/runs/get", get(runs::get)),
        ("/runs/update", post(runs::update)),
        ("/runs/delete", post(runs::delete)),
        ("/runs/restore", post(runs::restore)),
        ("/runs/log-metric", post(runs::log_metric)),
        ("/runs/log-parameter", post(runs::log_param)),
        ("/runs/log-batch", post(runs::log_batch)),
        ("/runs/set-tag", post(runs::set_tag)),
        ("/runs/delete-tag", post(runs::delete_tag)),
        ("/runs/log-inputs", post(runs::log_inputs)),
        ("/runs/search", post(search::search_runs)),
        ("/metrics/get-history", get(runs::metric_history)),
        ("/artifacts/list", get(artifacts::list_run_artifacts)),
    ]
}

/// Returns whether `path` belongs to the MLflow protocol.
pub fn is_mlflow_path(path: &str) -> bool {
    PREFIXES
        .iter()
        .chain(&["/api/2.0/mlflow-artifacts", "/api/3.0/mlflow"])
        .any(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// Returns whether an MLflow request only reads, although its method is POST: searches and
/// the latest versions of a registered model.
pub fn is_mlflow_read(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || (*method == Method::POST
            && (path.ends_with("/search")
                || path.ends_with("/registered-models/get-latest-versions")))
}

/// `GET /api/3.0/mlflow/server-info`: what the server supports. The client asks it whether
/// the artifact proxy takes multipart uploads, which this one does not.
async fn server_info() -> Json<serde_json::Value> {
    Json(json!({
        "store_type": "SqlStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false,
        "presigned_upload_model_id_supported": false,
        "features_enabled": { "gateway": false },
    }))
}

async fn endpoint_not_found(method: Method, uri: Uri) -> MlflowError {
    MlflowError::new(
        MlflowCode::EndpointNotFound,
        format!(
            "no MLflow endpoint for {method} {}; this server serves the MLflow tracking, \
             artifact, logged model and model registry routes, without traces",
            uri.path()
        ),
    )
}

/// Keeps a route that streams its body out of the limit for bodies read whole.
fn unlimited_route(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.layer(DefaultBodyLimit::disable())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::auth::{Role, required_role};

    #[test]
    fn mlflow_reads_need_viewer_and_writes_need_editor() {
        let role = |method: Method, path: &str| required_role(&method, path);
        assert_eq!(
            role(Method::GET, "/api/2.0/mlflow/runs/get"),
            Some(Role::Viewer)
        );
        assert_eq!(
            role(Method::POST, "/api/2.0/mlflow/runs/search"),
            Some(Role::Viewer)
        );
        assert_eq!(
            role(Method::POST, "/ajax-api/2.0/mlflow/experiments/search"),
            Some(Role::Viewer)
        );
        assert_eq!(
            role(Method::POST, "/api/2.0/mlflow/runs/log-batch"),
            Some(Role::Editor)
        );
        assert_eq!(
            role(
                Method::PUT,
                "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/a.txt"
            ),
            Some(Role::Editor)
        );
    }

    #[test]
    fn mlflow_paths_need_a_whole_prefix() {
        assert!(is_mlflow_path("/api/2.0/mlflow/runs/get"));
        assert!(is_mlflow_path("/api/3.0/mlflow/server-info"));
        assert!(!is_mlflow_path("/api/2.0/mlflowx/runs/get"));
        assert!(!is_mlflow_path("/api/v1/runs"));
    }
}
