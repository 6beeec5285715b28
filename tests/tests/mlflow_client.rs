//! The official MLflow client (mlflow-skinny 3.x) against `runledger serve`, on SQLite and on
//! a fresh PostgreSQL database: this test starts the server and runs the pytest suite in
//! `tests/python/mlflow` with `MLFLOW_TRACKING_URI` pointing at it.
//!
//! The server requires bearer tokens, so approvals can come from another identity than the
//! requester: the client logs with an admin token (`MLFLOW_TRACKING_TOKEN`), and the registry
//! scenarios approve promotions with an approver token
//! (`RUNLEDGER_MLFLOW_APPROVER_TOKEN`).
//!
//! Needs `cargo build -p runledger --bin runledger`, `cargo xtask build-plugins` and the Python
//! venv from `cargo xtask setup` (which installs mlflow-skinny and pytest); run with
//! `cargo test -p runledger-tests --test mlflow_client`.

use runledger_tests::server::ServerProcess;
use runledger_tests::{Backend, Cli, python_venv, workspace_root};
use std::process::Command;

/// Runs the suite against a server on `backend` and fails with pytest's report.
fn run_suite(backend: Backend) {
    let python = python_venv().join("bin/python");
    let cli = Cli::new(backend);
    let admin_token = create_token(&cli, "mlflow-suite", "admin");
    let approver_token = create_token(&cli, "mlflow-approver", "approver");
    let server = ServerProcess::start(&cli, &[]);

    // The suite runs the binary itself, with the server's data directory and database.
    let base = cli.command(&[]);
    let mut command_line = vec![base.get_program().to_string_lossy().into_owned()];
    command_line.extend(
        base.get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    let command_json = serde_json::to_string(&command_line).expect("command line as JSON");

    let scratch = tempfile::tempdir().expect("scratch directory");
    let output = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(workspace_root().join("tests/python/mlflow"))
        .current_dir(scratch.path())
        .env("MLFLOW_TRACKING_URI", server.url())
        .env("RUNLEDGER_MLFLOW_TEST_COMMAND", command_json)
        .env("MLFLOW_TRACKING_TOKEN", &admin_token)
        .env("RUNLEDGER_MLFLOW_APPROVER_TOKEN", &approver_token)
        // The client would otherwise send usage reports to a remote host.
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("HOME", scratch.path())
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .env_remove("MLFLOW_EXPERIMENT_ID")
        .env_remove("MLFLOW_RUN_ID")
        .output()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", python.display()));

    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the MLflow client suite failed on {backend:?}:\n{report}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
    assert!(
        report.contains(" passed"),
        "pytest ran no test on {backend:?}:\n{report}"
    );
}

/// Creates a token with `runledger tokens create` and returns it.
fn create_token(cli: &Cli, name: &str, role: &str) -> String {
    let output = cli
        .command(&["tokens", "create", "--name", name, "--role", role])
        .output()
        .expect("runledger tokens create starts");
    assert!(
        output.status.success(),
        "runledger tokens create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    stdout.trim().to_owned()
}

#[test]
fn mlflow_client_suite_sqlite() {
    run_suite(Backend::Sqlite);
}

#[test]
fn mlflow_client_suite_postgres() {
    run_suite(Backend::Postgres);
}
