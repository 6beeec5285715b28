//! Routes of the plugins API: list, inspect and upload WebAssembly plugins.
//!
//! The views show what `runledger plugins list` and `runledger plugins inspect` print.

mod upload;

use crate::runtime::manifest::{ArtifactDecl, Capabilities, RequestedLimits};
use crate::runtime::{LoadInfo, MANIFEST_FILE, Plugin, PluginKind, Runtime, RuntimeError};
use crate::server::error::{ApiError, ApiResult, ErrorBody};
use crate::server::extract::ApiPath;
use crate::server::routes::ApiRouter;
use crate::server::routes::documented;
use crate::server::state::AppState;
use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// Version of the WIT package `runledger:plugin` that the host implements.
const WIT_PACKAGE_VERSION: &str = "0.1.0";

/// Builds the router of the plugins routes.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(documented!(list_plugins, upload::upload_plugin))
        .routes(documented!(inspect_plugin))
        .layer(DefaultBodyLimit::max(upload::MAX_UPLOAD_BODY_BYTES))
}

/// The WIT world a plugin kind implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KindName {
    /// Runs a pipeline step.
    StepExecutor,
    /// Judges a run summary.
    MetricValidator,
    /// Stores artifact bytes.
    StorageBackend,
    /// Decides promotion requests.
    Policy,
}

impl From<PluginKind> for KindName {
    fn from(kind: PluginKind) -> Self {
        match kind {
            PluginKind::StepExecutor => Self::StepExecutor,
            PluginKind::MetricValidator => Self::MetricValidator,
            PluginKind::StorageBackend => Self::StorageBackend,
            PluginKind::Policy => Self::Policy,
        }
    }
}

/// Limits that a call of the plugin runs under: its requests capped by the server's settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EffectiveLimitsView {
    /// Largest linear memory, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock limit of one call, in milliseconds.
    pub timeout_ms: u64,
    /// Fuel budget of one call.
    pub fuel: u64,
    /// Largest single output artifact, in bytes.
    pub max_output_bytes: u64,
}

/// Limits as the manifest declares them. A `null` limit takes the server's default.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeclaredLimits {
    /// Largest linear memory, in MiB.
    pub memory_mib: Option<u64>,
    /// Wall-clock limit of one call, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Fuel budget of one call.
    pub fuel: Option<u64>,
    /// Largest single output artifact, in MiB.
    pub max_output_mib: Option<u64>,
}

impl From<&RequestedLimits> for DeclaredLimits {
    fn from(limits: &RequestedLimits) -> Self {
        Self {
            memory_mib: limits.memory_mib,
            timeout_ms: limits.timeout_ms,
            fuel: limits.fuel,
            max_output_mib: limits.max_output_mib,
        }
    }
}

/// Host capabilities the manifest requests.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CapabilitiesView {
    /// Whether the plugin requests an empty scratch directory at `/scratch`.
    pub scratch_dir: bool,
}

impl From<&Capabilities> for CapabilitiesView {
    fn from(capabilities: &Capabilities) -> Self {
        Self {
            scratch_dir: capabilities.scratch_dir,
        }
    }
}

/// A declared input or output artifact.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ArtifactDeclView {
    /// Name the step uses for the artifact.
    pub name: String,
    /// Expected media type, such as `text/csv`.
    pub media_type: Option<String>,
    /// Description of the artifact.
    pub description: Option<String>,
    /// For inputs: whether a pipeline may leave it unwired.
    pub optional: bool,
}

impl From<&ArtifactDecl> for ArtifactDeclView {
    fn from(decl: &ArtifactDecl) -> Self {
        Self {
            name: decl.name.clone(),
            media_type: decl.media_type.clone(),
            description: decl.description.clone(),
            optional: decl.optional,
        }
    }
}

/// A plugin as listed: identity, kind, limits and params schema.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PluginSummary {
    /// Plugin name.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// Plugin kind.
    pub kind: KindName,
    /// The WIT world the component implements, such as `runledger:plugin/step-executor@0.1.0`.
    pub world: String,
    /// Lowercase hex SHA-256 of the component.
    pub digest: String,
    /// One-line description.
    pub description: String,
    /// Directory of the plugin on the server.
    pub dir: String,
    /// Limits a call runs under.
    pub limits: EffectiveLimitsView,
    /// JSON Schema of the params.
    pub params_schema: serde_json::Value,
}

/// A plugin directory that failed to load.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PluginProblem {
    /// The plugin directory on the server.
    pub dir: String,
    /// Reason the directory was skipped.
    pub error: String,
}

/// Body of `GET /api/v1/plugins`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PluginList {
    /// Every loaded plugin, by name and then newest version first.
    pub items: Vec<PluginSummary>,
    /// Plugin directories that failed to load.
    pub problems: Vec<PluginProblem>,
}

/// Whether the component loads and implements the world of its kind.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ComponentStatus {
    /// `ok`, or `invalid` with an error.
    pub status: ComponentState,
    /// Interfaces the component exports, when it loads.
    pub exports: Vec<String>,
    /// Interfaces the component imports, when it loads.
    pub imports: Vec<String>,
    /// Reason the component cannot be used, when it is invalid.
    pub error: Option<String>,
}

/// Outcome of loading a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    /// The component compiles and implements its world.
    Ok,
    /// The component cannot be used.
    Invalid,
}

/// Body of `GET /api/v1/plugins/{name}/{version}` and of a successful upload.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PluginDetail {
    /// Identity, kind, effective limits and params schema.
    #[serde(flatten)]
    pub summary: PluginSummary,
    /// Limits as the manifest declares them.
    pub declared_limits: DeclaredLimits,
    /// Requested host capabilities.
    pub capabilities: CapabilitiesView,
    /// Declared input artifacts.
    pub inputs: Vec<ArtifactDeclView>,
    /// Declared output artifacts.
    pub outputs: Vec<ArtifactDeclView>,
    /// The `plugin.toml` text.
    pub manifest: String,
    /// Whether the component loads.
    pub component: ComponentStatus,
}

/// Path of one plugin version.
#[derive(Debug, Deserialize)]
struct PluginPath {
    name: String,
    version: String,
}

/// `GET /api/v1/plugins`: every plugin, and the plugin directories that failed to load.
#[utoipa::path(
    get,
    path = "/api/v1/plugins",
    tag = "plugins",
    responses(
        (status = 200, description = "Every loaded plugin and every load problem",
            body = PluginList),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below viewer", body = ErrorBody),
    )
)]
async fn list_plugins(State(state): State<AppState>) -> Json<PluginList> {
    let registry = state.registry();
    let runtime = state.engine().runtime();
    let items = registry
        .plugins()
        .map(|plugin| summary(runtime, plugin))
        .collect();
    let problems = registry
        .problems()
        .iter()
        .map(|problem| PluginProblem {
            dir: problem.dir.display().to_string(),
            error: problem.message.clone(),
        })
        .collect();
    Json(PluginList { items, problems })
}

/// `GET /api/v1/plugins/{name}/{version}`: one plugin, with its component loaded to check
/// that it implements the world of its kind.
#[utoipa::path(
    get,
    path = "/api/v1/plugins/{name}/{version}",
    tag = "plugins",
    params(
        ("name" = String, Path, description = "Plugin name"),
        ("version" = String, Path, description = "Plugin version, such as 0.1.0"),
    ),
    responses(
        (status = 200, description = "The plugin; `component.status` tells whether it loads",
            body = PluginDetail),
        (status = 400, description = "The path is not valid", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below viewer", body = ErrorBody),
        (status = 404, description = "No plugin has this name and version", body = ErrorBody),
    )
)]
async fn inspect_plugin(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<PluginPath>,
) -> ApiResult<Json<PluginDetail>> {
    let spec = format!("{}@{}", path.name, path.version);
    let plugin = state
        .registry()
        .resolve(&spec)
        .map_err(|error| ApiError::not_found(error.to_string()))?;
    let detail = detail_with_component(&state, plugin).await?;
    Ok(Json(detail))
}

/// Loads the component of `plugin` (compiling it on first use) off the async threads, and
/// builds its full view.
async fn detail_with_component(state: &AppState, plugin: Arc<Plugin>) -> ApiResult<PluginDetail> {
    let runtime = state.engine().runtime().clone();
    let for_load = plugin.clone();
    let loaded = tokio::task::spawn_blocking(move || runtime.prepare(&for_load))
        .await
        .map_err(ApiError::internal)?;
    let component = status_of(loaded);
    Ok(detail(state.engine().runtime(), &plugin, component))
}

/// The component status of a plugin whose digest the runtime has already prepared, so this
/// returns from its cache without compiling.
fn component_status(state: &AppState, plugin: &Plugin) -> ComponentStatus {
    status_of(state.engine().runtime().prepare(plugin))
}

fn status_of(loaded: Result<LoadInfo, RuntimeError>) -> ComponentStatus {
    match loaded {
        Ok(info) => ComponentStatus {
            status: ComponentState::Ok,
            exports: info.exports,
            imports: info.imports,
            error: None,
        },
        Err(error) => ComponentStatus {
            status: ComponentState::Invalid,
            exports: Vec::new(),
            imports: Vec::new(),
            error: Some(error.to_string()),
        },
    }
}

fn summary(runtime: &Runtime, plugin: &Plugin) -> PluginSummary {
    let manifest = &plugin.manifest;
    let limits = runtime.effective_limits(plugin, None);
    PluginSummary {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        kind: manifest.kind.into(),
        world: format!(
            "runledger:plugin/{}@{WIT_PACKAGE_VERSION}",
            manifest.kind.world()
        ),
        digest: plugin.digest.clone(),
        description: manifest.description.clone(),
        dir: plugin.dir.display().to_string(),
        limits: EffectiveLimitsView {
            memory_bytes: limits.memory_bytes,
            timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            fuel: limits.fuel,
            max_output_bytes: limits.max_output_bytes,
        },
        params_schema: manifest.params_schema.clone(),
    }
}

fn detail(runtime: &Runtime, plugin: &Plugin, component: ComponentStatus) -> PluginDetail {
    let manifest = &plugin.manifest;
    let manifest_path = plugin.dir.join(MANIFEST_FILE);
    let manifest_text = std::fs::read_to_string(&manifest_path).unwrap_or_else(|error| {
        tracing::warn!(path = %manifest_path.display(), cause = %error,
            "cannot read a loaded plugin's manifest");
        String::new()
    });
    PluginDetail {
        summary: summary(runtime, plugin),
        declared_limits: (&manifest.limits).into(),
        capabilities: (&manifest.capabilities).into(),
        inputs: manifest.inputs.iter().map(ArtifactDeclView::from).collect(),
        outputs: manifest
            .outputs
            .iter()
            .map(ArtifactDeclView::from)
            .collect(),
        manifest: manifest_text,
        component,
    }
}
