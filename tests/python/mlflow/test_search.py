"""Run, experiment and registry searches of the MLflow client against `runledger serve`.

Each search checks the exact runs, experiments, models or versions returned and their order,
with the expected order computed from the values read back through the client.
"""

import hashlib
import uuid

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException, RestException


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def search_ids(experiment, filter_string="", **options):
    runs = MlflowClient().search_runs(
        [experiment.experiment_id], filter_string=filter_string, **options
    )
    return [run.info.run_id for run in runs]


def all_pages(fetch):
    """Collects every page of a paged client search, returning the items and page count."""
    items = []
    token = None
    pages = 0
    while True:
        page = fetch(token)
        items.extend(page)
        pages += 1
        token = page.token
        if not token:
            return items, pages


def log_dataset(name, url, context):
    dataset = MetaDataset(source=HTTPDatasetSource(url), name=name)
    mlflow.log_input(dataset, context=context)
    return dataset


def test_runs_filter_on_datasets(experiment):
    with mlflow.start_run() as training:
        train = log_dataset("wine-train", "http://127.0.0.1/d/train.csv", "training")
    with mlflow.start_run() as evaluation:
        log_dataset("wine-eval", "http://127.0.0.1/d/eval.csv", "evaluation")
        log_dataset("wine-train", "http://127.0.0.1/d/train.csv", "training")
    with mlflow.start_run() as bare:
        pass
    both = sorted([training.info.run_id, evaluation.info.run_id])

    assert sorted(search_ids(experiment, "datasets.name = 'wine-train'")) == both
    assert search_ids(experiment, "datasets.name = 'wine-eval'") == [evaluation.info.run_id]
    assert sorted(search_ids(experiment, f"datasets.digest = '{train.digest}'")) == both
    assert search_ids(experiment, "datasets.context = 'evaluation'") == [
        evaluation.info.run_id
    ]
    assert sorted(search_ids(experiment, "datasets.context IN ('training', 'x')")) == both
    assert search_ids(experiment, "datasets.name LIKE 'wine-e%'") == [evaluation.info.run_id]
    assert search_ids(experiment, "datasets.name ILIKE 'WINE-E%'") == [evaluation.info.run_id]
    # A run matches NOT IN and != when one of its datasets is outside the values.
    assert search_ids(experiment, "datasets.name NOT IN ('wine-train')") == [
        evaluation.info.run_id
    ]
    assert search_ids(experiment, "datasets.name != 'wine-train'") == [evaluation.info.run_id]
    assert bare.info.run_id not in search_ids(experiment, "datasets.name != 'x'")
    with pytest.raises(MlflowException) as raised:
        search_ids(experiment, "datasets.schema = 'x'")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"


def test_runs_filter_on_status_and_artifact_uri(experiment):
    client = MlflowClient()
    with mlflow.start_run() as finished:
        pass
    failed = client.create_run(experiment.experiment_id)
    client.set_terminated(failed.info.run_id, status="FAILED")
    running = client.create_run(experiment.experiment_id)
    ids = {
        "FINISHED": finished.info.run_id,
        "FAILED": failed.info.run_id,
        "RUNNING": running.info.run_id,
    }

    assert sorted(search_ids(experiment, "attributes.status LIKE 'F%'")) == sorted(
        [ids["FINISHED"], ids["FAILED"]]
    )
    assert search_ids(experiment, "status ILIKE 'run%'") == [ids["RUNNING"]]
    assert search_ids(experiment, "status LIKE 'run%'") == []
    assert sorted(search_ids(experiment, "status != 'FINISHED'")) == sorted(
        [ids["FAILED"], ids["RUNNING"]]
    )
    assert search_ids(experiment, "status NOT IN ('FINISHED', 'RUNNING')") == [ids["FAILED"]]

    uri = client.get_run(ids["FAILED"]).info.artifact_uri
    assert search_ids(experiment, f"attributes.artifact_uri = '{uri}'") == [ids["FAILED"]]
    pattern = f"%{ids['RUNNING']}%"
    assert search_ids(experiment, f"attributes.artifact_uri LIKE '{pattern}'") == [
        ids["RUNNING"]
    ]
    assert len(search_ids(experiment, "attributes.artifact_uri != 'x'")) == 3


def test_runs_filter_params_and_tags_by_presence(experiment):
    with mlflow.start_run() as tuned:
        mlflow.log_param("lr", "0.1")
        mlflow.set_tag("team", "vision")
    with mlflow.start_run() as plain:
        pass

    assert search_ids(experiment, "params.lr IS NOT NULL") == [tuned.info.run_id]
    assert search_ids(experiment, "params.lr IS NULL") == [plain.info.run_id]
    assert search_ids(experiment, "tags.team IS NULL") == [plain.info.run_id]
    assert search_ids(experiment, "tags.team is not null and params.lr = '0.1'") == [
        tuned.info.run_id
    ]
    with pytest.raises(MlflowException) as raised:
        search_ids(experiment, "metrics.loss IS NULL")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"


def test_runs_default_order_and_ties(experiment):
    client = MlflowClient()
    starts = [1_700_000_000_000, 1_700_000_005_000, 1_700_000_005_000, 1_700_000_001_000]
    for index, start in enumerate(starts):
        run = client.create_run(experiment.experiment_id, start_time=start, run_name=f"r{index}")
        client.log_metric(run.info.run_id, "acc", 0.5)

    runs = client.search_runs([experiment.experiment_id])
    expected = sorted(runs, key=lambda run: (-run.info.start_time, run.info.run_id))
    assert [run.info.run_id for run in runs] == [run.info.run_id for run in expected]
    assert sorted(run.info.start_time for run in runs) == sorted(starts)

    # Equal metrics fall back to start_time descending, then run id ascending.
    by_metric = client.search_runs([experiment.experiment_id], order_by=["metrics.acc DESC"])
    assert [run.info.run_id for run in by_metric] == [run.info.run_id for run in expected]


def test_runs_page_tokens_walk_every_run_once(experiment):
    client = MlflowClient()
    for index in range(9):
        run = client.create_run(experiment.experiment_id, start_time=1_700_000_000_000 + index % 3)
        client.log_metric(run.info.run_id, "loss", float(index % 4))

    for order_by in ([], ["metrics.loss ASC"], ["attributes.start_time ASC", "metrics.loss DESC"]):
        whole = search_ids(experiment, order_by=order_by)
        paged, pages = all_pages(
            lambda token, order_by=order_by: client.search_runs(
                [experiment.experiment_id], order_by=order_by, max_results=4, page_token=token
            )
        )
        assert [run.info.run_id for run in paged] == whole, order_by
        assert pages == 3
        assert len(set(whole)) == 9

    assert len(search_ids(experiment, max_results=50_000)) == 9
    with pytest.raises(MlflowException) as raised:
        search_ids(experiment, max_results=50_001)
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as raised:
        search_ids(experiment, order_by=["params.a", "params.a DESC"])
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"


def test_runs_view_types_page_in_the_database(experiment):
    client = MlflowClient()
    ids = [client.create_run(experiment.experiment_id).info.run_id for _ in range(6)]
    deleted = ids[::2]
    for run_id in deleted:
        client.delete_run(run_id)

    active, _ = all_pages(
        lambda token: client.search_runs(
            [experiment.experiment_id], max_results=2, page_token=token
        )
    )
    deleted_runs, _ = all_pages(
        lambda token: client.search_runs(
            [experiment.experiment_id],
            run_view_type=ViewType.DELETED_ONLY,
            max_results=2,
            page_token=token,
        )
    )
    everything = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
    assert sorted(run.info.run_id for run in active) == sorted(set(ids) - set(deleted))
    assert sorted(run.info.run_id for run in deleted_runs) == sorted(deleted)
    assert {run.info.lifecycle_stage for run in deleted_runs} == {"deleted"}
    assert sorted(run.info.run_id for run in everything) == sorted(ids)


def test_experiments_search_filters_orders_and_pages(tracking_uri):
    client = MlflowClient()
    prefix = unique("exp-search")
    ids = []
    for index in range(5):
        tags = {"team": "vision" if index % 2 == 0 else "nlp"}
        if index == 4:
            tags = {}
        ids.append(client.create_experiment(f"{prefix}-{index}", tags=tags))
    client.delete_experiment(ids[3])

    def names(**options):
        found = client.search_experiments(filter_string=f"name LIKE '{prefix}%'", **options)
        return [experiment.name for experiment in found]

    created = [client.get_experiment(experiment_id) for experiment_id in ids]
    active = [item for item in created if item.lifecycle_stage == "active"]
    newest_first = sorted(active, key=lambda item: (-item.creation_time, int(item.experiment_id)))
    assert names() == [item.name for item in newest_first]
    assert names(order_by=["name DESC"]) == sorted((item.name for item in active), reverse=True)
    assert names(view_type=ViewType.DELETED_ONLY) == [f"{prefix}-3"]
    assert len(names(view_type=ViewType.ALL)) == 5

    vision = client.search_experiments(
        filter_string=f"name LIKE '{prefix}%' AND tags.team = 'vision'", order_by=["name"]
    )
    assert [item.name for item in vision] == [f"{prefix}-0", f"{prefix}-2"]
    untagged = client.search_experiments(
        filter_string=f"name LIKE '{prefix}%' AND tags.team IS NULL"
    )
    assert [item.name for item in untagged] == [f"{prefix}-4"]
    by_id = client.search_experiments(filter_string=f"experiment_id IN ('{ids[1]}', '{ids[2]}')")
    assert sorted(item.experiment_id for item in by_id) == sorted([ids[1], ids[2]])

    paged, pages = all_pages(
        lambda token: client.search_experiments(
            filter_string=f"name LIKE '{prefix}%'",
            order_by=["name ASC"],
            max_results=2,
            page_token=token,
        )
    )
    assert [item.name for item in paged] == sorted(item.name for item in active)
    assert pages == 2


def log_model_file():
    content = uuid.uuid4().bytes
    with mlflow.start_run() as run:
        mlflow.log_text(content.hex(), "model.txt")
    return run.info.run_id, hashlib.sha256(content.hex().encode()).hexdigest()


def test_registered_models_search_in_the_database(experiment):
    client = MlflowClient()
    prefix = unique("search-model")
    names = [f"{prefix}-{index}" for index in range(4)]
    for index, name in enumerate(names):
        client.create_registered_model(name, tags={"team": "ml" if index < 2 else "ops"})
    client.set_registered_model_tag(names[3], "mlflow.prompt.is_prompt", "true")

    found = client.search_registered_models(filter_string=f"name LIKE '{prefix}%'")
    assert [model.name for model in found] == names[:3]
    chosen = client.search_registered_models(filter_string=f"name IN ('{names[2]}', '{names[0]}')")
    assert [model.name for model in chosen] == [names[0], names[2]]
    ml = client.search_registered_models(
        filter_string=f"name LIKE '{prefix}%' AND tags.team = 'ml'", order_by=["name DESC"]
    )
    assert [model.name for model in ml] == [names[1], names[0]]
    assert client.search_registered_models(filter_string=f"name ILIKE '{prefix.upper()}-0'")

    client.update_registered_model(names[0], description="touched")
    latest = client.search_registered_models(
        filter_string=f"name LIKE '{prefix}%'", order_by=["last_updated_timestamp DESC"]
    )
    expected = sorted(latest, key=lambda model: (-model.last_updated_timestamp, model.name))
    assert [model.name for model in latest] == [model.name for model in expected]
    assert latest[0].name == names[0]

    paged, pages = all_pages(
        lambda token: client.search_registered_models(
            filter_string=f"name LIKE '{prefix}%'", max_results=2, page_token=token
        )
    )
    assert [model.name for model in paged] == names[:3]
    assert pages == 2
    with pytest.raises(MlflowException) as raised:
        client.search_registered_models(filter_string="run_id = 'x'")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"


def test_model_versions_search_in_the_database(experiment):
    client = MlflowClient()
    name = unique("search-versions")
    client.create_registered_model(name)
    runs = [log_model_file()[0] for _ in range(3)]
    for index, run_id in enumerate(runs):
        client.create_model_version(
            name, f"runs:/{run_id}/model.txt", run_id=run_id, tags={"fold": str(index % 2)}
        )

    def versions(filter_string, **options):
        found = client.search_model_versions(filter_string, **options)
        return [item.version for item in found]

    assert versions(f"name = '{name}'", order_by=["version_number ASC"]) == ["1", "2", "3"]
    assert versions(f"name = '{name}' AND version_number >= 2") == ["3", "2"]
    assert versions(f"name = '{name}' AND run_id IN ('{runs[0]}', '{runs[2]}')") == ["3", "1"]
    assert versions(f"name = '{name}' AND source_path LIKE '%{runs[1]}%'") == ["2"]
    assert versions(f"name = '{name}' AND tags.fold = '0'") == ["3", "1"]

    client.update_model_version(name, "1", description="touched")
    found = client.search_model_versions(f"name = '{name}'")
    expected = sorted(found, key=lambda item: (-item.last_updated_timestamp, -int(item.version)))
    assert [item.version for item in found] == [item.version for item in expected]
    assert found[0].version == "1"

    paged, pages = all_pages(
        lambda token: client.search_model_versions(
            f"name = '{name}'", order_by=["version_number DESC"], max_results=2, page_token=token
        )
    )
    assert [item.version for item in paged] == ["3", "2", "1"]
    assert pages == 2
    with pytest.raises(RestException) as raised:
        client.search_model_versions(f"name = '{name}' AND version_number > 'x'")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
