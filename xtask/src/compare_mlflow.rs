//! The venv of `cargo xtask bench compare-mlflow`: `target/bench-venv` with MLflow's full
//! tracking server, apart from the tests' venv, which has only the client (`mlflow-skinny`).

use crate::run;
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// MLflow's version, the same release as the `mlflow-skinny` client of the tests.
const MLFLOW_VERSION: &str = "3.17.2";

/// Path of the venv, relative to the repository root.
const VENV_DIR: &str = "target/bench-venv";

/// Creates `target/bench-venv` if it is missing and installs `mlflow` at [`MLFLOW_VERSION`]
/// unless that version is installed, printing how long the installation took.
pub(crate) fn ensure_venv(root: &Path) -> Result<()> {
    let venv = root.join(VENV_DIR);
    let python = venv.join("bin/python");
    if installed_version(&python).as_deref() == Some(MLFLOW_VERSION) {
        return Ok(());
    }
    let started = Instant::now();
    if !python.is_file() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv)).context(
            "cannot create the benchmark's Python venv: install Python 3.10 or later with its \
             venv module (Debian: apt-get install python3-venv)",
        )?;
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("mlflow=={MLFLOW_VERSION}")))?;
    eprintln!(
        "xtask: installed mlflow {MLFLOW_VERSION} into {} in {:.0} s",
        venv.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Returns the version of the `mlflow` package in the venv, or `None` when the venv or the
/// package is missing.
fn installed_version(python: &Path) -> Option<String> {
    let output = Command::new(python)
        .args(["-m", "pip", "show", "--disable-pip-version-check", "mlflow"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("Version:"))
        .map(|version| version.trim().to_owned())
}
