"""MLflow 3 logged models through the official client (mlflow-skinny 3.x) against
`runledger serve`.

The tests cover creation, finalization, params, tags, metrics logged with a model id, and
search with filters, ordering and pages. They also cover artifacts through the proxy, the
links between runs and models that runledger records in its lineage graph, and registering
logged models as model versions.
"""

import hashlib
import json
import os
import time
import uuid

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.exceptions import MlflowException, RestException


def lineage_edges(tracking_uri, auth_headers, run_id):
    """Returns the (source, target) pairs of the lineage edges a run recorded."""
    response = requests.get(
        f"{tracking_uri}/api/v1/runs/{run_id}/lineage", headers=auth_headers, timeout=10
    )
    assert response.status_code == 200, response.text
    ends = [(edge["source"], edge["target"]) for edge in response.json()["edges"]]
    return [
        ((source["kind"], source["id"]), (target["kind"], target["id"]))
        for source, target in ends
    ]


def test_initialized_model_is_finalized_and_linked(
    experiment, tracking_uri, auth_headers, runledger
):
    with mlflow.start_run() as run:
        model = mlflow.initialize_logged_model(
            name="classifier",
            model_type="sklearn",
            tags={"team": "vision"},
            params={"alpha": "0.5"},
        )
        mlflow.log_outputs([LoggedModelOutput(model.model_id, step=3)])

    assert model.model_id.startswith("m-")
    assert model.status == LoggedModelStatus.PENDING
    assert model.experiment_id == experiment.experiment_id
    assert model.source_run_id == run.info.run_id
    assert model.artifact_location == (
        f"mlflow-artifacts:/{experiment.experiment_id}/models/{model.model_id}/artifacts"
    )

    finalized = MlflowClient().finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    assert finalized.status == LoggedModelStatus.READY
    fetched = mlflow.get_logged_model(model.model_id)
    assert fetched.name == "classifier"
    assert fetched.model_type == "sklearn"
    assert fetched.status == LoggedModelStatus.READY
    assert fetched.params == {"alpha": "0.5"}
    assert fetched.tags["team"] == "vision"
    assert fetched.last_updated_timestamp >= fetched.creation_timestamp

    outputs = MlflowClient().get_run(run.info.run_id).outputs.model_outputs
    assert [(output.model_id, output.step) for output in outputs] == [(model.model_id, 3)]
    [searched] = MlflowClient().search_runs([experiment.experiment_id])
    assert [output.model_id for output in searched.outputs.model_outputs] == [model.model_id]
    edges = lineage_edges(tracking_uri, auth_headers, run.info.run_id)
    assert edges == [
        (("run", run.info.run_id), ("named_dataset", f"mlflow-models/{model.model_id}"))
    ]
    shown = runledger("runs", "show", run.info.run_id, "--json")
    assert shown["run"]["id"] == run.info.run_id


def test_finalize_as_failed(experiment):
    model = mlflow.initialize_logged_model(name="broken")
    failed = MlflowClient().finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
    assert failed.status == LoggedModelStatus.FAILED
    assert mlflow.get_logged_model(model.model_id).status == LoggedModelStatus.FAILED


def test_metrics_with_model_id_reach_model_and_run(
    experiment, tracking_uri, auth_headers, runledger
):
    dataset = MetaDataset(
        source=HTTPDatasetSource("http://127.0.0.1/datasets/eval.csv"), name="eval-set"
    )
    with mlflow.start_run() as run:
        model = mlflow.initialize_logged_model(name="scored")
        mlflow.log_metric("acc", 0.75, step=0, model_id=model.model_id)
        mlflow.log_metric("acc", 0.5, step=1, model_id=model.model_id, dataset=dataset)
        mlflow.log_metrics({"f1": 0.25, "loss": 1.5}, step=2, model_id=model.model_id)

    fetched = mlflow.get_logged_model(model.model_id)
    values = sorted((metric.key, metric.step, metric.value) for metric in fetched.metrics)
    assert values == [("acc", 0, 0.75), ("acc", 1, 0.5), ("f1", 2, 0.25), ("loss", 2, 1.5)]
    on_dataset = [metric for metric in fetched.metrics if metric.dataset_name]
    assert [(metric.dataset_name, metric.dataset_digest) for metric in on_dataset] == [
        ("eval-set", dataset.digest)
    ]
    assert {metric.run_id for metric in fetched.metrics} == {run.info.run_id}
    assert {metric.model_id for metric in fetched.metrics} == {model.model_id}

    stored_run = MlflowClient().get_run(run.info.run_id)
    assert stored_run.data.metrics == {"acc": 0.5, "f1": 0.25, "loss": 1.5}
    assert [item.model_id for item in stored_run.inputs.model_inputs] == [model.model_id]
    assert ("named_dataset", f"mlflow-models/{model.model_id}") in [
        source for source, _ in lineage_edges(tracking_uri, auth_headers, run.info.run_id)
    ]
    shown = runledger("runs", "show", run.info.run_id, "--json")
    latest = {point["key"]: point["value"] for point in shown["latest_metrics"]}
    assert latest == {"acc": 0.5, "f1": 0.25, "loss": 1.5}


def test_metric_for_unknown_model_is_rejected(experiment, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with mlflow.start_run() as run:
        with pytest.raises(MlflowException) as raised:
            MlflowClient().log_metric(
                run.info.run_id, "acc", 0.5, model_id="m-00000000000000000000000000000000"
            )
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert MlflowClient().get_run(run.info.run_id).data.metrics == {}


def test_tags_and_params_change_as_mlflow_allows(experiment):
    model = mlflow.initialize_logged_model(name="tagged", tags={"stage": "dev", "owner": "ana"})
    mlflow.set_logged_model_tags(model.model_id, {"stage": "prod", "reviewed": "yes"})
    mlflow.delete_logged_model_tag(model.model_id, "owner")
    mlflow.log_model_params({"depth": "4", "seed": "7"}, model_id=model.model_id)
    mlflow.log_model_params({"seed": "7"}, model_id=model.model_id)

    fetched = mlflow.get_logged_model(model.model_id)
    assert fetched.tags["stage"] == "prod"
    assert fetched.tags["reviewed"] == "yes"
    assert "owner" not in fetched.tags
    assert fetched.params == {"depth": "4", "seed": "7"}

    with pytest.raises(MlflowException) as missing_tag:
        mlflow.delete_logged_model_tag(model.model_id, "owner")
    assert missing_tag.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as changed:
        mlflow.log_model_params({"seed": "8"}, model_id=model.model_id)
    assert changed.value.error_code == "INVALID_PARAMETER_VALUE"
    assert mlflow.get_logged_model(model.model_id).params["seed"] == "7"


def test_many_params_are_sent_in_batches(experiment):
    params = {f"p{index:03d}": str(index) for index in range(150)}
    model = mlflow.initialize_logged_model(name="wide", params=params)
    assert mlflow.get_logged_model(model.model_id).params == params


def test_search_filters_orders_and_pages(experiment):
    created = []
    with mlflow.start_run():
        for index in range(5):
            parity = "even" if index % 2 == 0 else "odd"
            model = mlflow.initialize_logged_model(
                name=f"cand-{index}", tags={"parity": parity}, params={"idx": str(index)}
            )
            mlflow.log_metric("score", float(index), model_id=model.model_id)
            created.append((model, index, parity))
    other = mlflow.initialize_logged_model(name="other-kind", model_type="agent")
    MlflowClient().finalize_logged_model(other.model_id, LoggedModelStatus.READY)

    found = mlflow.search_logged_models(
        filter_string="tags.parity = 'even' AND metrics.score >= 1",
        order_by=[{"field_name": "metrics.score", "ascending": False}],
        output_format="list",
    )
    matching = [(model.name, index) for model, index, parity in created if parity == "even"]
    expected = sorted((item for item in matching if item[1] >= 1), key=lambda item: -item[1])
    assert [model.name for model in found] == [name for name, _ in expected]

    by_param = mlflow.search_logged_models(filter_string="params.idx = '3'", output_format="list")
    assert [model.model_id for model in by_param] == [created[3][0].model_id]
    by_name = mlflow.search_logged_models(
        filter_string="name LIKE 'cand-%' AND status = 'PENDING'", output_format="list"
    )
    assert len(by_name) == len(created)
    by_type = mlflow.search_logged_models(
        filter_string="model_type = 'agent' AND status = 'READY'", output_format="list"
    )
    assert [model.model_id for model in by_type] == [other.model_id]

    client = MlflowClient()
    oldest_first = [{"field_name": "creation_time", "ascending": True}]
    pages, token = [], None
    while True:
        page = client.search_logged_models(
            [experiment.experiment_id], max_results=2, order_by=oldest_first, page_token=token
        )
        pages.append([model.model_id for model in page])
        token = page.token
        if not token:
            break
    all_ids = [model.model_id for model, _, _ in created] + [other.model_id]
    assert [len(page) for page in pages] == [2, 2, 2]
    assert [model_id for page in pages for model_id in page] == all_ids

    newest_first = client.search_logged_models([experiment.experiment_id])
    assert sorted(model.model_id for model in newest_first) == sorted(all_ids)
    stamps = [model.creation_timestamp for model in newest_first]
    assert stamps == sorted(stamps, reverse=True)


def test_search_with_datasets_keeps_models_measured_on_them(experiment):
    holdout = MetaDataset(source=HTTPDatasetSource("http://127.0.0.1/holdout.csv"), name="holdout")
    with mlflow.start_run():
        measured = mlflow.initialize_logged_model(name="measured")
        unmeasured = mlflow.initialize_logged_model(name="unmeasured")
        mlflow.log_metric("acc", 0.9, model_id=measured.model_id, dataset=holdout)
        mlflow.log_metric("acc", 0.95, model_id=unmeasured.model_id)

    on_holdout = mlflow.search_logged_models(
        datasets=[{"dataset_name": "holdout"}], output_format="list"
    )
    assert [model.model_id for model in on_holdout] == [measured.model_id]
    high_on_holdout = mlflow.search_logged_models(
        filter_string="metrics.acc > 0.92",
        datasets=[{"dataset_name": "holdout", "dataset_digest": holdout.digest}],
        output_format="list",
    )
    assert high_on_holdout == []
    high_anywhere = mlflow.search_logged_models(
        filter_string="metrics.acc > 0.92", output_format="list"
    )
    assert [model.model_id for model in high_anywhere] == [unmeasured.model_id]


def test_search_rejects_invalid_queries(experiment, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient()
    invalid = [
        {"filter_string": "size = 'big'"},
        {"filter_string": "metrics.acc LIKE '1%'"},
        {"order_by": [{"field_name": "params.lr"}]},
        {"page_token": "not-a-token"},
    ]
    for arguments in invalid:
        with pytest.raises(MlflowException) as raised:
            client.search_logged_models([experiment.experiment_id], **arguments)
        assert raised.value.error_code == "INVALID_PARAMETER_VALUE", arguments


def test_model_artifacts_go_through_the_proxy(experiment, tracking_uri, auth_headers, tmp_path):
    spec = tmp_path / "MLmodel"
    spec.write_text("artifact_path: agent\nflavors: {}\n")
    weights = tmp_path / "weights.bin"
    weights.write_bytes(bytes(range(256)) * 16)
    client = MlflowClient()
    with mlflow.start_run() as run:
        model = mlflow.initialize_logged_model(name="agent", model_type="agent")
        client.log_model_artifact(model.model_id, str(spec))
        client.log_model_artifact(model.model_id, str(weights), artifact_path="data")
        client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)

    assert model.source_run_id == run.info.run_id
    top = {(item.path, item.is_dir) for item in client.list_logged_model_artifacts(model.model_id)}
    assert top == {("MLmodel", False), ("data", True)}

    response = requests.get(
        f"{tracking_uri}/api/2.0/mlflow/logged-models/{model.model_id}/artifacts/directories",
        params={"artifact_directory_path": "data"},
        headers=auth_headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    listing = response.json()
    assert listing["root_uri"] == model.artifact_location
    assert listing["files"] == [
        {"path": "data/weights.bin", "is_dir": False, "file_size": weights.stat().st_size}
    ]

    downloaded = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{model.artifact_location}/data/weights.bin", dst_path=str(tmp_path / "out")
    )
    with open(downloaded, "rb") as file:
        content = file.read()
    assert hashlib.sha256(content).hexdigest() == hashlib.sha256(weights.read_bytes()).hexdigest()

    through_run = mlflow.artifacts.download_artifacts(
        f"runs:/{run.info.run_id}/agent", dst_path=str(tmp_path / "run")
    )
    # The client adds a local `registered_model_meta` file to downloads of `models:/` URIs.
    assert {"MLmodel", "data"} <= set(os.listdir(through_run))
    with open(os.path.join(through_run, "data", "weights.bin"), "rb") as file:
        assert file.read() == weights.read_bytes()


def test_deleted_model_leaves_reads_and_searches(experiment, tracking_uri, auth_headers):
    kept = mlflow.initialize_logged_model(name="kept")
    dropped = mlflow.initialize_logged_model(name="dropped")
    MlflowClient().delete_logged_model(dropped.model_id)

    with pytest.raises(MlflowException) as raised:
        mlflow.get_logged_model(dropped.model_id)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    remaining = mlflow.search_logged_models(output_format="list")
    assert [model.model_id for model in remaining] == [kept.model_id]

    response = requests.get(
        f"{tracking_uri}/api/2.0/mlflow/logged-models/{dropped.model_id}",
        params={"allow_deleted": "true"},
        headers=auth_headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"]["info"]["model_id"] == dropped.model_id


def test_unknown_model_is_resource_does_not_exist(tracking_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    started = time.monotonic()
    with pytest.raises(RestException) as raised:
        MlflowClient().get_logged_model("m-0123456789abcdef0123456789abcdef")
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert time.monotonic() - started < 5


def test_invalid_requests_are_rejected_without_retries(experiment, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient()
    with pytest.raises(MlflowException) as bad_name:
        client.create_logged_model(experiment.experiment_id, name="a/b")
    assert bad_name.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as no_run:
        client.create_logged_model(
            experiment.experiment_id, source_run_id="01234567-89ab-7def-8123-456789abcdef"
        )
    assert no_run.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as no_experiment:
        client.create_logged_model("999999999")
    assert no_experiment.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_model_metadata_is_kept_in_run_history(experiment):
    from mlflow.models.model import Model

    client = MlflowClient()
    with mlflow.start_run() as run:
        for path in ("first", "second"):
            model = Model(artifact_path=path, run_id=run.info.run_id)
            client._record_logged_model(run.info.run_id, model)

    stored = client.get_run(run.info.run_id).data.tags["mlflow.log-model.history"]
    history = json.loads(stored)
    assert [entry["artifact_path"] for entry in history] == ["first", "second"]
    assert {entry["run_id"] for entry in history} == {run.info.run_id}


def log_model_files(tmp_path, with_run=True):
    """Logs a model with the files `MLmodel` and `data/weights.bin`, finalizes it, and returns
    the model, its source run id (or None) and the files' contents by path."""
    files = {
        "MLmodel": b"artifact_path: net\nflavors: {}\n",
        "data/weights.bin": bytes(range(256)) * 4,
    }
    for path, content in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(content)
    client = MlflowClient()
    run_id = None
    if with_run:
        with mlflow.start_run() as run:
            model = mlflow.initialize_logged_model(name="net")
        run_id = run.info.run_id
    else:
        model = mlflow.initialize_logged_model(name="net")
    client.log_model_artifact(model.model_id, str(tmp_path / "MLmodel"))
    client.log_model_artifact(model.model_id, str(tmp_path / "data/weights.bin"), "data")
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return model, run_id, files


def expected_manifest(files):
    """Returns the manifest entries of `files`, sorted by path."""
    return [
        {"path": path, "digest": hashlib.sha256(content).hexdigest(), "size": len(content)}
        for path, content in sorted(files.items())
    ]


def stored_manifest(tracking_uri, auth_headers, digest):
    """Downloads the artifact `digest` through the native API and returns it as JSON."""
    response = requests.get(
        f"{tracking_uri}/api/v1/artifacts/{digest}", headers=auth_headers, timeout=10
    )
    assert response.status_code == 200, response.text
    assert hashlib.sha256(response.content).hexdigest() == digest
    return response.json()


def version_message(tracking_uri, auth_headers, name, version):
    """Returns the `ModelVersion` message of a version as the server sends it. The 3.17 client
    drops `model_id` when it parses the message, so tests read it here."""
    response = requests.get(
        f"{tracking_uri}/api/2.0/mlflow/model-versions/get",
        params={"name": name, "version": version},
        headers=auth_headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def test_register_logged_model_by_id(experiment, tmp_path, tracking_uri, auth_headers, runledger):
    model, run_id, files = log_model_files(tmp_path)
    name = f"logged-{uuid.uuid4().hex[:8]}"

    version = mlflow.register_model(f"models:/{model.model_id}", name)

    assert version.version == "1"
    assert version.source == f"models:/{model.model_id}"
    assert version.run_id == run_id
    assert version_message(tracking_uri, auth_headers, name, 1)["model_id"] == model.model_id
    client = MlflowClient()
    assert client.get_model_version_download_uri(name, "1") == model.artifact_location

    shown = runledger("models", "show", name, "--json")
    [native] = shown["versions"]
    assert native["run_id"] == run_id
    manifest_name = f"mlflow-models/{model.model_id}/runledger-manifests/root.json"
    assert native["artifact_name"] == manifest_name
    manifest = stored_manifest(tracking_uri, auth_headers, native["artifact_digest"])
    assert manifest == {"files": expected_manifest(files)}

    graph = runledger("lineage", native["artifact_digest"], "--format", "json")
    sources = {edge["source"]["id"] for edge in graph["edges"]}
    file_digests = {hashlib.sha256(content).hexdigest() for content in files.values()}
    assert file_digests <= sources, graph
    assert run_id in sources, graph
    assert f"mlflow-models/{model.model_id}" in sources, graph

    # register_model records the new version in the logged model's tags, as MLflow 3 does.
    tagged = json.loads(mlflow.get_logged_model(model.model_id).tags["mlflow.modelVersions"])
    assert tagged == [{"name": name, "version": "1"}]

    downloaded = mlflow.artifacts.download_artifacts(
        f"models:/{name}/1", dst_path=str(tmp_path / "download")
    )
    for path, content in files.items():
        with open(os.path.join(downloaded, path), "rb") as file:
            assert file.read() == content, path


def test_register_logged_model_by_artifact_location(
    experiment, tmp_path, tracking_uri, auth_headers
):
    model, run_id, files = log_model_files(tmp_path)
    name = f"logged-{uuid.uuid4().hex[:8]}"
    client = MlflowClient()
    client.create_registered_model(name)

    whole = client.create_model_version(name, source=model.artifact_location)
    one_file = client.create_model_version(
        name, source=f"{model.artifact_location}/data/weights.bin", run_id=run_id
    )

    assert whole.source == model.artifact_location
    assert whole.run_id == run_id
    message = version_message(tracking_uri, auth_headers, name, whole.version)
    assert message["model_id"] == model.model_id
    assert client.get_model_version_download_uri(name, whole.version) == model.artifact_location
    native = requests.get(
        f"{tracking_uri}/api/v1/models/{name}/versions/{whole.version}",
        headers=auth_headers,
        timeout=10,
    )
    assert native.status_code == 200, native.text
    digest = native.json()["artifact_digest"]
    manifest = stored_manifest(tracking_uri, auth_headers, digest)
    assert manifest == {"files": expected_manifest(files)}

    assert one_file.run_id == run_id
    native = requests.get(
        f"{tracking_uri}/api/v1/models/{name}/versions/{one_file.version}",
        headers=auth_headers,
        timeout=10,
    )
    assert native.status_code == 200, native.text
    weights_digest = hashlib.sha256(files["data/weights.bin"]).hexdigest()
    assert native.json()["artifact_digest"] == weights_digest


def test_register_logged_model_without_run(experiment, tmp_path, tracking_uri, auth_headers):
    model, _, files = log_model_files(tmp_path, with_run=False)
    name = f"logged-{uuid.uuid4().hex[:8]}"

    version = mlflow.register_model(f"models:/{model.model_id}", name)

    assert version.run_id in (None, "")
    assert version_message(tracking_uri, auth_headers, name, 1)["model_id"] == model.model_id
    downloaded = mlflow.artifacts.download_artifacts(
        f"models:/{name}/1", dst_path=str(tmp_path / "download")
    )
    with open(os.path.join(downloaded, "MLmodel"), "rb") as file:
        assert file.read() == files["MLmodel"]


def test_run_path_registers_logged_model_of_run(experiment, tmp_path, tracking_uri, auth_headers):
    # log_model(..., registered_model_name=...) registers runs:/<run_id>/<name>. The run has no
    # files there, so the client looks up the run's logged model of that name and sends
    # models:/<model_id>.
    model, run_id, _ = log_model_files(tmp_path)
    name = f"logged-{uuid.uuid4().hex[:8]}"

    version = mlflow.register_model(f"runs:/{run_id}/{model.name}", name)

    assert version.source == f"models:/{model.model_id}"
    assert version.run_id == run_id
    assert version_message(tracking_uri, auth_headers, name, 1)["model_id"] == model.model_id


def test_register_rejects_unusable_logged_models(experiment, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient()
    name = f"logged-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)

    unknown = "m-0123456789abcdef0123456789abcdef"
    with pytest.raises(MlflowException) as raised:
        client.create_model_version(name, source=f"models:/{unknown}")
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert unknown in raised.value.message

    deleted, _, _ = log_model_files(tmp_path)
    client.delete_logged_model(deleted.model_id)
    with pytest.raises(MlflowException) as raised:
        client.create_model_version(name, source=deleted.artifact_location)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert deleted.model_id in raised.value.message

    empty = mlflow.initialize_logged_model(name="empty")
    with pytest.raises(MlflowException) as raised:
        client.create_model_version(name, source=f"models:/{empty.model_id}")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert empty.model_id in raised.value.message
    assert "log the model's artifacts first" in raised.value.message

    model, _, _ = log_model_files(tmp_path / "other")
    with pytest.raises(MlflowException) as raised:
        client.create_model_version(name, source=f"{model.artifact_location}/missing")
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "missing" in raised.value.message
    assert client.search_model_versions(f"name = '{name}'") == []
