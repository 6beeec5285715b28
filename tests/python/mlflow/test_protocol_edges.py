"""Edges of the MLflow protocol: lineage of proxied artifacts, canonical experiment ids,
case-sensitive experiment names, length limits in characters and out-of-range integers."""

import hashlib
import uuid

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

I64_MAX = 2**63 - 1


def post(tracking_uri, auth_headers, route, body):
    """Posts `body` to an MLflow route and returns the response."""
    return requests.post(
        f"{tracking_uri}/api/2.0/mlflow/{route}", json=body, headers=auth_headers, timeout=10
    )


def assert_invalid(response, *fragments):
    """Checks that `response` is a 400 INVALID_PARAMETER_VALUE whose message contains each of
    `fragments`."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE", body
    for fragment in fragments:
        assert fragment in body["message"], body


def test_proxied_artifact_has_lineage(experiment, tmp_path, tracking_uri, runledger, auth_headers):
    content = f"weights {uuid.uuid4()}".encode()
    model = tmp_path / "model.bin"
    model.write_bytes(content)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(model))
    digest = hashlib.sha256(content).hexdigest()

    upstream = runledger("lineage", digest, "--upstream", "--format", "json")
    nodes = [(node["kind"], node["id"]) for node in upstream["nodes"]]
    assert ("run", run.info.run_id) in nodes, upstream

    response = requests.get(
        f"{tracking_uri}/api/v1/runs/{run.info.run_id}/lineage",
        headers=auth_headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    edges = [(edge["source"], edge["target"]) for edge in response.json()["edges"]]
    expected = ({"kind": "run", "id": run.info.run_id}, {"kind": "artifact", "id": digest})
    assert expected in edges, edges


def test_uploading_same_artifact_twice_keeps_one_edge(
    experiment, tmp_path, tracking_uri, auth_headers
):
    content = f"report {uuid.uuid4()}".encode()
    report = tmp_path / "report.txt"
    report.write_bytes(content)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(report))
        mlflow.log_artifact(str(report))
    digest = hashlib.sha256(content).hexdigest()

    response = requests.get(
        f"{tracking_uri}/api/v1/runs/{run.info.run_id}/lineage",
        headers=auth_headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    edges = response.json()["edges"]
    targets = [edge for edge in edges if edge["target"]["id"] == digest]
    assert len(targets) == 1, edges


@pytest.mark.parametrize("alias", ["01", " 1", "+1", "00", "-0"])
def test_non_canonical_experiment_id_is_not_found(tracking_uri, alias):
    MlflowClient().get_experiment("0")
    with pytest.raises(RestException) as raised:
        MlflowClient().get_experiment(alias)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert f"'{alias}'" in raised.value.message


def test_canonical_experiment_id_resolves(experiment):
    fetched = MlflowClient().get_experiment(experiment.experiment_id)
    assert fetched.name == experiment.name
    assert MlflowClient().get_experiment("0").name == "Default"


def test_experiment_names_are_case_sensitive(tracking_uri):
    client = MlflowClient()
    with pytest.raises(RestException) as raised:
        client.create_experiment("default")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "'default'" in raised.value.message
    assert "Default" in raised.value.message
    assert client.get_experiment_by_name("default") is None
    assert client.get_experiment_by_name("Default").experiment_id == "0"

    name = f"Case-{uuid.uuid4().hex[:8]}"
    upper = client.create_experiment(name)
    lower = client.create_experiment(name.lower())
    assert upper != lower
    assert client.get_experiment_by_name(name).experiment_id == upper
    assert client.get_experiment_by_name(name.lower()).experiment_id == lower


def test_limits_count_characters(experiment):
    client = MlflowClient()
    run = client.create_run(experiment.experiment_id)
    run_id = run.info.run_id

    client.log_param(run_id, "accented", "é" * 6000)
    client.set_tag(run_id, "accented", "é" * 8000)
    client.log_param(run_id, "k" + "é" * 249, "v")
    params = client.get_run(run_id).data.params
    assert params["accented"] == "é" * 6000
    assert params["k" + "é" * 249] == "v"
    assert client.get_run(run_id).data.tags["accented"] == "é" * 8000


@pytest.mark.parametrize(
    "kind, key, value, message",
    [
        ("param", "long", "é" * 6001, "is 6001 characters long; the limit is 6000: shorten it"),
        ("tag", "long", "é" * 8001, "is 8001 characters long; the limit is 8000: shorten it"),
        ("param", "é" * 251, "v", "is 251 characters long; the limit is 250: shorten it"),
    ],
)
def test_limits_reject_one_character_more(experiment, kind, key, value, message):
    client = MlflowClient()
    run_id = client.create_run(experiment.experiment_id).info.run_id
    log = client.log_param if kind == "param" else client.set_tag
    with pytest.raises(MlflowException) as raised:
        log(run_id, key, value)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert message in raised.value.message


@pytest.mark.parametrize(
    "field, raw",
    [("step", "9223372036854775808"), ("timestamp", "1e20"), ("step", "-1e19")],
)
def test_log_metric_rejects_out_of_range_integers(
    experiment, tracking_uri, auth_headers, field, raw
):
    run_id = MlflowClient().create_run(experiment.experiment_id).info.run_id
    # The body is written by hand because Python's JSON encoder would not keep `raw` as given.
    fields = {"run_id": f'"{run_id}"', "key": '"loss"', "value": "1.0", "timestamp": "1"}
    fields["step"] = "0"
    fields[field] = raw
    body = "{" + ", ".join(f'"{key}": {value}' for key, value in fields.items()) + "}"
    response = requests.post(
        f"{tracking_uri}/api/2.0/mlflow/runs/log-metric",
        data=body,
        headers={**auth_headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert_invalid(response, f"`{field}`")
    assert MlflowClient().get_metric_history(run_id, "loss") == []


def test_log_metric_accepts_int64_bounds(experiment, tracking_uri, auth_headers):
    run_id = MlflowClient().create_run(experiment.experiment_id).info.run_id
    for step in [I64_MAX, -(2**63)]:
        response = post(
            tracking_uri,
            auth_headers,
            "runs/log-metric",
            {"run_id": run_id, "key": "loss", "value": 1.0, "timestamp": 1, "step": step},
        )
        assert response.status_code == 200, response.text
    steps = {metric.step for metric in MlflowClient().get_metric_history(run_id, "loss")}
    assert steps == {I64_MAX, -(2**63)}


def test_search_rejects_out_of_range_max_results(tracking_uri, auth_headers):
    response = requests.post(
        f"{tracking_uri}/api/2.0/mlflow/experiments/search",
        data='{"max_results": 1e30}',
        headers={**auth_headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert_invalid(response, "`max_results`")
    assert str(I64_MAX) not in response.json()["message"]


def test_type_error_names_top_level_field(experiment, tracking_uri, auth_headers):
    run_id = MlflowClient().create_run(experiment.experiment_id).info.run_id
    response = post(
        tracking_uri,
        auth_headers,
        "runs/log-metric",
        {"run_id": run_id, "key": "loss", "value": "abc", "timestamp": 1},
    )
    assert_invalid(response, "parameter `value`", "abc")

    response = post(tracking_uri, auth_headers, "runs/log-parameter", {"run_id": [1], "key": "a"})
    assert_invalid(response, "parameter `run_id`")
