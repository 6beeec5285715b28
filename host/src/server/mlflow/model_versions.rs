//! Model version routes of the MLflow protocol: create, get, update, delete, search, tags and
//! the download URI.
//!
//! A version points at one artifact digest. Its `source` names a path in a run's artifacts,
//! as `runs:/<run_id>/<path>` or `mlflow-artifacts:/<experiment_id>/<run_id>/artifacts/<path>`.
//! A path naming one file registers that file. A path naming a directory registers a manifest:
//! a JSON document listing each file's relative path, digest and size, sorted by path, stored
//! as the run-level output `runledger-manifests/<path>.json` so lineage reaches it.

use super::error::{MlflowError, MlflowResult};
use super::experiments::{KeyValue, decode_offset, encode_offset, required};
use super::filter::{self, Clause, Entity, SortOrder};
use super::proto::key_values;
use super::registry::{actor, parse_orders, tag_matches};
use super::request::{MlflowRequest, lenient_i64, lenient_string, string_list};
use super::runs::load;
use crate::gates::{Trigger, ValidatorSpec, VersionView};
use crate::server::auth::Caller;
use crate::server::state::AppState;
use crate::store::{LinkedArtifact, NewEdge, NewModelVersion, Node};
use axum::Json;
use axum::extract::{Extension, State};
use axum::routing::{MethodRouter, delete, get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Page size of a version search that names none, as on an MLflow 3.x server.
const DEFAULT_VERSIONS_PER_PAGE: i64 = 10_000;

/// Largest page of a version search, as on an MLflow 3.x server.
const MAX_VERSIONS_PER_PAGE: i64 = 200_000;

/// Versions read from the store per query while collecting all of a model's.
const VERSIONS_PER_QUERY: u64 = 500;

/// Folder of the run-level outputs that hold directory manifests.
const MANIFEST_FOLDER: &str = "runledger-manifests";

/// Returns the model-version routes, relative to a prefix.
pub(super) fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/model-versions/create", post(create)),
        ("/model-versions/get", get(get_version)),
        ("/model-versions/update", patch(update)),
        ("/model-versions/delete", delete(delete_version)),
        ("/model-versions/search", get(search)),
        ("/model-versions/set-tag", post(set_tag)),
        ("/model-versions/delete-tag", delete(delete_tag)),
        ("/model-versions/get-download-uri", get(download_uri)),
    ]
}

#[derive(Debug, Deserialize)]
pub(super) struct CreateVersion {
    name: Option<String>,
    source: Option<String>,
    run_id: Option<String>,
    #[serde(default)]
    tags: Vec<KeyValue>,
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct VersionRef {
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    version: Option<String>,
    description: Option<String>,
    key: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SearchVersions {
    filter: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "string_list")]
    order_by: Vec<String>,
    page_token: Option<String>,
}

/// A version number as MLflow sends it: a decimal string.
pub(super) fn parse_version(text: &str) -> MlflowResult<u64> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|number| *number > 0)
        .ok_or_else(|| {
            MlflowError::invalid(format!(
                "invalid value '{text}' for parameter 'version': give a version number from 1"
            ))
        })
}

/// Builds MLflow's `ModelVersion` message. Versions have no stage, written as `None`.
pub(super) fn version_json(version: &VersionView) -> Value {
    json!({
        "name": version.model,
        "version": version.version.to_string(),
        "creation_timestamp": version.created_at,
        "last_updated_timestamp": version.updated_at,
        "user_id": version.created_by,
        "current_stage": "None",
        "description": version.description,
        "source": version.source,
        "run_id": version.run_id.clone().unwrap_or_default(),
        "status": version.status.to_ascii_uppercase(),
        "tags": key_values(&version.tags),
        "aliases": version.aliases,
        "run_link": "",
    })
}

fn version_response(version: &VersionView) -> Json<Value> {
    Json(json!({ "model_version": version_json(version) }))
}

/// Reads the model name and version number of a request.
fn version_of(request: &VersionRef) -> MlflowResult<(String, u64)> {
    let name = required(request.name.clone(), "name")?;
    let version = parse_version(&required(request.version.clone(), "version")?)?;
    Ok((name, version))
}

/// `POST model-versions/create`: registers the artifact that `source` names, then runs the
/// model's attached validators on the run. Failed checks do not stop the version; they show
/// in its validations and in the reasons of policies that look at them.
async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<CreateVersion>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name, "name")?;
    let source = required(request.source, "source")?;
    let (source_run, path) = parse_source(&source)?;
    if let Some(given) = request.run_id.as_deref().filter(|id| !id.is_empty())
        && given != source_run
    {
        return Err(MlflowError::invalid(format!(
            "run_id '{given}' differs from the run '{source_run}' that source '{source}' names"
        )));
    }
    state.gates().model(&name).await?;
    load(&state, &source_run).await?;
    let (artifact_name, digest) = resolve_path(&state, &source_run, &path).await?;

    let mut tags = BTreeMap::new();
    for tag in request.tags {
        tags.insert(
            required(tag.key, "tags.key")?,
            tag.value.unwrap_or_default(),
        );
    }
    let actor = actor(&caller);
    let new = NewModelVersion {
        model: name.clone(),
        run_id: Some(source_run.clone()),
        artifact_name,
        artifact_digest: digest,
        source,
        description: request.description.unwrap_or_default(),
        tags,
    };
    let created = state.store().create_model_version(&actor.name, new).await?;
    tracing::info!(model = %name, version = created.version, run_id = %source_run,
        actor = %actor.name, "mlflow model version created");

    let specs: Vec<ValidatorSpec> = state
        .store()
        .model_validators(&name)
        .await?
        .into_iter()
        .map(|attached| ValidatorSpec {
            plugin: attached.plugin,
            config: attached.config,
        })
        .collect();
    if !specs.is_empty() {
        let registry = state.registry();
        state
            .gates()
            .validate_run(
                &registry,
                &actor,
                &source_run,
                &specs,
                Trigger::ModelVersion,
                Some(created.id),
            )
            .await?;
    }
    let number = u64::try_from(created.version).unwrap_or_default();
    Ok(version_response(
        &state.gates().version(&name, number).await?,
    ))
}

/// Splits a source into its run id and the path inside the run's artifacts.
fn parse_source(source: &str) -> MlflowResult<(String, String)> {
    let unsupported = || {
        MlflowError::invalid(format!(
            "unsupported source '{source}': give runs:/<run_id>/<path> or \
             mlflow-artifacts:/<experiment_id>/<run_id>/artifacts/<path> of a run on this \
             server"
        ))
    };
    if let Some(rest) = source.strip_prefix("runs:/") {
        let rest = rest.trim_start_matches('/');
        let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
        if run_id.is_empty() {
            return Err(unsupported());
        }
        return Ok((run_id.to_owned(), path.trim_matches('/').to_owned()));
    }
    let Some(rest) = source.strip_prefix("mlflow-artifacts:/") else {
        return Err(unsupported());
    };
    let mut parts = rest.trim_start_matches('/').splitn(4, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_experiment), Some(run_id), Some("artifacts")) if !run_id.is_empty() => {
            let path = parts.next().unwrap_or("").trim_matches('/');
            Ok((run_id.to_owned(), path.to_owned()))
        }
        _ => Err(unsupported()),
    }
}

/// Finds what `path` names in a run's artifacts: a file's own name and digest, or for a
/// directory the name and digest of its manifest, which is stored first.
async fn resolve_path(
    state: &AppState,
    run_id: &str,
    path: &str,
) -> MlflowResult<(String, String)> {
    let artifacts = state.store().mlflow_artifacts(run_id).await?;
    if let Some(file) = artifacts.iter().find(|item| item.link.name == path) {
        return Ok((file.link.name.clone(), file.link.digest.clone()));
    }
    let files = directory_files(&artifacts, path);
    if files.is_empty() {
        return Err(MlflowError::not_found(format!(
            "run '{run_id}' has no artifact at '{path}'; log it first, or name a file or \
             directory that the run's artifact listing shows"
        )));
    }
    let manifest = manifest_bytes(&files)?;
    let (digest, size) = state.artifacts().put_bytes(&manifest)?;
    let store = state.store();
    store
        .record_artifact(&digest, size, "application/json")
        .await?;
    let name = manifest_name(path);
    store.mlflow_put_artifact(run_id, &name, &digest).await?;
    store
        .add_edges(&manifest_edges(run_id, &digest, &files))
        .await?;
    tracing::info!(run_id, path, %digest, files = files.len(), "directory manifest stored");
    Ok((name, digest))
}

/// Returns the files under directory `path` (the whole run when empty) with their paths
/// relative to it, sorted, leaving out earlier manifests.
fn directory_files<'a>(
    artifacts: &'a [LinkedArtifact],
    path: &str,
) -> Vec<(String, &'a LinkedArtifact)> {
    let mut files: Vec<(String, &LinkedArtifact)> = artifacts
        .iter()
        .filter(|item| !item.link.name.starts_with(&format!("{MANIFEST_FOLDER}/")))
        .filter_map(|item| {
            let relative = if path.is_empty() {
                Some(item.link.name.as_str())
            } else {
                item.link
                    .name
                    .strip_prefix(path)
                    .and_then(|rest| rest.strip_prefix('/'))
            };
            relative.map(|relative| (relative.to_owned(), item))
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

fn manifest_bytes(files: &[(String, &LinkedArtifact)]) -> MlflowResult<Vec<u8>> {
    let entries: Vec<Value> = files
        .iter()
        .map(|(relative, item)| {
            json!({ "path": relative, "digest": item.link.digest, "size": item.size })
        })
        .collect();
    serde_json::to_vec(&json!({ "files": entries }))
        .map_err(|error| crate::server::error::ApiError::internal(error).into())
}

/// Returns the lineage edges of a manifest: the run produced it, and it was made from each
/// listed file.
fn manifest_edges(run_id: &str, digest: &str, files: &[(String, &LinkedArtifact)]) -> Vec<NewEdge> {
    let manifest = Node::artifact(digest);
    let mut edges = vec![NewEdge {
        run_id: run_id.to_owned(),
        source: Node::run(run_id),
        target: manifest.clone(),
    }];
    for (_, item) in files {
        edges.push(NewEdge {
            run_id: run_id.to_owned(),
            source: Node::artifact(&item.link.digest),
            target: manifest.clone(),
        });
    }
    edges
}

fn manifest_name(path: &str) -> String {
    if path.is_empty() {
        format!("{MANIFEST_FOLDER}/root.json")
    } else {
        format!("{MANIFEST_FOLDER}/{path}.json")
    }
}

/// `GET model-versions/get`.
async fn get_version(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<VersionRef>,
) -> MlflowResult<Json<Value>> {
    let (name, version) = version_of(&request)?;
    Ok(version_response(
        &state.gates().version(&name, version).await?,
    ))
}

/// `PATCH model-versions/update`: changes the description.
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<VersionRef>,
) -> MlflowResult<Json<Value>> {
    let (name, version) = version_of(&request)?;
    let description = request.description.unwrap_or_default();
    let updated = state
        .gates()
        .update_version(&actor(&caller), &name, version, &description)
        .await?;
    Ok(version_response(&updated))
}

/// `DELETE model-versions/delete`: also removes the aliases that point at the version.
async fn delete_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<VersionRef>,
) -> MlflowResult<Json<Value>> {
    let (name, version) = version_of(&request)?;
    state
        .gates()
        .delete_version(&actor(&caller), &name, version)
        .await?;
    Ok(Json(json!({})))
}

/// `POST model-versions/set-tag`.
async fn set_tag(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<VersionRef>,
) -> MlflowResult<Json<Value>> {
    let (name, version) = version_of(&request)?;
    let key = required(request.key, "key")?;
    let value = required(request.value, "value")?;
    state
        .gates()
        .set_version_tag(&actor(&caller), &name, version, &key, &value)
        .await?;
    Ok(Json(json!({})))
}

/// `DELETE model-versions/delete-tag`.
async fn delete_tag(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<VersionRef>,
) -> MlflowResult<Json<Value>> {
    let (name, version) = version_of(&request)?;
    let key = required(request.key, "key")?;
    state
        .gates()
        .delete_version_tag(&actor(&caller), &name, version, &key)
        .await?;
    Ok(Json(json!({})))
}

/// `GET model-versions/get-download-uri`: the artifact URI of the registered path, which the
/// client downloads through the artifact proxy.
async fn download_uri(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<VersionRef>,
) -> MlflowResult<Json<Value>> {
    let (name, version) = version_of(&request)?;
    let found = state.gates().version(&name, version).await?;
    let uri = match found.source.strip_prefix("runs:/") {
        Some(_) => {
            let (run_id, path) = parse_source(&found.source)?;
            let root = load(&state, &run_id).await?.head().artifact_uri();
            if path.is_empty() {
                root
            } else {
                format!("{root}/{path}")
            }
        }
        None => found.source.clone(),
    };
    Ok(Json(json!({ "artifact_uri": uri })))
}

/// `GET model-versions/search`: filters on `name`, `run_id` and `tags.KEY`, ordered by
/// `name`, `version_number`, `creation_timestamp` or `last_updated_timestamp`.
async fn search(
    State(state): State<AppState>,
    MlflowRequest(request): MlflowRequest<SearchVersions>,
) -> MlflowResult<Json<Value>> {
    let page_size = request.max_results.unwrap_or(DEFAULT_VERSIONS_PER_PAGE);
    if !(1..=MAX_VERSIONS_PER_PAGE).contains(&page_size) {
        return Err(MlflowError::invalid(format!(
            "invalid value {page_size} for parameter 'max_results': give 1 to \
             {MAX_VERSIONS_PER_PAGE}"
        )));
    }
    let clauses = filter::parse_filter(request.filter.as_deref().unwrap_or(""))?;
    let orders = parse_orders(&request.order_by)?;
    let offset = decode_offset(request.page_token.as_deref())?;

    let mut versions = Vec::new();
    for model in candidate_models(&state, &clauses).await? {
        for version in model_versions(&state, &model).await? {
            if version_matches(&version, &clauses)? {
                versions.push(version);
            }
        }
    }
    sort_versions(&mut versions, &orders)?;

    let page_size = usize::try_from(page_size).unwrap_or(usize::MAX);
    let end = offset.saturating_add(page_size).min(versions.len());
    let page: Vec<Value> = versions
        .get(offset.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(version_json)
        .collect();
    let mut body = json!({ "model_versions": page });
    if end < versions.len() {
        body["next_page_token"] = json!(encode_offset(end));
    }
    Ok(Json(body))
}

/// Returns the models a version search looks at: the one `name = '...'` names, or all.
// NOTE: without `name = '...'` a search reads the versions of every model and filters them
// in memory.
async fn candidate_models(state: &AppState, clauses: &[Clause]) -> MlflowResult<Vec<String>> {
    let exact = clauses
        .iter()
        .find_map(|clause| match (&clause.value, clause) {
            (
                filter::Literal::Text(name),
                Clause {
                    entity: Entity::Attribute,
                    key,
                    operator,
                    ..
                },
            ) if key == "name" && *operator == filter::Operator::Eq => Some(name.clone()),
            _ => None,
        });
    if let Some(name) = exact {
        let exists = state.gates().store().get_model(&name).await?.is_some();
        return Ok(if exists { vec![name] } else { Vec::new() });
    }
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = state.gates().list_models(None, 500, token).await?;
        names.extend(page.models.into_iter().map(|model| model.name));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => return Ok(names),
        }
    }
}

async fn model_versions(state: &AppState, model: &str) -> MlflowResult<Vec<VersionView>> {
    let mut versions = Vec::new();
    let mut token = None;
    loop {
        let page = state
            .gates()
            .list_versions(model, VERSIONS_PER_QUERY, token)
            .await?;
        versions.extend(page.versions);
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => return Ok(versions),
        }
    }
}

fn version_matches(version: &VersionView, clauses: &[Clause]) -> MlflowResult<bool> {
    for clause in clauses {
        let matched = match (clause.entity, clause.key.as_str()) {
            (Entity::Attribute, "name") => filter::text_matches(&version.model, clause)?,
            (Entity::Attribute, "run_id") => {
                filter::text_matches(version.run_id.as_deref().unwrap_or(""), clause)?
            }
            (Entity::Attribute, "source_path" | "source") => {
                filter::text_matches(&version.source, clause)?
            }
            (Entity::Tag, key) => tag_matches(version.tags.get(key), clause)?,
            _ => {
                return Err(MlflowError::invalid(format!(
                    "invalid filter key '{}' for model versions: use name, run_id, \
                     source_path or tags.KEY",
                    clause.key
                )));
            }
        };
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

fn sort_versions(versions: &mut [VersionView], orders: &[SortOrder]) -> MlflowResult<()> {
    for order in orders {
        if order.entity != Entity::Attribute
            || !matches!(
                order.key.as_str(),
                "name"
                    | "version_number"
                    | "creation_timestamp"
                    | "last_updated_timestamp"
                    | "timestamp"
            )
        {
            return Err(MlflowError::invalid(format!(
                "invalid order_by key '{}' for model versions: use name, version_number, \
                 creation_timestamp or last_updated_timestamp",
                order.key
            )));
        }
    }
    versions.sort_by(|a, b| {
        let requested = filter::compare_in_order(orders, |key| match key {
            "name" => a.model.cmp(&b.model),
            "version_number" => a.version.cmp(&b.version),
            "creation_timestamp" => a.created_at.cmp(&b.created_at),
            _ => a.updated_at.cmp(&b.updated_at),
        });
        requested.then_with(|| a.model.cmp(&b.model).then(b.version.cmp(&a.version)))
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_name_a_run_and_a_path() {
        let (run, path) = parse_source("runs:/abc/model/MLmodel").unwrap();
        assert_eq!(run, "abc");
        assert_eq!(path, "model/MLmodel");

        let (run, path) = parse_source("mlflow-artifacts:/3/abc/artifacts/model").unwrap();
        assert_eq!(run, "abc");
        assert_eq!(path, "model");

        let (run, path) = parse_source("runs:/abc").unwrap();
        assert_eq!(run, "abc");
        assert_eq!(path, "");
    }

    #[test]
    fn sources_elsewhere_are_rejected() {
        assert!(parse_source("s3://bucket/model").is_err());
        assert!(parse_source("mlflow-artifacts:/3/abc/model").is_err());
        assert!(parse_source("runs:/").is_err());
    }

    #[test]
    fn version_numbers_start_at_one() {
        assert_eq!(parse_version("2").unwrap(), 2);
        assert!(parse_version("0").is_err());
        assert!(parse_version("two").is_err());
    }
}
