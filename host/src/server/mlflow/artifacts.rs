//! The artifact proxy (`/api/2.0/mlflow-artifacts/artifacts`) and the runs' artifact listing
//! (`/api/2.0/mlflow/artifacts/list`).
//!
//! A run's artifact URI is `mlflow-artifacts:/<experiment_id>/<run_id>/artifacts`, which the
//! client turns into proxy paths `<experiment_id>/<run_id>/artifacts/<path>`. An uploaded file
//! is stored in the content-addressed artifact store and linked to the run as a run-level
//! output named by its relative path, so it shows with the run's other artifacts. A logged
//! model's artifact URI is `mlflow-artifacts:/<experiment_id>/models/<model_id>/artifacts`,
//! and its files are linked to the model the same way. Uploads stream to disk, so their size
//! is not bound by the limit for bodies read whole.

use super::error::{MlflowError, MlflowResult};
use super::experiments::required;
use super::request::MlflowRequest;
use super::runs::{LoadedRun, load};
use crate::server::api::artifacts::READ_CHUNK_BYTES;
use crate::server::names::validate_artifact_name;
use crate::server::state::AppState;
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write as _;
use tokio_util::io::ReaderStream;

/// Media type recorded when an upload has no `Content-Type`.
const DEFAULT_MEDIA_TYPE: &str = "application/octet-stream";

/// Longest accepted media type, in bytes.
const MAX_MEDIA_TYPE_BYTES: usize = 255;

/// Returns the artifact proxy's routes.
pub(super) fn router() -> Router<AppState> {
    let files = put(upload)
        .get(download)
        .fallback(super::endpoint_not_found);
    Router::new()
        .route(
            "/api/2.0/mlflow-artifacts/artifacts/{*path}",
            super::unlimited_route(files),
        )
        .route(
            "/api/2.0/mlflow-artifacts/artifacts",
            get(list_proxy).fallback(super::endpoint_not_found),
        )
}

#[derive(Debug, Deserialize)]
pub(super) struct ProxyList {
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RunList {
    run_id: Option<String>,
    run_uuid: Option<String>,
    path: Option<String>,
}

/// The record whose artifact root a proxy path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// A run, by id.
    Run(String),
    /// A logged model, by id.
    Model(String),
}

/// A proxy path split into its owner and the path inside the owner's artifacts.
#[derive(Debug)]
struct ProxyPath {
    owner: Owner,
    relative: String,
}

/// A file under an artifact root.
pub(super) struct StoredFile {
    /// Path under the root.
    pub(super) path: String,
    /// Size in bytes.
    pub(super) size: i64,
    /// SHA-256 of the content.
    pub(super) digest: String,
    /// Media type recorded at upload.
    pub(super) media_type: String,
}

/// Splits `<experiment_id>/<run_id>/artifacts[/<path>]` or
/// `<experiment_id>/models/<model_id>/artifacts[/<path>]`. Run ids are UUIDs, so a second
/// segment `models` always names a logged model.
fn parse_proxy_path(path: &str) -> MlflowResult<ProxyPath> {
    let trimmed = path.trim_matches('/');
    let (experiment, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let (owner, rest) = match rest.split_once('/') {
        Some(("models", model_rest)) => {
            let (model_id, rest) = model_rest.split_once('/').unwrap_or((model_rest, ""));
            (Owner::Model(model_id.to_owned()), rest)
        }
        Some((run_id, rest)) => (Owner::Run(run_id.to_owned()), rest),
        None => (Owner::Run(rest.to_owned()), ""),
    };
    let (root, relative) = rest.split_once('/').unwrap_or((rest, ""));
    let named = match &owner {
        Owner::Run(id) | Owner::Model(id) => !id.is_empty(),
    };
    if experiment.is_empty() || !named || root != "artifacts" {
        return Err(MlflowError::invalid(format!(
            "artifact path '{path}' is not of the form <experiment_id>/<run_id>/artifacts/<path> \
             or <experiment_id>/models/<model_id>/artifacts/<path>"
        )));
    }
    Ok(ProxyPath {
        owner,
        relative: relative.trim_end_matches('/').to_owned(),
    })
}

/// Checks that the owner exists and lists its files by path.
async fn files_of(state: &AppState, owner: &Owner) -> MlflowResult<Vec<StoredFile>> {
    match owner {
        Owner::Run(run_id) => {
            load(state, run_id).await?;
            run_files(state, run_id).await
        }
        Owner::Model(model_id) => {
            super::logged_models::load_model(state, model_id).await?;
            super::logged_models::model_files(state, model_id).await
        }
    }
}

/// Lists the MLflow artifacts of a run by path.
async fn run_files(state: &AppState, run_id: &str) -> MlflowResult<Vec<StoredFile>> {
    let artifacts = state.store().mlflow_artifacts(run_id).await?;
    Ok(artifacts
        .into_iter()
        .map(|item| StoredFile {
            path: item.link.name,
            size: item.size,
            digest: item.link.digest,
            media_type: item.media_type,
        })
        .collect())
}

/// `PUT /api/2.0/mlflow-artifacts/artifacts/<path>`: stores the body as the artifact at
/// `<path>`, replacing an earlier upload to the same path.
async fn upload(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> MlflowResult<Json<Value>> {
    let target = parse_proxy_path(&path)?;
    if target.relative.is_empty() {
        return Err(MlflowError::invalid(
            "the artifact path names an artifact root; add a file name",
        ));
    }
    validate_artifact_name("path", &target.relative).map_err(MlflowError::from)?;
    let media_type = media_type_of(&headers)?;
    match &target.owner {
        Owner::Run(run_id) => load(&state, run_id).await.map(drop)?,
        Owner::Model(model_id) => super::logged_models::load_model(&state, model_id)
            .await
            .map(drop)?,
    }

    let (digest, size) = store_body(&state, body).await?;
    let store = state.store();
    store.record_artifact(&digest, size, &media_type).await?;
    match &target.owner {
        Owner::Run(run_id) => {
            store
                .mlflow_put_artifact(run_id, &target.relative, &digest)
                .await?;
            tracing::info!(run_id = %run_id, path = %target.relative, %digest, size, "mlflow artifact stored");
        }
        Owner::Model(model_id) => {
            super::logged_models::put_model_file(&state, model_id, &target.relative, &digest)
                .await?;
            tracing::info!(model_id = %model_id, path = %target.relative, %digest, size, "mlflow model artifact stored");
        }
    }
    Ok(Json(json!({})))
}

/// Streams a request body into the artifact store and returns its digest and size.
async fn store_body(state: &AppState, body: Body) -> MlflowResult<(String, u64)> {
    let mut writer = state.artifacts().create_writer()?;
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk: Bytes = chunk.map_err(|error| {
            MlflowError::invalid(format!(
                "the upload was interrupted: {error}; send it again"
            ))
        })?;
        writer = tokio::task::spawn_blocking(move || writer.write_all(&chunk).map(|()| writer))
            .await
            .map_err(crate::server::error::ApiError::internal)?
            .map_err(crate::server::error::ApiError::internal)?;
    }
    let committed = tokio::task::spawn_blocking(move || writer.commit())
        .await
        .map_err(crate::server::error::ApiError::internal)?;
    Ok(committed?)
}

/// `GET /api/2.0/mlflow-artifacts/artifacts/<path>`: the content of one artifact.
async fn download(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> MlflowResult<Response> {
    let target = parse_proxy_path(&path)?;
    let files = files_of(&state, &target.owner).await?;
    let found = files
        .into_iter()
        .find(|item| item.path == target.relative)
        .ok_or_else(|| {
            let owner = match &target.owner {
                Owner::Run(id) => format!("run '{id}'"),
                Owner::Model(id) => format!("logged model '{id}'"),
            };
            MlflowError::not_found(format!("no artifact at '{}' in {owner}", target.relative))
        })?;
    let file_path = state.artifacts().path_of(&found.digest)?;
    let file = tokio::fs::File::open(&file_path).await.map_err(|error| {
        crate::server::error::ApiError::internal(format!(
            "cannot open artifact {}: {error}",
            file_path.display()
        ))
    })?;
    let chunks = ReaderStream::with_capacity(file, READ_CHUNK_BYTES);
    let mut response = Body::from_stream(chunks).into_response();
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, found.size.into());
    if let Ok(value) = found.media_type.parse() {
        headers.insert(header::CONTENT_TYPE, value);
    }
    Ok(response)
}

/// `GET /api/2.0/mlflow-artifacts/artifacts?path=...`: the entries directly under a
/// directory, named relative to it. A file or a missing path lists nothing.
async fn list_proxy(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<ProxyList>,
) -> MlflowResult<Json<Value>> {
    let path = request.path.unwrap_or_default();
    let target = parse_proxy_path(&path)?;
    let stored = files_of(&state, &target.owner).await?;
    let files: Vec<Value> = children(&stored, &target.relative)
        .into_iter()
        .map(|(name, entry)| entry_json(&name, entry))
        .collect();
    Ok(Json(json!({ "files": files })))
}

/// `GET /api/2.0/mlflow/artifacts/list`: the entries directly under `path` of a run's
/// artifacts, named relative to the artifact root.
pub(super) async fn list_run_artifacts(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<RunList>,
) -> MlflowResult<Json<Value>> {
    let run_id = required(request.run_id.or(request.run_uuid), "run_id")?;
    let loaded: LoadedRun = load(&state, &run_id).await?;
    let prefix = request
        .path
        .unwrap_or_default()
        .trim_matches('/')
        .to_owned();
    let stored = run_files(&state, &run_id).await?;
    let files: Vec<Value> = children(&stored, &prefix)
        .into_iter()
        .map(|(name, entry)| {
            let full = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            entry_json(&full, entry)
        })
        .collect();
    Ok(Json(json!({
        "root_uri": loaded.head().artifact_uri(),
        "files": files,
    })))
}

/// Returns the entries directly under directory `prefix`: files with their size, and
/// directories as `None`.
pub(super) fn children(files: &[StoredFile], prefix: &str) -> BTreeMap<String, Option<i64>> {
    let mut entries = BTreeMap::new();
    for file in files {
        let name = file.path.as_str();
        let rest = if prefix.is_empty() {
            Some(name)
        } else {
            name.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
        };
        let Some(rest) = rest else {
            continue;
        };
        match rest.split_once('/') {
            Some((directory, _)) => {
                entries.insert(directory.to_owned(), None);
            }
            None => {
                entries.insert(rest.to_owned(), Some(file.size));
            }
        }
    }
    entries
}

pub(super) fn entry_json(path: &str, size: Option<i64>) -> Value {
    match size {
        Some(size) => json!({ "path": path, "is_dir": false, "file_size": size }),
        None => json!({ "path": path, "is_dir": true }),
    }
}

fn media_type_of(headers: &HeaderMap) -> MlflowResult<String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(DEFAULT_MEDIA_TYPE.to_owned());
    };
    let text = value
        .to_str()
        .map_err(|_| MlflowError::invalid("the Content-Type header is not ASCII text"))?;
    if text.len() > MAX_MEDIA_TYPE_BYTES {
        return Err(MlflowError::invalid(format!(
            "the Content-Type header is longer than {MAX_MEDIA_TYPE_BYTES} bytes"
        )));
    }
    Ok(text.to_owned())
}
