//! Where runledger keeps its data, and the settings shared by the CLI and the server.

use std::path::{Path, PathBuf};

/// Settings resolved from flags, `RUNLEDGER_*` environment variables and defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory for the SQLite database, artifacts and the compile cache.
    pub data_dir: PathBuf,
    /// Directories scanned for plugins.
    pub plugin_dirs: Vec<PathBuf>,
    /// Database URL; `None` means the SQLite file in the data directory.
    pub database_url: Option<String>,
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
        }
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
            Some(url) => redact_password(url),
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

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
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

        assert_eq!(config.redacted_database_url(), "postgres://ml:***@db:5432/runs");
    }

    #[test]
    fn plugin_dir_defaults_inside_data_dir() {
        let config = Config::resolve(Some("/d".into()), vec![], None);

        assert_eq!(config.plugin_dirs, vec![PathBuf::from("/d/plugins")]);
    }
}
