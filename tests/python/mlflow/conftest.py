"""Fixtures of the MLflow client suite.

The Rust test tests/tests/mlflow_client.rs starts `runledger serve` and runs this suite
against it with these environment variables:

- MLFLOW_TRACKING_URI: the server's base URL.
- MLFLOW_TRACKING_TOKEN: an admin token, which the MLflow client sends as a bearer token.
- RUNLEDGER_MLFLOW_APPROVER_TOKEN: a token of role approver, for approving promotions.
- RUNLEDGER_MLFLOW_TEST_COMMAND: a JSON list with the runledger binary and the options that
  select the server's data directory and database, to which a test appends a subcommand.
"""

import json
import os
import subprocess
import uuid

import mlflow
import pytest


@pytest.fixture(scope="session")
def tracking_uri():
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith("http://127.0.0.1:"):
        pytest.fail("MLFLOW_TRACKING_URI must point at a runledger server on 127.0.0.1")
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture
def experiment(tracking_uri):
    """A fresh experiment, set as the active one."""
    name = f"suite-{uuid.uuid4().hex[:8]}"
    created = mlflow.set_experiment(name)
    yield created
    mlflow.end_run()


@pytest.fixture(scope="session")
def runledger():
    """Runs `runledger ARGS` on the server's data directory and database and returns its
    JSON output."""
    base = json.loads(os.environ["RUNLEDGER_MLFLOW_TEST_COMMAND"])

    def run(*args):
        completed = subprocess.run(
            base + list(args), capture_output=True, text=True, timeout=60, check=False
        )
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout)

    return run


@pytest.fixture(scope="session")
def auth_headers():
    """Headers that authenticate a plain HTTP request as the suite's admin token."""
    return {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"}


@pytest.fixture(scope="session")
def approver_headers():
    """Headers that authenticate a plain HTTP request as a token of role approver."""
    return {"Authorization": f"Bearer {os.environ['RUNLEDGER_MLFLOW_APPROVER_TOKEN']}"}
