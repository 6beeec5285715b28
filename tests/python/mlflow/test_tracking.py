"""The MLflow client (mlflow-skinny 3.x) logging to `runledger serve`, as users write it.

Each test reads the values back through the client and checks that the run is an ordinary
runledger run, through `runledger runs show --json` and the native lineage API.
"""

import hashlib
import json
import math
import os
import time

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Metric, ViewType
from mlflow.exceptions import MlflowException, RestException


def test_params_metrics_and_tags_round_trip(experiment, runledger):
    with mlflow.start_run(run_name="train") as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"layers": 3, "optimizer": "adam"})
        for step in range(4):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metric("diverged", float("nan"))
        mlflow.log_metrics({"acc": 0.75, "f1": float("inf")}, step=2)
        mlflow.set_tag("team", "vision")
        mlflow.set_tags({"stage": "dev", "owner": "ana"})

    fetched = MlflowClient().get_run(run.info.run_id)
    assert fetched.info.status == "FINISHED"
    assert fetched.info.run_name == "train"
    assert fetched.info.experiment_id == experiment.experiment_id
    assert fetched.info.end_time >= fetched.info.start_time
    assert fetched.data.params == {"lr": "0.01", "layers": "3", "optimizer": "adam"}
    assert fetched.data.metrics["loss"] == 0.25
    assert math.isnan(fetched.data.metrics["diverged"])
    assert fetched.data.metrics["acc"] == 0.75
    assert fetched.data.metrics["f1"] == math.inf
    assert fetched.data.tags["team"] == "vision"
    assert fetched.data.tags["owner"] == "ana"
    assert fetched.data.tags["mlflow.runName"] == "train"

    shown = runledger("runs", "show", run.info.run_id, "--json")
    assert shown["run"]["status"] == "succeeded"
    assert shown["run"]["source"] == "external"
    assert shown["run"]["name"] == "train"
    assert shown["project"]["name"] == experiment.name
    assert shown["params"]["optimizer"] == "adam"
    assert shown["tags"]["stage"] == "dev"
    latest = {point["key"]: point for point in shown["latest_metrics"]}
    assert latest["loss"]["value"] == 0.25
    assert latest["loss"]["step"] == 3


def test_metric_history_keeps_every_step(experiment):
    with mlflow.start_run() as run:
        for step in range(30):
            mlflow.log_metric("loss", 100.0 - step, step=step)

    history = MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [point.step for point in history] == list(range(30))
    assert [point.value for point in history] == [100.0 - step for step in range(30)]


def test_metric_history_pages(experiment, tracking_uri, auth_headers):
    with mlflow.start_run() as run:
        mlflow.log_metrics({"x": 0.0}, step=0)
        for step in range(1, 25):
            mlflow.log_metric("x", float(step), step=step)

    steps = []
    token = None
    pages = 0
    while True:
        query = {"run_id": run.info.run_id, "metric_key": "x", "max_results": 10}
        if token:
            query["page_token"] = token
        response = requests.get(
            f"{tracking_uri}/api/2.0/mlflow/metrics/get-history",
            params=query,
            headers=auth_headers,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        steps.extend(point["step"] for point in body["metrics"])
        pages += 1
        token = body.get("next_page_token")
        if not token:
            break
    assert pages == 3
    assert steps == list(range(25))


def test_nested_runs_record_their_parent(experiment):
    with mlflow.start_run(run_name="sweep") as parent:
        for lr in (0.1, 0.01):
            with mlflow.start_run(run_name=f"lr-{lr}", nested=True):
                mlflow.log_param("lr", lr)

    children = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["params.lr ASC"],
        output_format="list",
    )
    assert [child.info.run_name for child in children] == ["lr-0.01", "lr-0.1"]
    assert all(child.info.status == "FINISHED" for child in children)


def test_search_filters_orders_and_pages(experiment):
    for index in range(7):
        with mlflow.start_run(run_name=f"trial-{index}"):
            mlflow.log_param("parity", "even" if index % 2 == 0 else "odd")
            mlflow.log_metric("score", float(index))

    client = MlflowClient()
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string="params.parity = 'even' and metrics.score >= 2",
        order_by=["metrics.score DESC"],
    )
    assert [run.info.run_name for run in found] == ["trial-6", "trial-4", "trial-2"]

    names = []
    token = None
    pages = 0
    while True:
        page = client.search_runs(
            [experiment.experiment_id],
            order_by=["metrics.`score` ASC"],
            max_results=3,
            page_token=token,
        )
        names.extend(run.info.run_name for run in page)
        pages += 1
        token = page.token
        if not token:
            break
    assert pages == 3
    assert names == [f"trial-{index}" for index in range(7)]

    like = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string="attributes.run_name LIKE 'trial-1%' and attributes.status = 'FINISHED'",
        output_format="list",
    )
    assert [run.info.run_name for run in like] == ["trial-1"]


def test_artifacts_upload_list_and_download(experiment, tmp_path, runledger):
    model = tmp_path / "model.bin"
    model.write_bytes(bytes(range(256)) * 64)
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "a.txt").write_text("first report")
    (reports / "b.txt").write_text("second report")

    with mlflow.start_run() as run:
        mlflow.log_artifact(str(model))
        mlflow.log_artifacts(str(reports), artifact_path="reports")
        mlflow.log_text("hello runledger", "notes/hello.txt")
        mlflow.log_dict({"layers": [64, 32]}, "config.json")

    client = MlflowClient()
    top = {(item.path, item.is_dir) for item in client.list_artifacts(run.info.run_id)}
    assert top == {
        ("model.bin", False),
        ("reports", True),
        ("notes", True),
        ("config.json", False),
    }
    listed = client.list_artifacts(run.info.run_id, "reports")
    assert [(item.path, item.file_size) for item in listed] == [
        ("reports/a.txt", 12),
        ("reports/b.txt", 13),
    ]

    text_path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="notes/hello.txt", dst_path=str(tmp_path / "one")
    )
    with open(text_path) as text:
        assert text.read() == "hello runledger"
    everything = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, dst_path=str(tmp_path / "all")
    )
    with open(os.path.join(everything, "model.bin"), "rb") as downloaded:
        assert downloaded.read() == model.read_bytes()
    with open(os.path.join(everything, "config.json")) as config:
        assert json.load(config) == {"layers": [64, 32]}
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/reports/b.txt") == "second report"

    shown = runledger("runs", "show", run.info.run_id, "--json")
    digests = {item["link"]["name"]: item["link"]["digest"] for item in shown["artifacts"]}
    assert digests["model.bin"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert digests["notes/hello.txt"] == hashlib.sha256(b"hello runledger").hexdigest()
    assert set(digests) == {
        "model.bin",
        "reports/a.txt",
        "reports/b.txt",
        "notes/hello.txt",
        "config.json",
    }


def test_log_input_becomes_lineage(experiment, tracking_uri, runledger, auth_headers):
    dataset = MetaDataset(
        source=HTTPDatasetSource("http://127.0.0.1/datasets/train.csv"), name="train-set"
    )
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")

    fetched = MlflowClient().get_run(run.info.run_id)
    inputs = fetched.inputs.dataset_inputs
    assert len(inputs) == 1
    assert inputs[0].dataset.name == "train-set"
    assert inputs[0].dataset.digest == dataset.digest
    assert inputs[0].dataset.source_type == "http"
    assert {tag.key: tag.value for tag in inputs[0].tags} == {"mlflow.data.context": "training"}

    response = requests.get(
        f"{tracking_uri}/api/v1/runs/{run.info.run_id}/lineage",
        headers=auth_headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    node_id = f"mlflow/train-set@{dataset.digest}"
    edges = [(edge["source"], edge["target"]) for edge in body["edges"]]
    assert edges == [
        (
            {"kind": "named_dataset", "id": node_id},
            {"kind": "run", "id": run.info.run_id},
        )
    ], body
    shown = runledger("runs", "show", run.info.run_id, "--json")
    assert shown["run"]["id"] == run.info.run_id


def test_changing_a_param_is_rejected(experiment):
    with mlflow.start_run():
        mlflow.log_param("seed", 1)
        with pytest.raises(MlflowException) as raised:
            mlflow.log_param("seed", 2)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"


def test_unknown_run_fails_fast_without_retries(tracking_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    started = time.monotonic()
    with pytest.raises(RestException) as raised:
        MlflowClient().get_run("01234567-89ab-7def-8123-456789abcdef")
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert time.monotonic() - started < 5


def test_deleted_runs_leave_searches_until_restored(experiment):
    with mlflow.start_run(run_name="keep"):
        pass
    with mlflow.start_run(run_name="drop") as dropped:
        pass
    client = MlflowClient()
    client.delete_run(dropped.info.run_id)

    def names(view):
        runs = client.search_runs([experiment.experiment_id], run_view_type=view)
        return sorted(run.info.run_name for run in runs)

    assert names(ViewType.ACTIVE_ONLY) == ["keep"]
    assert names(ViewType.DELETED_ONLY) == ["drop"]
    assert client.get_run(dropped.info.run_id).info.lifecycle_stage == "deleted"
    writes = [
        lambda: client.log_param(dropped.info.run_id, "late", "1"),
        lambda: client.log_metric(dropped.info.run_id, "late", 1.0),
        lambda: client.log_batch(dropped.info.run_id, metrics=[Metric("late", 1.0, 0, 0)]),
    ]
    for write in writes:
        # The client rewraps a refused param as a plain MlflowException with the same code.
        with pytest.raises(MlflowException) as raised:
            write()
        assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
        assert "restore" in raised.value.message, raised.value.message
    assert client.get_metric_history(dropped.info.run_id, "late") == []

    client.restore_run(dropped.info.run_id)
    assert names(ViewType.ACTIVE_ONLY) == ["drop", "keep"]
    client.log_metric(dropped.info.run_id, "late", 2.0)
    assert client.get_run(dropped.info.run_id).data.metrics["late"] == 2.0


def test_ended_runs_accept_late_values(experiment):
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 0.5, step=0)
    client = MlflowClient()
    client.log_metric(run.info.run_id, "loss", 0.25, step=1)
    client.set_tag(run.info.run_id, "reviewed", "yes")
    fetched = client.get_run(run.info.run_id)
    assert fetched.info.status == "FINISHED"
    assert fetched.data.metrics["loss"] == 0.25
    assert fetched.data.tags["reviewed"] == "yes"


def test_experiments_lifecycle(tracking_uri):
    client = MlflowClient()
    default = client.get_experiment_by_name("Default")
    assert default.experiment_id == "0"

    name = f"life-{time.time_ns()}"
    experiment_id = client.create_experiment(name, tags={"owner": "ana"})
    with pytest.raises(MlflowException) as raised:
        client.create_experiment(name)
    assert raised.value.error_code == "RESOURCE_ALREADY_EXISTS"

    experiment = client.get_experiment(experiment_id)
    assert experiment.name == name
    assert experiment.tags == {"owner": "ana"}
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment_id}"

    client.set_experiment_tag(experiment_id, "stage", "prod")
    client.rename_experiment(experiment_id, name + "-renamed")
    found = client.search_experiments(filter_string=f"name = '{name}-renamed'")
    assert [item.experiment_id for item in found] == [experiment_id]
    assert found[0].tags == {"owner": "ana", "stage": "prod"}

    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    deleted = client.search_experiments(view_type=ViewType.DELETED_ONLY)
    assert experiment_id in [item.experiment_id for item in deleted]
    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"


def test_unknown_route_is_endpoint_not_found(tracking_uri, auth_headers):
    response = requests.get(
        f"{tracking_uri}/api/2.0/mlflow/no-such-route", headers=auth_headers, timeout=10
    )
    assert response.status_code == 404
    assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    info = requests.get(
        f"{tracking_uri}/api/3.0/mlflow/server-info", headers=auth_headers, timeout=10
    )
    assert info.status_code == 200
    assert info.json()["multipart_uploads_enabled"] is False
