"""Errors of `runledger serve` in MLflow's shape, as the MLflow client raises them: access
control, MLflow's key-name rule and model version stages."""

import json
import os
import subprocess
import time
import uuid

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import RestException


def create_token(role):
    """Creates a token with `runledger tokens create` and returns it."""
    base = json.loads(os.environ["RUNLEDGER_MLFLOW_TEST_COMMAND"])
    name = f"errors-{role}-{uuid.uuid4().hex[:8]}"
    completed = subprocess.run(
        base + ["tokens", "create", "--name", name, "--role", role],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip()


def test_missing_token_is_unauthenticated_without_retries(tracking_uri, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    started = time.monotonic()
    with pytest.raises(RestException) as raised:
        MlflowClient().search_experiments()
    assert raised.value.error_code == "UNAUTHENTICATED"
    assert "bearer token" in raised.value.message
    assert time.monotonic() - started < 5

    response = requests.post(f"{tracking_uri}/api/2.0/mlflow/runs/search", json={}, timeout=10)
    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHENTICATED"


def test_unknown_token_is_unauthenticated(tracking_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "not-a-token")
    with pytest.raises(RestException) as raised:
        MlflowClient().get_experiment("0")
    assert raised.value.error_code == "UNAUTHENTICATED"


def test_viewer_reads_but_cannot_write(experiment, monkeypatch):
    with mlflow.start_run() as run:
        mlflow.log_param("seed", "1")
    viewer = create_token("viewer")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", viewer)
    client = MlflowClient()

    assert client.get_run(run.info.run_id).data.params == {"seed": "1"}
    found = client.search_runs([experiment.experiment_id])
    assert [item.info.run_id for item in found] == [run.info.run_id]
    started = time.monotonic()
    with pytest.raises(RestException) as raised:
        client.create_run(experiment.experiment_id)
    assert raised.value.error_code == "PERMISSION_DENIED"
    assert "viewer" in raised.value.message
    assert time.monotonic() - started < 5
    with pytest.raises(RestException) as raised:
        client.set_tag(run.info.run_id, "reviewed", "yes")
    assert raised.value.error_code == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    "route, body",
    [
        ("runs/log-parameter", {"key": "a=b", "value": "1"}),
        ("runs/log-parameter", {"key": "../up", "value": "1"}),
        ("runs/set-tag", {"key": "/abs", "value": "1"}),
        ("runs/set-tag", {"key": "a//b", "value": "1"}),
        (
            "runs/log-metric",
            {"key": "loss!", "value": 1.0, "timestamp": 1, "step": 0},
        ),
        ("runs/log-batch", {"params": [{"key": "p*", "value": "1"}]}),
    ],
)
def test_bad_keys_are_invalid(experiment, tracking_uri, auth_headers, route, body):
    with mlflow.start_run() as run:
        pass
    request = dict(body, run_id=run.info.run_id)
    response = requests.post(
        f"{tracking_uri}/api/2.0/mlflow/{route}", json=request, headers=auth_headers, timeout=10
    )
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error_code"] == "INVALID_PARAMETER_VALUE"
    key = body.get("key") or body["params"][0]["key"]
    assert key in error["message"]
    assert MlflowClient().get_run(run.info.run_id).data.params == {}


def test_keys_mlflow_allows_are_accepted(experiment):
    keys = ["val loss", "train/loss", "a.b-c_d", "step:1"]
    with mlflow.start_run() as run:
        for key in keys:
            mlflow.log_param(key, "1")
    assert sorted(MlflowClient().get_run(run.info.run_id).data.params) == sorted(keys)


def test_stage_transition_points_to_aliases(experiment, tmp_path):
    client = MlflowClient()
    name = f"stages-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    with mlflow.start_run() as run:
        mlflow.log_text("weights", "model.txt")
    client.create_model_version(name, f"runs:/{run.info.run_id}/model.txt", run.info.run_id)

    with pytest.raises(RestException) as raised:
        client.transition_model_version_stage(name, "1", "Production")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "set_registered_model_alias" in raised.value.message
    assert client.get_model_version(name, "1").current_stage == "None"
