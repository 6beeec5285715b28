//! Installation of the web UI's browser test tools: Debian's Chromium at `/usr/bin/chromium`,
//! and playwright-core in `tests/browser/node_modules` at the version `package-lock.json` pins.
//! playwright-core drives the installed Chromium and never downloads a browser of its own.

use crate::run;
use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Path of the browser that `tests/browser/helpers.mjs` launches.
const CHROMIUM: &str = "/usr/bin/chromium";

/// Directory of the browser tests' `package.json`, relative to the repository root.
const BROWSER_TESTS_DIR: &str = "tests/browser";

/// Installs Chromium when it is missing and the browser tests' npm packages when they are
/// missing or differ from the lock file.
pub(crate) fn ensure_browser(root: &Path) -> Result<()> {
    ensure_chromium()?;
    ensure_packages(&root.join(BROWSER_TESTS_DIR))
}

/// Installs Debian's `chromium` package with apt-get, refreshing the package lists only when
/// the first attempt fails.
fn ensure_chromium() -> Result<()> {
    if Path::new(CHROMIUM).is_file() {
        return Ok(());
    }
    if !is_root()? || !has_program("apt-get") {
        bail!(
            "{CHROMIUM} is missing and cannot be installed here, because that needs apt-get \
             and root: install Debian's chromium package (`sudo apt-get install chromium`), \
             then run `cargo xtask setup` again"
        );
    }
    if apt_install_chromium().is_err() {
        run(Command::new("apt-get").args(["update"]))?;
        apt_install_chromium()?;
    }
    if !Path::new(CHROMIUM).is_file() {
        bail!("apt-get installed chromium, but {CHROMIUM} is still missing");
    }
    Ok(())
}

fn apt_install_chromium() -> Result<()> {
    run(Command::new("apt-get")
        .args(["install", "-y", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn is_root() -> Result<bool> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .context("cannot run `id -u` to check for root")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn has_program(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Runs `npm ci` in `dir` unless every package of its lock file is installed at its pinned
/// version.
fn ensure_packages(dir: &Path) -> Result<()> {
    let lock_path = dir.join("package-lock.json");
    let text = std::fs::read_to_string(&lock_path)
        .with_context(|| format!("cannot read {}; restore it from git", lock_path.display()))?;
    let lock: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", lock_path.display()))?;
    if packages_match(dir, &lock) {
        return Ok(());
    }
    if !has_program("npm") {
        bail!(
            "npm is required to install playwright-core into {}: install Node.js 20 or later \
             with npm (Debian: apt-get install nodejs npm), then run `cargo xtask setup` again",
            dir.join("node_modules").display()
        );
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir))
}

/// Returns whether each `node_modules/NAME` entry of the lock file is installed with the
/// version the lock file gives it.
fn packages_match(dir: &Path, lock: &Value) -> bool {
    let Some(packages) = lock["packages"].as_object() else {
        return false;
    };
    packages
        .iter()
        .filter(|(path, _)| path.starts_with("node_modules/"))
        .all(|(path, entry)| {
            let installed = installed_version(&dir.join(path));
            installed.is_some() && installed.as_deref() == entry["version"].as_str()
        })
}

/// Returns the version in `package_dir/package.json`, or `None` when it cannot be read.
fn installed_version(package_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(package_dir.join("package.json")).ok()?;
    let manifest: Value = serde_json::from_str(&text).ok()?;
    manifest["version"].as_str().map(str::to_owned)
}
