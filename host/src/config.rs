//! Where runledger keeps its data, and the settings shared by the CLI and the server.

use crate::runtime::{AllocatorChoice, RuntimeSettings};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Operator caps on what any plugin may request; `None` keeps the runtime's default.
#[derive(Debug, Clone, Default)]
pub struct SandboxCaps {
    /// Largest linear memory, in MiB.
    pub max_memory_mib: Option<u64>,
    /// Maximum wall-clock time of one call, in seconds.
    pub max_timeout_secs: Option<u64>,
    /// Largest fuel budget of one call.
    pub max_fuel: Option<u64>,
    /// Instance allocator.
    pub allocator: Option<AllocatorChoice>,
}

/// Settings resolved from flags, `RUNLEDGER_*` environment variables and defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory for the SQLite database, artifacts and the compile cache.
    pub data_dir: PathBuf,
    /// Directories scanned for plugins.
    pub plugin_dirs: Vec<PathBuf>,
    /// Database URL; `None` means the SQLite file in the data directory.
    pub database_url: Option<String>,
    /// Operator caps for plugin calls.
    pub sandbox: SandboxCaps,
}

impl Config {
    /// Resolves the settings: explicit values first, then the defaults.
    pub fn resolve(
        data_dir: Option<PathBuf>,
        plugin_dirs: Vec<PathBuf>,
        database_url: Option<String>,
    ) -> Self {
        let data_dir = data_dir.unwrap_or_else(default_data_dir);
        let plugin_dirs = if plugin_dirs.is_empty() {
            vec![data_dir.join("plugins")]
        } else {
            plugin_dirs
        };
        Self {
            data_dir,
            plugin_dirs,
            database_url: database_url.filter(|url| !url.is_empty()),
            sandbox: SandboxCaps::default(),
        }
    }

    /// Runtime settings: the compile cache in the data directory and the operator caps.
    pub fn runtime_settings(&self) -> RuntimeSettings {
        let mut settings = RuntimeSettings {
            cache_dir: Some(self.compile_cache_dir()),
            ..RuntimeSettings::default()
        };
        let caps = &self.sandbox;
        if let Some(mib) = caps.max_memory_mib {
            settings.max_memory_bytes = mib.min(4096) << 20;
        }
        if let Some(secs) = caps.max_timeout_secs {
            settings.max_timeout = Duration::from_secs(secs);
        }
        if let Some(fuel) = caps.max_fuel {
            settings.max_fuel = fuel;
        }
        if let Some(allocator) = caps.allocator {
            settings.allocator = allocator;
        }
        settings
    }

    /// Directory of the content-addressed artifact files.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.data_dir.join("artifacts")
    }

    /// Directory of compiled components.
    pub fn compile_cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache").join("components")
    }

    /// Database URL in effect, with any password replaced by `***` for printing.
    pub fn redacted_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => crate::store::redact_password(url),
            None => format!("sqlite://{}", self.data_dir.join("runledger.db").display()),
        }
    }
}

/// `$XDG_DATA_HOME/runledger`, else `~/.local/share/runledger`, else `./.runledger`.
fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Path::new(&xdg).join("runledger");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Path::new(&home).join(".local/share/runledger"),
        None => PathBuf::from(".runledger"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_database_password() {
        let config = Config::resolve(
            Some("/d".into()),
            vec![],
            Some("postgres://ml:s3cret@db:5432/runs".into()),
        );

        assert_eq!(
            config.redacted_database_url(),
            "postgres://ml:***@db:5432/runs"
        );
    }

    #[test]
    fn plugin_dir_defaults_inside_data_dir() {
        let config = Config::resolve(Some("/d".into()), vec![], None);

        assert_eq!(config.plugin_dirs, vec![PathBuf::from("/d/plugins")]);
    }
}
