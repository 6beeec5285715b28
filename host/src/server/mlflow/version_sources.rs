//! The `source` of a model version created through the MLflow protocol, and the artifact it
//! resolves to.
//!
//! A source names a path in a run's artifacts, as `runs:/<run_id>/<path>` or
//! `mlflow-artifacts:/<experiment_id>/<run_id>/artifacts/<path>`, or a path in the files of an
//! MLflow 3 logged model, as `models:/<model_id>` or
//! `mlflow-artifacts:/<experiment_id>/models/<model_id>/artifacts[/<path>]`.
//!
//! A path naming one file registers that file. A path naming a directory, and a logged model
//! as a whole, register a manifest: a JSON document listing each file's relative path, digest
//! and size, sorted by path. A run directory's manifest is stored as the run-level output
//! `runledger-manifests/<path>.json`. In lineage, each listed file has an edge to the manifest,
//! and so do the run and, for a logged model, the model.

use super::error::{MlflowError, MlflowResult};
use super::logged_models::{load_model, model_files};
use crate::server::state::AppState;
use crate::store::mlflow::model_node;
use crate::store::{LinkedArtifact, NewEdge, Node};
use serde_json::{Value, json};

/// Folder of the run-level outputs that hold directory manifests.
const MANIFEST_FOLDER: &str = "runledger-manifests";

/// The run or logged model, and the path inside it, that a version's `source` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum VersionSource {
    /// A file or directory in a run's artifacts; an empty path is the whole run.
    Run {
        /// The run.
        run_id: String,
        /// Path inside the run's artifacts, without surrounding slashes.
        path: String,
    },
    /// A file or directory in a logged model's files; an empty path is the whole model.
    LoggedModel {
        /// The logged model.
        model_id: String,
        /// Path inside the model's files, without surrounding slashes.
        path: String,
    },
}

/// The artifact a source resolves to, ready for a new version.
#[derive(Debug, Clone)]
pub(super) struct ResolvedSource {
    /// The run that produced the artifact: the named run, or the logged model's source run.
    pub(super) run_id: Option<String>,
    /// Name of the artifact within its run or model.
    pub(super) artifact_name: String,
    /// SHA-256 of the file or of its manifest.
    pub(super) digest: String,
}

/// One line of a manifest: a file's path relative to the registered directory.
struct ManifestEntry {
    path: String,
    digest: String,
    size: i64,
}

/// Parses a version's source into the run or logged model and the path it names.
pub(super) fn parse_source(source: &str) -> MlflowResult<VersionSource> {
    let unsupported = || {
        MlflowError::invalid(format!(
            "unsupported source '{source}': give runs:/<run_id>/<path>, \
             mlflow-artifacts:/<experiment_id>/<run_id>/artifacts/<path>, models:/<model_id> or \
             mlflow-artifacts:/<experiment_id>/models/<model_id>/artifacts of a run or logged \
             model on this server"
        ))
    };
    if let Some(rest) = source.strip_prefix("runs:/") {
        let rest = rest.trim_start_matches('/');
        let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
        if run_id.is_empty() {
            return Err(unsupported());
        }
        return Ok(run_source(run_id, path));
    }
    if let Some(rest) = source.strip_prefix("models:/") {
        let model_id = rest.trim_matches('/');
        if model_id.is_empty() || model_id.contains(['/', '@']) {
            return Err(unsupported());
        }
        return Ok(model_source(model_id, ""));
    }
    let rest = source
        .strip_prefix("mlflow-artifacts:/")
        .ok_or_else(unsupported)?;
    parse_artifact_uri(rest.trim_start_matches('/')).ok_or_else(unsupported)
}

/// Parses the part of an `mlflow-artifacts:/` URI after the scheme: either
/// `<experiment_id>/models/<model_id>/artifacts[/<path>]` or
/// `<experiment_id>/<run_id>/artifacts[/<path>]`.
fn parse_artifact_uri(rest: &str) -> Option<VersionSource> {
    let mut parts = rest.splitn(5, '/');
    let _experiment = parts.next()?;
    let owner = parts.next().filter(|owner| !owner.is_empty())?;
    let segment = parts.next()?;
    if owner == "models" && !segment.is_empty() && parts.next() == Some("artifacts") {
        return Some(model_source(segment, parts.next().unwrap_or("")));
    }
    if segment != "artifacts" {
        return None;
    }
    let path = [parts.next(), parts.next()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/");
    Some(run_source(owner, &path))
}

fn run_source(run_id: &str, path: &str) -> VersionSource {
    VersionSource::Run {
        run_id: run_id.to_owned(),
        path: path.trim_matches('/').to_owned(),
    }
}

fn model_source(model_id: &str, path: &str) -> VersionSource {
    VersionSource::LoggedModel {
        model_id: model_id.to_owned(),
        path: path.trim_matches('/').to_owned(),
    }
}

/// Returns the logged model a source names, if it names one.
pub(super) fn source_model_id(source: &str) -> Option<String> {
    match parse_source(source) {
        Ok(VersionSource::LoggedModel { model_id, .. }) => Some(model_id),
        _ => None,
    }
}

/// Finds the artifact a run path names: a file's own name and digest, or for a directory the
/// name and digest of its manifest, which is stored first.
pub(super) async fn resolve_run_path(
    state: &AppState,
    run_id: &str,
    path: &str,
) -> MlflowResult<ResolvedSource> {
    let artifacts = state.store().mlflow_artifacts(run_id).await?;
    let resolved = |artifact_name: String, digest: String| ResolvedSource {
        run_id: Some(run_id.to_owned()),
        artifact_name,
        digest,
    };
    if let Some(file) = artifacts.iter().find(|item| item.link.name == path) {
        return Ok(resolved(file.link.name.clone(), file.link.digest.clone()));
    }

    let entries = run_directory(&artifacts, path);
    if entries.is_empty() {
        return Err(MlflowError::not_found(format!(
            "run '{run_id}' has no artifact at '{path}'; log it first, or name a file or \
             directory that the run's artifact listing shows"
        )));
    }
    let digest = store_manifest(state, &entries).await?;
    let name = manifest_name(path);
    let store = state.store();
    store.mlflow_put_artifact(run_id, &name, &digest).await?;
    store
        .add_edges(&manifest_edges(run_id, None, &digest, &entries))
        .await?;
    tracing::info!(run_id, path, %digest, files = entries.len(), "directory manifest stored");
    Ok(resolved(name, digest))
}

/// Finds the artifact a logged-model path names: one file, or the manifest of the files under
/// the path (all of the model's files when it is empty).
pub(super) async fn resolve_model_path(
    state: &AppState,
    model_id: &str,
    path: &str,
) -> MlflowResult<ResolvedSource> {
    let model = load_model(state, model_id).await?;
    let run_id = model.model.source_run_id.clone();
    let files = model_files(state, model_id).await?;
    if files.is_empty() {
        return Err(MlflowError::invalid(format!(
            "logged model '{model_id}' has no files to register; log the model's artifacts \
             first, for example with mlflow.pyfunc.log_model or \
             MlflowClient().log_model_artifacts, then register it again"
        )));
    }
    let artifact_name = |name: &str| format!("mlflow-models/{model_id}/{name}");
    if let Some(file) = files.iter().find(|file| file.path == path) {
        return Ok(ResolvedSource {
            run_id,
            artifact_name: artifact_name(path),
            digest: file.digest.clone(),
        });
    }

    let entries: Vec<ManifestEntry> = files
        .iter()
        .filter_map(|file| {
            let relative = relative_to(&file.path, path)?;
            Some(entry(relative, &file.digest, file.size))
        })
        .collect();
    if entries.is_empty() {
        return Err(MlflowError::not_found(format!(
            "logged model '{model_id}' has no file or directory at '{path}'; name a path that \
             the model's artifact listing shows"
        )));
    }
    let digest = store_manifest(state, &entries).await?;
    record_model_manifest(state, model_id, run_id.as_deref(), &digest, &entries).await?;
    Ok(ResolvedSource {
        run_id,
        artifact_name: artifact_name(&manifest_name(path)),
        digest,
    })
}

/// Records the lineage edges of a logged model's manifest under the model's source run.
async fn record_model_manifest(
    state: &AppState,
    model_id: &str,
    run_id: Option<&str>,
    digest: &str,
    entries: &[ManifestEntry],
) -> MlflowResult<()> {
    // NOTE: lineage edges belong to a run, so the manifest of a model logged without a
    // source run has no edges and lineage does not reach it.
    if let Some(run_id) = run_id {
        let edges = manifest_edges(run_id, Some(model_id), digest, entries);
        state.store().add_edges(&edges).await?;
    }
    tracing::info!(model_id, %digest, files = entries.len(), "logged model manifest stored");
    Ok(())
}

/// Returns `name` relative to directory `path`, or the whole name when `path` is empty.
fn relative_to<'a>(name: &'a str, path: &str) -> Option<&'a str> {
    if path.is_empty() {
        return Some(name);
    }
    name.strip_prefix(path)?.strip_prefix('/')
}

fn entry(path: &str, digest: &str, size: i64) -> ManifestEntry {
    ManifestEntry {
        path: path.to_owned(),
        digest: digest.to_owned(),
        size,
    }
}

/// Returns the files under directory `path` of a run, sorted by relative path, leaving out
/// earlier manifests.
fn run_directory(artifacts: &[LinkedArtifact], path: &str) -> Vec<ManifestEntry> {
    let mut entries: Vec<ManifestEntry> = artifacts
        .iter()
        .filter(|item| !item.link.name.starts_with(&format!("{MANIFEST_FOLDER}/")))
        .filter_map(|item| {
            let relative = relative_to(&item.link.name, path)?;
            Some(entry(relative, &item.link.digest, item.size))
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

/// Stores a manifest of `entries`, which are sorted by path, and returns its digest.
async fn store_manifest(state: &AppState, entries: &[ManifestEntry]) -> MlflowResult<String> {
    let lines: Vec<Value> = entries
        .iter()
        .map(|item| json!({ "path": item.path, "digest": item.digest, "size": item.size }))
        .collect();
    let bytes = serde_json::to_vec(&json!({ "files": lines }))
        .map_err(crate::server::error::ApiError::internal)?;

    let (digest, size) = state.artifacts().put_bytes(&bytes)?;
    state
        .store()
        .record_artifact(&digest, size, "application/json")
        .await?;
    Ok(digest)
}

/// Returns the lineage edges of a manifest: the run produced it, and it was made from each
/// listed file and, when given, from the logged model.
fn manifest_edges(
    run_id: &str,
    model_id: Option<&str>,
    digest: &str,
    entries: &[ManifestEntry],
) -> Vec<NewEdge> {
    let manifest = Node::artifact(digest);
    let edge = |source: Node| NewEdge {
        run_id: run_id.to_owned(),
        source,
        target: manifest.clone(),
    };
    let mut edges = vec![edge(Node::run(run_id))];
    edges.extend(model_id.map(|id| edge(model_node(id))));
    edges.extend(
        entries
            .iter()
            .map(|item| edge(Node::artifact(&item.digest))),
    );
    edges
}

fn manifest_name(path: &str) -> String {
    if path.is_empty() {
        format!("{MANIFEST_FOLDER}/root.json")
    } else {
        format!("{MANIFEST_FOLDER}/{path}.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(run_id: &str, path: &str) -> VersionSource {
        run_source(run_id, path)
    }

    fn model(model_id: &str, path: &str) -> VersionSource {
        model_source(model_id, path)
    }

    #[test]
    fn run_sources_name_a_run_and_a_path() {
        let cases = [
            ("runs:/abc/model/MLmodel", run("abc", "model/MLmodel")),
            (
                "mlflow-artifacts:/3/abc/artifacts/model",
                run("abc", "model"),
            ),
            (
                "mlflow-artifacts:/3/abc/artifacts/a/b/c",
                run("abc", "a/b/c"),
            ),
            ("runs:/abc", run("abc", "")),
        ];
        for (source, expected) in cases {
            assert_eq!(parse_source(source).unwrap(), expected, "{source}");
        }
    }

    #[test]
    fn model_sources_name_a_model_and_a_path() {
        let cases = [
            ("models:/m-1", model("m-1", "")),
            ("mlflow-artifacts:/3/models/m-1/artifacts", model("m-1", "")),
            (
                "mlflow-artifacts:/3/models/m-1/artifacts/",
                model("m-1", ""),
            ),
            (
                "mlflow-artifacts:/3/models/m-1/artifacts/a/MLmodel",
                model("m-1", "a/MLmodel"),
            ),
        ];
        for (source, expected) in cases {
            assert_eq!(parse_source(source).unwrap(), expected, "{source}");
        }
        assert_eq!(source_model_id("models:/m-1").as_deref(), Some("m-1"));
        assert_eq!(source_model_id("runs:/abc/model"), None);
    }

    #[test]
    fn sources_elsewhere_are_rejected() {
        let rejected = [
            "s3://bucket/model",
            "mlflow-artifacts:/3/abc/model",
            "mlflow-artifacts:/3/models/m-1",
            "runs:/",
            "models:/",
            "models:/name/1",
            "models:/name@champion",
        ];
        for source in rejected {
            assert!(parse_source(source).is_err(), "{source}");
        }
    }
}
