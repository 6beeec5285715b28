"""The MLflow client's model registry against `runledger serve`: registered models, versions
made from logged artifacts, tags, searches, and aliases that are promotions under runledger's
policies."""

import hashlib
import json
import time
import uuid

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException


def unique_name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def log_model_directory(tmp_path):
    """Logs a directory `model` with an MLmodel file and weights, and returns the run id and the
    files' contents by name."""
    directory = tmp_path / "model"
    directory.mkdir()
    files = {"MLmodel": b"flavors: {}\n", "weights.bin": bytes(range(256)) * 8}
    for name, content in files.items():
        (directory / name).write_bytes(content)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(directory), artifact_path="model")
    return run.info.run_id, files


def log_model_file(tmp_path):
    """Logs one file `model.pkl` and returns the run id and the file's content."""
    content = b"pickled model bytes"
    path = tmp_path / "model.pkl"
    path.write_bytes(content)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(path))
    return run.info.run_id, content


def native_version(tracking_uri, headers, name, version):
    response = requests.get(
        f"{tracking_uri}/api/v1/models/{name}/versions/{version}", headers=headers, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_register_directory_records_manifest(experiment, tmp_path, tracking_uri, auth_headers,
                                             runledger):
    run_id, files = log_model_directory(tmp_path)
    name = unique_name("dir-model")

    version = mlflow.register_model(f"runs:/{run_id}/model", name)

    assert version.version == "1"
    assert version.run_id == run_id
    assert version.status == "READY"
    assert version.source.startswith("mlflow-artifacts:/")
    assert version.source.endswith(f"/{run_id}/artifacts/model")
    client = MlflowClient()
    assert client.get_model_version_download_uri(name, "1") == version.source

    manifest = json.loads(
        mlflow.artifacts.load_text(f"runs:/{run_id}/runledger-manifests/model.json")
    )
    assert manifest == {
        "files": [
            {
                "path": path,
                "digest": hashlib.sha256(content).hexdigest(),
                "size": len(content),
            }
            for path, content in sorted(files.items())
        ]
    }
    manifest_bytes = mlflow.artifacts.load_text(
        f"runs:/{run_id}/runledger-manifests/model.json"
    ).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    native = native_version(tracking_uri, auth_headers, name, 1)
    assert native["artifact_digest"] == manifest_digest
    assert native["artifact_name"] == "runledger-manifests/model.json"

    graph = runledger("lineage", run_id, "--downstream", "--format", "json")
    edges = {
        (edge["source"]["kind"], edge["source"]["id"], edge["target"]["id"])
        for edge in graph["edges"]
    }
    assert ("run", run_id, manifest_digest) in edges, graph
    upstream = runledger("lineage", manifest_digest, "--format", "json")
    sources = {edge["source"]["id"] for edge in upstream["edges"]}
    file_digests = {hashlib.sha256(content).hexdigest() for content in files.values()}
    assert file_digests | {run_id} == sources, upstream


def test_file_version_tags_and_searches(experiment, tmp_path, tracking_uri, auth_headers):
    run_id, content = log_model_file(tmp_path)
    prefix = unique_name("file-model")
    names = [f"{prefix}-a", f"{prefix}-b"]
    client = MlflowClient()
    for model_name in names:
        client.create_registered_model(model_name, tags={"team": "ml"}, description="wine")
    name = names[0]

    created = client.create_model_version(
        name, f"runs:/{run_id}/model.pkl", run_id=run_id, tags={"stage": "candidate"}
    )
    assert created.version == "1"
    assert created.source == f"runs:/{run_id}/model.pkl"
    native = native_version(tracking_uri, auth_headers, name, 1)
    assert native["artifact_digest"] == hashlib.sha256(content).hexdigest()

    client.set_model_version_tag(name, "1", "reviewed", "yes")
    client.delete_model_version_tag(name, "1", "stage")
    fetched = client.get_model_version(name, "1")
    assert fetched.tags == {"reviewed": "yes"}
    client.set_registered_model_tag(name, "owner", "data-team")
    client.delete_registered_model_tag(name, "team")
    client.update_registered_model(name, description="red wine quality")
    model = client.get_registered_model(name)
    assert model.tags == {"owner": "data-team"}
    assert model.description == "red wine quality"
    assert [latest.version for latest in model.latest_versions] == ["1"]

    found = client.search_registered_models(filter_string=f"name LIKE '{prefix}%'")
    assert [item.name for item in found] == names
    ordered = client.search_registered_models(
        filter_string=f"name LIKE '{prefix}%'", order_by=["name DESC"]
    )
    assert [item.name for item in ordered] == names[::-1]
    first_page = client.search_registered_models(
        filter_string=f"name LIKE '{prefix}%'", max_results=1
    )
    assert [item.name for item in first_page] == names[:1]
    assert first_page.token
    second_page = client.search_registered_models(
        filter_string=f"name LIKE '{prefix}%'", max_results=1, page_token=first_page.token
    )
    assert [item.name for item in second_page] == names[1:]
    exact = client.search_registered_models(filter_string=f"name = '{names[1]}'")
    assert [item.name for item in exact] == [names[1]]

    by_name = client.search_model_versions(f"name = '{name}'")
    assert [(item.name, item.version) for item in by_name] == [(name, "1")]
    by_run = client.search_model_versions(f"run_id = '{run_id}'")
    assert [(item.name, item.version) for item in by_run] == [(name, "1")]

    renamed = f"{prefix}-renamed"
    client.rename_registered_model(name, renamed)
    assert client.get_model_version(renamed, "1").source == f"runs:/{run_id}/model.pkl"
    client.delete_model_version(renamed, "1")
    assert client.search_model_versions(f"name = '{renamed}'") == []


def test_alias_without_policies_moves(experiment, tmp_path):
    run_id, _ = log_model_file(tmp_path)
    name = unique_name("alias-model")
    client = MlflowClient()
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model.pkl", run_id=run_id)

    client.set_registered_model_alias(name, "staging", "1")

    assert client.get_model_version_by_alias(name, "staging").version == "1"
    assert client.get_registered_model(name).aliases == {"staging": "1"}
    client.delete_registered_model_alias(name, "staging")
    with pytest.raises(MlflowException) as raised:
        client.get_model_version_by_alias(name, "staging")
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_alias_with_policies_waits_for_approval(experiment, tmp_path, tracking_uri,
                                                auth_headers, approver_headers, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    run_id, _ = log_model_file(tmp_path)
    name = unique_name("gated-model")
    client = MlflowClient()
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model.pkl", run_id=run_id)
    policies = [
        {"plugin": "required-approvals", "config": {"count": 1, "role": "approver"}},
        {"plugin": "validations-passed", "config": {"require-checks": False}},
    ]
    response = requests.put(
        f"{tracking_uri}/api/v1/models/{name}/policies/production",
        json=policies,
        headers=auth_headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text

    started = time.monotonic()
    with pytest.raises(RestException) as raised:
        client.set_registered_model_alias(name, "production", "1")
    assert time.monotonic() - started < 5
    assert raised.value.error_code == "PERMISSION_DENIED"
    message = str(raised.value)
    assert "waits for approvals" in message, message
    assert "required-approvals@0.1.0 needs 1 more approval(s) by role approver" in message
    with pytest.raises(MlflowException) as missing:
        client.get_model_version_by_alias(name, "production")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    approval = requests.post(
        f"{tracking_uri}/api/v1/models/{name}/versions/1/approvals",
        json={"alias": "production", "comment": "metrics look right"},
        headers=approver_headers,
        timeout=60,
    )
    assert approval.status_code == 200, approval.text
    assert approval.json()["status"] == "completed"
    assert client.get_model_version_by_alias(name, "production").version == "1"


def test_denied_alias_names_the_policy(experiment, tmp_path, tracking_uri, auth_headers,
                                       monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    run_id, _ = log_model_file(tmp_path)
    name = unique_name("denied-model")
    client = MlflowClient()
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model.pkl", run_id=run_id)
    policies = [{"plugin": "validations-passed", "config": {"require-checks": True}}]
    response = requests.put(
        f"{tracking_uri}/api/v1/models/{name}/policies/production",
        json=policies,
        headers=auth_headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text

    with pytest.raises(RestException) as raised:
        client.set_registered_model_alias(name, "production", "1")
    assert raised.value.error_code == "PERMISSION_DENIED"
    message = str(raised.value)
    assert "was denied" in message, message
    assert "validations-passed@0.1.0 denied it" in message, message
    assert client.get_registered_model(name).aliases == {}


def test_unknown_model_fails_fast(tracking_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    started = time.monotonic()
    with pytest.raises(RestException) as raised:
        MlflowClient().get_registered_model(unique_name("missing"))
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert time.monotonic() - started < 5


def test_version_of_unknown_path_is_rejected(experiment, tmp_path):
    run_id, _ = log_model_file(tmp_path)
    name = unique_name("bad-path")
    client = MlflowClient()
    client.create_registered_model(name)
    with pytest.raises(MlflowException) as raised:
        client.create_model_version(name, f"runs:/{run_id}/no-such-file", run_id=run_id)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "no-such-file" in str(raised.value)
