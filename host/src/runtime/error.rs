//! Errors of the plugin runtime: those that stop a plugin from being used at all, and those that
//! end one call.

use super::manifest::ManifestError;
use super::schema::{InvalidConfig, InvalidParams};
use super::violations::{Capability, Limit};

/// A plugin cannot be loaded or called.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The manifest is missing or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The component file cannot be read.
    #[error("cannot read component {path}: {source}")]
    ReadComponent {
        /// The component path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid WebAssembly component.
    #[error("plugin {plugin}: {path} is not a valid WebAssembly component: {message}")]
    InvalidComponent {
        /// `name@version`.
        plugin: String,
        /// The component path.
        path: String,
        /// Why wasmtime rejected it.
        message: String,
    },
    /// The component does not implement the world its manifest's kind requires.
    #[error(
        "plugin {plugin} declares kind `{world}` but its component does not implement the \
         `{world}` world: {message}"
    )]
    WorldMismatch {
        /// `name@version`.
        plugin: String,
        /// The world the kind requires.
        world: String,
        /// What is missing or mistyped.
        message: String,
    },
    /// Params break the plugin's schema.
    #[error(transparent)]
    InvalidParams(#[from] InvalidParams),
    /// No plugin matches a name or version.
    #[error("plugin `{spec}` not found{hint}")]
    NotFound {
        /// What was looked up.
        spec: String,
        /// A suggestion, starting with `; `, or empty.
        hint: String,
    },
    /// The plugin's kind cannot be called this way.
    #[error("plugin {plugin} is a {kind}, not a {expected}")]
    WrongKind {
        /// `name@version`.
        plugin: String,
        /// The plugin's kind.
        kind: String,
        /// The kind this call needs, such as `policy`.
        expected: String,
    },
    /// The runtime has no world to call plugins of this kind with.
    #[error("plugin {plugin} is a {kind}, and this runtime cannot call {kind} plugins")]
    UnsupportedKind {
        /// `name@version`.
        plugin: String,
        /// The plugin's kind.
        kind: String,
    },
    /// The component imports an interface its kind's world does not provide.
    #[error(
        "plugin {plugin} is a {world}, but its component imports `{import}`, which the \
         `{world}` world does not provide; a {world} may import only WASI 0.2 and {allowed}"
    )]
    ForbiddenImport {
        /// `name@version`.
        plugin: String,
        /// The world of the plugin's kind.
        world: String,
        /// The import outside the world.
        import: String,
        /// The `runledger:plugin` interfaces the world provides.
        allowed: String,
    },
    /// A validator's or policy's configuration breaks the plugin's config schema.
    #[error(transparent)]
    InvalidConfig(#[from] InvalidConfig),
    /// The wasmtime engine could not be set up.
    #[error("wasm engine setup failed: {0}")]
    Engine(String),
}

/// How one call of a plugin failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum CallError {
    /// A limit stopped the call.
    #[error("{limit}")]
    LimitExceeded {
        /// The limit.
        limit: Limit,
    },
    /// The plugin tried to use a capability the sandbox withholds, and then failed.
    #[error(
        "denied capability: {capability} ({detail}); plugins get no host files (except a \
         scratch directory their manifest requests), environment variables or network{}",
        .plugin_error.as_ref().map(|e| format!("; the plugin then failed: {e}")).unwrap_or_default()
    )]
    CapabilityDenied {
        /// The capability.
        capability: Capability,
        /// What the plugin attempted.
        detail: String,
        /// How the plugin failed afterwards, in its own words.
        #[serde(skip_serializing_if = "Option::is_none")]
        plugin_error: Option<String>,
    },
    /// The plugin returned an error value.
    #[error("plugin returned an error: {kind}: {message}")]
    Plugin {
        /// The WIT error case, such as `invalid-input`.
        kind: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin panicked.
    #[error("plugin panicked: {message}")]
    Panic {
        /// The panic message from the plugin's stderr, when it printed one.
        message: String,
    },
    /// The plugin trapped for another reason.
    #[error("plugin trapped: {message}")]
    Trap {
        /// The trap description.
        message: String,
    },
    /// The call was cancelled, for example because the run was.
    #[error("the call was cancelled")]
    Cancelled,
    /// Instantiation failed, for example because the initial memory exceeds the limit.
    #[error("instantiating the plugin failed: {message}")]
    Instantiate {
        /// Why.
        message: String,
    },
}
