//! The Python virtual environment of the tests: `target/venv` with schemathesis (fuzzes the
//! served OpenAPI document), openapi-spec-validator, the OpenLineage Python client, and the
//! MLflow client with pytest and numpy for the MLflow suite in `tests/python/mlflow`.

use crate::run;
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// Packages installed into the venv, pinned so that every test run uses the same versions.
const PINNED: &[(&str, &str)] = &[
    ("schemathesis", "4.32.5"),
    ("openapi-spec-validator", "0.9.0"),
    ("openlineage-python", "1.54.0"),
    ("mlflow-skinny", "3.17.2"),
    ("pytest", "9.2.0"),
    // The MLflow client's dataset classes import numpy, which mlflow-skinny does not install.
    ("numpy", "2.3.5"),
];

/// Path of the venv, relative to the repository root.
const VENV_DIR: &str = "target/venv";

/// Creates `target/venv` if it is missing and installs the pinned packages unless every one is
/// already installed at its pinned version.
pub(crate) fn ensure_venv(root: &Path) -> Result<()> {
    let venv = root.join(VENV_DIR);
    let python = venv.join("bin/python");
    if !python.is_file() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv)).context(
            "cannot create the Python venv: install Python 3.10 or later with its venv module \
             (Debian: apt-get install python3-venv)",
        )?;
    }
    let missing = missing_pins(&python)?;
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(&missing))
}

/// Returns the `name==version` requirements that are not installed at their pinned versions.
fn missing_pins(python: &Path) -> Result<Vec<String>> {
    let output = Command::new(python)
        .args([
            "-m",
            "pip",
            "list",
            "--format=freeze",
            "--disable-pip-version-check",
        ])
        .output()
        .with_context(|| format!("cannot run {} -m pip", python.display()))?;
    let installed = String::from_utf8_lossy(&output.stdout).to_lowercase();
    let installed: Vec<String> = installed
        .lines()
        .map(|line| line.trim().replace('_', "-"))
        .collect();
    Ok(PINNED
        .iter()
        .map(|(name, version)| format!("{name}=={version}"))
        .filter(|pin| !installed.contains(pin))
        .collect())
}
