//! Plugins found on disk, identified by the SHA-256 of their component.
//!
//! Each plugin lives in a directory of its own holding `plugin.toml` and `plugin.wasm`; a
//! registry scans one or more parent directories. Several versions of one plugin sit side by side.

use super::error::RuntimeError;
use super::manifest::{Manifest, ManifestError};
use super::schema::{InvalidConfig, InvalidParams, check_params, compile_schema};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File name of a plugin's manifest inside its directory.
pub const MANIFEST_FILE: &str = "plugin.toml";
/// File name of a plugin's component inside its directory.
pub const COMPONENT_FILE: &str = "plugin.wasm";

/// A plugin on disk: its manifest, its component and the component's digest.
pub struct Plugin {
    /// The validated manifest.
    pub manifest: Manifest,
    /// Lowercase hex SHA-256 of the component file.
    pub digest: String,
    /// Directory holding the plugin's files.
    pub dir: PathBuf,
    validator: jsonschema::Validator,
    config_validator: jsonschema::Validator,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.manifest.id())
            .field("digest", &self.digest)
            .finish()
    }
}

impl Plugin {
    /// Loads the plugin in `dir` (its manifest and component) and hashes the component.
    pub fn load(dir: &Path) -> Result<Self, RuntimeError> {
        let manifest = Manifest::load(&dir.join(MANIFEST_FILE))?;
        let component = dir.join(COMPONENT_FILE);
        let digest = file_digest(&component).map_err(|source| RuntimeError::ReadComponent {
            path: component.display().to_string(),
            source,
        })?;
        let compile = |field: &str, schema: &serde_json::Value| {
            compile_schema(schema).map_err(|message| ManifestError::Invalid {
                path: dir.join(MANIFEST_FILE).display().to_string(),
                message: format!("{field} is not a valid JSON Schema: {message}"),
            })
        };
        let validator = compile("params-schema", &manifest.params_schema)?;
        let config_validator = compile("config-schema", &manifest.config_schema())?;
        Ok(Self {
            manifest,
            digest,
            dir: dir.to_owned(),
            validator,
            config_validator,
        })
    }

    /// `name@version`.
    pub fn id(&self) -> String {
        self.manifest.id()
    }

    /// Path of the component file.
    pub fn component_path(&self) -> PathBuf {
        self.dir.join(COMPONENT_FILE)
    }

    /// Checks params against the plugin's params schema.
    pub fn validate_params(&self, params: &serde_json::Value) -> Result<(), InvalidParams> {
        check_params(&self.id(), &self.validator, params)
    }

    /// Checks a validator's or policy's configuration against the plugin's config schema
    /// (`config-schema` in its manifest; any JSON object when absent).
    pub fn validate_config(&self, config: &serde_json::Value) -> Result<(), InvalidConfig> {
        check_params(&self.id(), &self.config_validator, config).map_err(InvalidConfig::from)
    }
}

/// Returns the lowercase hex SHA-256 of a file, read in pieces, so that scanning does not hold
/// a large component in memory.
fn file_digest(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// A plugin directory that could not be loaded.
#[derive(Debug, Clone)]
pub struct LoadProblem {
    /// The plugin directory.
    pub dir: PathBuf,
    /// Why it was skipped.
    pub message: String,
}

/// All plugins found in the configured directories.
#[derive(Debug, Default)]
pub struct PluginRegistry {
    by_name: BTreeMap<String, Vec<Arc<Plugin>>>,
    by_digest: HashMap<String, Arc<Plugin>>,
    problems: Vec<LoadProblem>,
}

/// Why a plugin was not added to a registry.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "plugin {id} in {dir} is ignored: {first} already provides {id}; give one of them another \
     version"
)]
pub struct DuplicatePlugin {
    /// `name@version`.
    pub id: String,
    /// Directory of the ignored plugin.
    pub dir: String,
    /// Directory of the plugin kept.
    pub first: String,
}

impl PluginRegistry {
    /// Scans each directory for plugin subdirectories. Plugins that fail to load are kept as
    /// [`LoadProblem`]s, so one broken plugin does not hide the others.
    pub fn scan(roots: &[PathBuf]) -> Self {
        let mut registry = Self::default();
        for root in roots {
            registry.scan_root(root);
        }
        registry
    }

    fn scan_root(&mut self, root: &Path) {
        let Ok(entries) = std::fs::read_dir(root) else {
            tracing::debug!(dir = %root.display(), "plugin directory missing, skipped");
            return;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.join(MANIFEST_FILE).is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let loaded = Plugin::load(&dir)
                .map_err(|error| error.to_string())
                .and_then(|plugin| self.insert(plugin).map_err(|error| error.to_string()));
            if let Err(message) = loaded {
                tracing::debug!(dir = %dir.display(), cause = %message, "plugin skipped");
                self.problems.push(LoadProblem { dir, message });
            }
        }
    }

    /// Adds a plugin, keyed by `name@version`. Several plugins may share a component (and so a
    /// digest) under different names or versions, but a second plugin with the same
    /// `name@version` is rejected.
    pub fn insert(&mut self, plugin: Plugin) -> Result<Arc<Plugin>, DuplicatePlugin> {
        let versions = self
            .by_name
            .entry(plugin.manifest.name.clone())
            .or_default();
        if let Some(first) = versions
            .iter()
            .find(|p| p.manifest.version == plugin.manifest.version)
        {
            return Err(DuplicatePlugin {
                id: plugin.id(),
                dir: plugin.dir.display().to_string(),
                first: first.dir.display().to_string(),
            });
        }
        let plugin = Arc::new(plugin);
        versions.push(plugin.clone());
        versions.sort_by_key(|p| std::cmp::Reverse(p.manifest.semver()));
        self.by_digest
            .entry(plugin.digest.clone())
            .or_insert_with(|| plugin.clone());
        Ok(plugin)
    }

    /// Resolves `name` (highest version) or `name@version`.
    pub fn resolve(&self, spec: &str) -> Result<Arc<Plugin>, RuntimeError> {
        let (name, version) = match spec.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (spec, None),
        };
        let Some(versions) = self.by_name.get(name) else {
            return Err(RuntimeError::NotFound {
                spec: spec.to_owned(),
                hint: self.name_hint(name),
            });
        };
        let found = match version {
            None => versions.first(),
            Some(version) => versions.iter().find(|p| p.manifest.version == version),
        };
        found.cloned().ok_or_else(|| {
            let known: Vec<&str> = versions
                .iter()
                .map(|p| p.manifest.version.as_str())
                .collect();
            RuntimeError::NotFound {
                spec: spec.to_owned(),
                hint: format!("; versions of `{name}` available: {}", known.join(", ")),
            }
        })
    }

    fn name_hint(&self, name: &str) -> String {
        let nearest = self
            .by_name
            .keys()
            .map(|known| (strsim::levenshtein(&name.to_lowercase(), known), known))
            .filter(|(distance, _)| *distance <= 3)
            .min();
        match nearest {
            Some((_, known)) => format!("; did you mean `{known}`?"),
            None if self.by_name.is_empty() => {
                "; no plugins were found: pass --plugin-dir with a directory of NAME@VERSION \
                 plugin directories (`cargo xtask build-plugins` fills target/plugins)"
                    .into()
            }
            None => String::new(),
        }
    }

    /// Finds a plugin whose component has this digest (the first loaded, when several share
    /// it).
    pub fn by_digest(&self, digest: &str) -> Option<Arc<Plugin>> {
        self.by_digest.get(digest).cloned()
    }

    /// Every plugin, by name and then newest version first.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.by_name.values().flatten()
    }

    /// Plugin directories that failed to load.
    pub fn problems(&self) -> &[LoadProblem] {
        &self.problems
    }
}
