//! `POST /api/v1/plugins`: installs a plugin from a multipart upload.
//!
//! The upload is written to a staging directory under the first plugin directory, checked as a
//! whole (manifest, component, world), then renamed to `NAME@VERSION` and added to the
//! registry. A rejected upload leaves nothing behind.

use super::{PluginDetail, component_status, detail};
use crate::runtime::{COMPONENT_FILE, MANIFEST_FILE, Manifest, Plugin, PluginRegistry};
use crate::server::Caller;
use crate::server::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::server::state::AppState;
use crate::store::NewPlugin;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt as _;
use utoipa::ToSchema;

/// Maximum size of an uploaded component. The first-party plugins are under 1 MiB, and the cap
/// leaves room for components that embed a language runtime, such as those of componentize-py.
const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// Maximum size of an uploaded `plugin.toml`. Real manifests are a few KiB.
const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// Body limit of the upload route: both parts plus room for the multipart framing.
pub(super) const MAX_UPLOAD_BODY_BYTES: usize =
    MAX_COMPONENT_BYTES as usize + MAX_MANIFEST_BYTES + (1 << 20);

/// Subdirectory of the plugin directory where uploads are staged. The registry scans only
/// direct children of a plugin directory, so a half-written upload is never loaded.
const STAGING_DIR: &str = ".uploads";

/// Uploads hold this lock from the duplicate check to the registry swap, so two uploads of the
/// same `name@version` cannot both pass the check.
static UPLOAD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Form of `POST /api/v1/plugins`, sent as `multipart/form-data`.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "documents the multipart parts; the handler streams them"
)]
pub(super) struct PluginUpload {
    /// The `plugin.toml` text.
    manifest: String,
    /// The component (`.wasm`) bytes.
    #[schema(value_type = String, content_media_type = "application/octet-stream")]
    component: Vec<u8>,
}

/// `POST /api/v1/plugins`: installs a plugin from its manifest and component.
#[utoipa::path(
    post,
    path = "/api/v1/plugins",
    tag = "plugins",
    request_body(content = PluginUpload, content_type = "multipart/form-data",
        description = "Parts `manifest` (the plugin.toml text) and `component` (the .wasm \
            bytes, at most 256 MiB)"),
    responses(
        (status = 201, description = "The plugin is installed and usable by new pipelines",
            body = PluginDetail),
        (status = 200, description = "The same component is already installed under this name \
            and version", body = PluginDetail),
        (status = 400, description = "A part is missing, the manifest is invalid, or the \
            component does not implement the world of its kind", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token's role is below admin", body = ErrorBody),
        (status = 409, description = "Another component is installed under this name and \
            version", body = ErrorBody),
        (status = 413, description = "The component is larger than 256 MiB", body = ErrorBody),
        (status = 415, description = "The body is not multipart/form-data", body = ErrorBody),
    )
)]
pub(super) async fn upload_plugin(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<PluginDetail>)> {
    let result = upload(&state, &caller, multipart).await;
    if let Err(error) = &result {
        tracing::warn!(token_name = %caller.name, code = ?error.code, cause = %error.message,
            "plugin upload rejected");
    }
    result
}

async fn upload(
    state: &AppState,
    caller: &Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<PluginDetail>)> {
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "{}; send multipart/form-data with the parts `manifest` and `component`",
                rejection.body_text()
            ),
        )
    })?;
    let root = upload_root(state)?;
    let staging = Staging::create(&root)?;
    let manifest_text = match read_parts(&mut multipart, staging.path()).await {
        Ok(text) => text,
        Err(error) => {
            discard_rest(&mut multipart).await;
            return Err(error);
        }
    };
    let staged = load_staged(staging.path(), &manifest_text).await?;
    check_component(state, staged.clone()).await?;

    let _lock = UPLOAD_LOCK.lock().await;
    if let Some(existing) = already_installed(state, &staged)? {
        return Ok((StatusCode::OK, Json(existing)));
    }
    let detail = install(state, &root, staging, &staged, manifest_text).await?;
    tracing::info!(plugin = %staged.id(), digest = %staged.digest, token_name = %caller.name,
        "plugin uploaded");
    Ok((StatusCode::CREATED, Json(detail)))
}

/// Returns the plugin directory that uploads go to: the first configured one, created if
/// missing.
fn upload_root(state: &AppState) -> ApiResult<PathBuf> {
    let Some(root) = state.config().plugin_dirs.first() else {
        return Err(ApiError::conflict(
            "the server has no plugin directory to install into; restart it with --plugin-dir",
        ));
    };
    std::fs::create_dir_all(root).map_err(|error| {
        ApiError::internal(format!(
            "cannot create plugin directory {}: {error}",
            root.display()
        ))
    })?;
    Ok(root.clone())
}

/// A directory under `root/.uploads` where one upload is written before it is checked. Dropping
/// it removes the directory, and `.uploads` too when no other upload is using it.
struct Staging {
    dir: Option<tempfile::TempDir>,
    parent: PathBuf,
}

impl Staging {
    fn create(root: &Path) -> ApiResult<Self> {
        let parent = root.join(STAGING_DIR);
        std::fs::create_dir_all(&parent).map_err(|error| {
            ApiError::internal(format!("cannot create {}: {error}", parent.display()))
        })?;
        let dir = tempfile::Builder::new()
            .prefix("upload-")
            .tempdir_in(&parent)
            .map_err(|error| {
                ApiError::internal(format!(
                    "cannot create a staging directory in {}: {error}",
                    parent.display()
                ))
            })?;
        Ok(Self {
            dir: Some(dir),
            parent,
        })
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().map_or(&self.parent, |dir| dir.path())
    }

    /// Renames the staged directory to `target`, after which nothing is left to remove.
    fn move_to(mut self, target: &Path) -> std::io::Result<()> {
        std::fs::rename(self.path(), target)?;
        if let Some(dir) = self.dir.take() {
            let _moved = dir.keep();
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        drop(self.dir.take());
        // `remove_dir` fails on a non-empty directory, which is the case while another
        // upload is being staged. That upload removes it when it ends.
        let _ = std::fs::remove_dir(&self.parent);
    }
}

/// Reads the `manifest` and `component` parts, streaming the component to
/// `staging/plugin.wasm`, and returns the manifest text.
async fn read_parts(multipart: &mut Multipart, staging: &Path) -> ApiResult<String> {
    let mut manifest = None;
    let mut component = false;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "manifest" if manifest.is_none() => manifest = Some(read_manifest(field).await?),
            "component" if !component => {
                write_component(field, &staging.join(COMPONENT_FILE)).await?;
                component = true;
            }
            "manifest" | "component" => {
                return Err(ApiError::invalid_field(
                    name,
                    "the part is sent twice; send it once",
                ));
            }
            _ => {
                return Err(ApiError::invalid(format!(
                    "unknown part `{name}`; send only the parts `manifest` and `component`"
                )));
            }
        }
    }
    if !component {
        return Err(ApiError::invalid_field(
            "component",
            "the part is missing; send the .wasm bytes as the part `component`",
        ));
    }
    manifest.ok_or_else(|| {
        ApiError::invalid_field(
            "manifest",
            "the part is missing; send the plugin.toml text as the part `manifest`",
        )
    })
}

/// Reads and drops the rest of a rejected upload, up to the route's body limit, so a client
/// still sending it gets the error response instead of a broken pipe or a reset connection.
async fn discard_rest(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

async fn read_manifest(mut field: Field<'_>) -> ApiResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the part `manifest` is larger than {MAX_MANIFEST_BYTES} bytes"),
            ));
        }
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::invalid_field("manifest", "the part is not UTF-8 text"))
}

async fn write_component(mut field: Field<'_>, path: &Path) -> ApiResult<()> {
    let write_error = |error: std::io::Error| {
        ApiError::internal(format!("cannot write {}: {error}", path.display()))
    };
    let mut file = tokio::fs::File::create(path).await.map_err(write_error)?;
    let mut written = 0_u64;
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        written += chunk.len() as u64;
        if written > MAX_COMPONENT_BYTES {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the part `component` is larger than {} MiB, the limit of an upload",
                    MAX_COMPONENT_BYTES >> 20
                ),
            ));
        }
        file.write_all(&chunk).await.map_err(write_error)?;
    }
    file.sync_all().await.map_err(write_error)
}

fn multipart_error(error: MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the upload is larger than the limit of {} MiB",
                MAX_UPLOAD_BODY_BYTES >> 20
            ),
        );
    }
    ApiError::invalid(format!(
        "the multipart body is not valid: {}",
        error.body_text()
    ))
}

/// Validates the manifest, writes it next to the component and loads both as a plugin.
async fn load_staged(staging: &Path, manifest_text: &str) -> ApiResult<Arc<Plugin>> {
    Manifest::parse(manifest_text, "(part `manifest`)")
        .map_err(|error| ApiError::invalid_field("manifest", error.to_string()))?;
    let manifest_path = staging.join(MANIFEST_FILE);
    tokio::fs::write(&manifest_path, manifest_text)
        .await
        .map_err(|error| {
            ApiError::internal(format!("cannot write {}: {error}", manifest_path.display()))
        })?;
    let dir = staging.to_owned();
    let loaded = tokio::task::spawn_blocking(move || Plugin::load(&dir))
        .await
        .map_err(ApiError::internal)?;
    loaded
        .map(Arc::new)
        .map_err(|error| ApiError::invalid(error.to_string()))
}

/// Returns the installed plugin when `staged` repeats it byte for byte, and a 409 when another
/// component has its name and version.
fn already_installed(state: &AppState, staged: &Plugin) -> ApiResult<Option<PluginDetail>> {
    let id = staged.id();
    let Ok(existing) = state.registry().resolve(&id) else {
        return Ok(None);
    };
    if existing.digest != staged.digest {
        return Err(ApiError::conflict(format!(
            "plugin {id} is already installed with component sha256:{}, and the upload's \
             component is sha256:{}; give the new plugin another version",
            existing.digest, staged.digest
        )));
    }
    let detail = detail(
        state.engine().runtime(),
        &existing,
        component_status(state, &existing),
    );
    Ok(Some(detail))
}

/// Compiles the staged component and checks that it implements the world of its kind.
async fn check_component(state: &AppState, staged: Arc<Plugin>) -> ApiResult<()> {
    let runtime = state.engine().runtime().clone();
    let prepared = tokio::task::spawn_blocking(move || runtime.prepare(&staged))
        .await
        .map_err(ApiError::internal)?;
    prepared
        .map(|_| ())
        .map_err(|error| ApiError::invalid_field("component", error.to_string()))
}

/// Moves the staged plugin to `root/NAME@VERSION`, records it and swaps in a registry that
/// contains it. Removes the directory again when a later step fails.
async fn install(
    state: &AppState,
    root: &Path,
    staging: Staging,
    staged: &Plugin,
    manifest_text: String,
) -> ApiResult<PluginDetail> {
    let target = root.join(staged.id());
    if target.exists() {
        return Err(ApiError::conflict(format!(
            "{} already exists but did not load as a plugin; remove it or give the new plugin \
             another version",
            target.display()
        )));
    }
    staging.move_to(&target).map_err(|error| {
        ApiError::internal(format!(
            "cannot move the upload to {}: {error}",
            target.display()
        ))
    })?;

    match register(state, staged, manifest_text).await {
        Ok((registry, plugin)) => {
            let component = component_status(state, &plugin);
            let detail = detail(state.engine().runtime(), &plugin, component);
            state.replace_registry(registry);
            Ok(detail)
        }
        Err(error) => {
            if let Err(cause) = std::fs::remove_dir_all(&target) {
                tracing::warn!(dir = %target.display(), cause = %cause,
                    "cannot remove a rejected plugin upload");
            }
            Err(error)
        }
    }
}

/// Rescans the plugin directories, checks that the plugin found under the staged plugin's id
/// is the staged one, and records it in the store.
async fn register(
    state: &AppState,
    staged: &Plugin,
    manifest_text: String,
) -> ApiResult<(PluginRegistry, Arc<Plugin>)> {
    let dirs = state.config().plugin_dirs.clone();
    let registry = tokio::task::spawn_blocking(move || PluginRegistry::scan(&dirs))
        .await
        .map_err(ApiError::internal)?;
    let plugin = registry.resolve(&staged.id()).map_err(|error| {
        ApiError::internal(format!(
            "the uploaded plugin did not load after the move: {error}"
        ))
    })?;
    if plugin.digest != staged.digest {
        return Err(ApiError::internal(format!(
            "after the move, {} resolves to component {} instead of the uploaded {}",
            staged.id(),
            plugin.digest,
            staged.digest
        )));
    }
    let manifest = &staged.manifest;
    state
        .store()
        .upsert_plugin(NewPlugin {
            digest: staged.digest.clone(),
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            kind: manifest.kind.world().to_owned(),
            manifest_text,
        })
        .await?;
    Ok((registry, plugin))
}
