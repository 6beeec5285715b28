//! Model version routes of the MLflow protocol: create, get, update, delete, tags and the
//! download URI. Searches are in `registry_search`.
//!
//! Versions are created through the gates layer, as native versions are, so the model's
//! attached validators run on the version's run and audit entries name the caller.
//!
//! Model version stages (`transition-stage`, deprecated since MLflow 2.9) are rejected with
//! `INVALID_PARAMETER_VALUE`: a stage such as `Production` would be a second promotion path
//! that no policy gates, so the message names the alias call to use instead. Versions report
//! the stage `None`, and `get-latest-versions` finds versions only for that stage.
//!
//! A version points at one artifact digest: a file in a run's artifacts or a logged model's
//! files, or a manifest of a directory of them. `version_sources` parses and resolves sources.

use super::error::{MlflowError, MlflowResult};
use super::experiments::{KeyValue, required};
use super::proto::key_values;
use super::registry::actor;
use super::request::{MlflowRequest, lenient_string};
use super::runs::load;
use super::version_sources::{
    ResolvedSource, VersionSource, parse_source, resolve_model_path, resolve_run_path,
    source_model_id,
};
use crate::gates::VersionView;
use crate::server::auth::Caller;
use crate::server::state::AppState;
use crate::store::NewModelVersion;
use axum::Json;
use axum::extract::{Extension, State};
use axum::routing::{MethodRouter, delete, get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Returns the model-version routes, relative to a prefix.
pub(super) fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/model-versions/create", post(create)),
        ("/model-versions/get", get(get_version)),
        ("/model-versions/update", patch(update)),
        ("/model-versions/delete", delete(delete_version)),
        (
            "/model-versions/search",
            get(super::registry_search::search_versions),
        ),
        ("/model-versions/set-tag", post(set_tag)),
        ("/model-versions/delete-tag", delete(delete_tag)),
        ("/model-versions/get-download-uri", get(download_uri)),
        ("/model-versions/transition-stage", post(transition_stage)),
    ]
}

#[derive(Debug, Deserialize)]
pub(super) struct CreateVersion {
    name: Option<String>,
    source: Option<String>,
    run_id: Option<String>,
    model_id: Option<String>,
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
pub(super) struct TransitionStage {
    name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    version: Option<String>,
    stage: Option<String>,
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

/// Builds MLflow's `ModelVersion` message. Versions have no stage, written as `None`. A
/// version registered from a logged model carries its `model_id`, as in MLflow 3.
pub(super) fn version_json(version: &VersionView) -> Value {
    let mut message = json!({
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
    });
    if let Some(model_id) = source_model_id(&version.source) {
        message["model_id"] = json!(model_id);
    }
    message
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
/// model's attached validators on the version's run. Failed checks do not stop the version;
/// they show in its validations and in the reasons of policies that look at them.
async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    MlflowRequest(request): MlflowRequest<CreateVersion>,
) -> MlflowResult<Json<Value>> {
    let name = required(request.name.clone(), "name")?;
    let source = required(request.source.clone(), "source")?;
    let parsed = parse_source(&source)?;
    check_model_id(&request, &source, &parsed)?;
    state.gates().model(&name).await?;
    let resolved = resolve_source(&state, &parsed).await?;
    check_run_id(&request, &source, &resolved)?;

    let mut tags = BTreeMap::new();
    for tag in request.tags {
        tags.insert(
            required(tag.key, "tags.key")?,
            tag.value.unwrap_or_default(),
        );
    }
    let new = NewModelVersion {
        model: name,
        run_id: resolved.run_id,
        artifact_name: resolved.artifact_name,
        artifact_digest: resolved.digest,
        source,
        description: request.description.unwrap_or_default(),
        tags,
    };
    let registry = state.registry();
    let created = state
        .gates()
        .create_resolved_version(&registry, &actor(&caller), new)
        .await?;
    Ok(version_response(&created))
}

/// Resolves a parsed source to the artifact the new version points at.
async fn resolve_source(state: &AppState, parsed: &VersionSource) -> MlflowResult<ResolvedSource> {
    match parsed {
        VersionSource::Run { run_id, path } => {
            load(state, run_id).await?;
            resolve_run_path(state, run_id, path).await
        }
        VersionSource::LoggedModel { model_id, path } => {
            resolve_model_path(state, model_id, path).await
        }
    }
}

/// Rejects a `model_id` that differs from the logged model the source names.
// NOTE: a `model_id` sent with a run source is not stored, because versions keep no model id
// of their own; the version JSON reports one only for logged-model sources.
fn check_model_id(
    request: &CreateVersion,
    source: &str,
    parsed: &VersionSource,
) -> MlflowResult<()> {
    let given = request.model_id.as_deref().filter(|id| !id.is_empty());
    match (given, parsed) {
        (Some(given), VersionSource::LoggedModel { model_id, .. }) if given != model_id => {
            Err(MlflowError::invalid(format!(
                "model_id '{given}' differs from the logged model '{model_id}' that source \
                 '{source}' names; omit model_id or make the two agree"
            )))
        }
        _ => Ok(()),
    }
}

/// Rejects a `run_id` that differs from the run the source resolved to.
fn check_run_id(
    request: &CreateVersion,
    source: &str,
    resolved: &ResolvedSource,
) -> MlflowResult<()> {
    let given = request.run_id.as_deref().filter(|id| !id.is_empty());
    match (given, resolved.run_id.as_deref()) {
        (Some(given), Some(found)) if given != found => Err(MlflowError::invalid(format!(
            "run_id '{given}' differs from the run '{found}' that source '{source}' names; omit \
             run_id or make the two agree"
        ))),
        (Some(given), None) => Err(MlflowError::invalid(format!(
            "run_id '{given}' was given, but source '{source}' names a logged model without a \
             source run; omit run_id"
        ))),
        _ => Ok(()),
    }
}

/// `POST model-versions/transition-stage`: rejected with `INVALID_PARAMETER_VALUE`, whose
/// message names the alias call to make instead.
async fn transition_stage(
    MlflowRequest(request): MlflowRequest<TransitionStage>,
) -> MlflowResult<Json<Value>> {
    let name = request.name.unwrap_or_default();
    let version = request.version.unwrap_or_default();
    let stage = request.stage.unwrap_or_default();
    let alias = stage.to_ascii_lowercase();
    Err(MlflowError::invalid(format!(
        "model version stages are not supported: this server promotes versions with aliases, \
         which the alias's policies must allow; instead of moving version {version} of \
         '{name}' to stage '{stage}', call \
         MlflowClient().set_registered_model_alias('{name}', '{alias}', '{version}')"
    )))
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
    let uri = match parse_source(&found.source) {
        Ok(VersionSource::Run { run_id, path }) if found.source.starts_with("runs:/") => {
            let root = load(&state, &run_id).await?.head().artifact_uri();
            join_uri(root, &path)
        }
        Ok(VersionSource::LoggedModel { model_id, path })
            if found.source.starts_with("models:/") =>
        {
            let model = state.store().mlflow_require_logged_model(&model_id).await?;
            join_uri(model.model.artifact_location, &path)
        }
        _ => found.source.clone(),
    };
    Ok(Json(json!({ "artifact_uri": uri })))
}

fn join_uri(root: String, path: &str) -> String {
    if path.is_empty() {
        root
    } else {
        format!("{root}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_numbers_start_at_one() {
        assert_eq!(parse_version("2").unwrap(), 2);
        assert!(parse_version("0").is_err());
        assert!(parse_version("two").is_err());
    }
}
