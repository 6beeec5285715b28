//! The web UI's npm libraries: `npm ci` in `host/ui` installs the versions pinned by
//! `host/ui/package-lock.json` into `host/ui/node_modules`, which the build of `runledger`
//! embeds.

use crate::run;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Directory of the UI's `package.json`, relative to the repository root.
const UI_DIR: &str = "host/ui";

/// Runs `npm ci` in `host/ui` when `node_modules` is missing or holds other versions than the
/// lock file pins.
pub(crate) fn ensure_node_modules(root: &Path) -> Result<()> {
    let ui = root.join(UI_DIR);
    if is_current(&ui)? {
        return Ok(());
    }
    let npm = Command::new("npm").arg("--version").output();
    if !npm.is_ok_and(|output| output.status.success()) {
        bail!(
            "npm is required to install the web UI's libraries into {}: install Node.js 18 or \
             later with npm (Debian: apt-get install npm), then run `cargo xtask setup` again",
            ui.join("node_modules").display()
        );
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&ui))
}

/// Returns whether `node_modules` holds every package at the version the lock file pins, by
/// comparing the lock file with the copy npm keeps in `node_modules/.package-lock.json`.
fn is_current(ui: &Path) -> Result<bool> {
    let lock_path = ui.join("package-lock.json");
    let lock = read_json(&lock_path)?
        .with_context(|| format!("{} is missing; restore it from git", lock_path.display()))?;
    let Some(installed) = read_json(&ui.join("node_modules/.package-lock.json"))? else {
        return Ok(false);
    };
    let wanted = installed_versions(&lock);
    let present = installed_versions(&installed);
    let all_there = wanted
        .iter()
        .all(|(name, _)| ui.join(name).join("package.json").is_file());
    Ok(wanted == present && all_there)
}

/// Reads a JSON file, or returns `None` when it does not exist.
fn read_json(path: &Path) -> Result<Option<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    Ok(Some(value))
}

/// Returns `(node_modules/NAME, version)` for every package of a lock file, sorted.
fn installed_versions(lock: &Value) -> Vec<(String, String)> {
    let Some(packages) = lock["packages"].as_object() else {
        return Vec::new();
    };
    let mut versions: Vec<(String, String)> = packages
        .iter()
        .filter(|(path, _)| path.starts_with("node_modules/"))
        .map(|(path, entry)| {
            let version = entry["version"].as_str().unwrap_or_default();
            (path.clone(), version.to_owned())
        })
        .collect();
    versions.sort();
    versions
}
