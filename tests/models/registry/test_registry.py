"""The MLflow experiment opens on its model-training runs, not the GenAI traces view; a
model registered twice (a retried task) is one version."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from models.registry.tags import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
from models.registry.versions import CHALLENGER, register, use_tracking


@pytest.fixture
def restore_tracking():
    """use_tracking sets MLflow's process-wide URIs: put them back for the next tests."""
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)


def test_the_experiment_is_marked_as_model_training(tmp_path, restore_tracking):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = use_tracking(uri, "feedrank", tmp_path / "artifacts")
    tags = MlflowClient(uri).get_experiment(experiment_id).tags
    assert (EXPERIMENT_KIND_TAG, EXPERIMENT_KIND) == (
        "mlflow.experimentKind",
        "custom_model_development",
    )
    assert tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    # An experiment created before the tag existed gets it the next time a job uses it.
    old = MlflowClient(uri).create_experiment("old", artifact_location=(tmp_path / "a").as_uri())
    assert EXPERIMENT_KIND_TAG not in MlflowClient(uri).get_experiment(old).tags
    assert use_tracking(uri, "old") == old
    assert MlflowClient(uri).get_experiment(old).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert mlflow.get_tracking_uri() == uri


def test_a_model_registered_again_keeps_its_version(tmp_path, restore_tracking):
    """A retried register task (it registered, then failed) must not add a version of the
    same model; another model gets the next version and the challenger alias."""

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input):
            return model_input

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    use_tracking(uri, "feedrank", tmp_path / "artifacts")
    logged = []
    for _ in range(2):
        with mlflow.start_run():
            model = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=[])
            logged.append(model.model_uri)
    assert [register(logged[0], "ranker"), register(logged[0], "ranker")] == ["1", "1"]
    assert register(logged[1], "ranker") == "2"
    client = MlflowClient(uri)
    assert sorted(int(v.version) for v in client.search_model_versions("name='ranker'")) == [1, 2]
    assert str(client.get_model_version_by_alias("ranker", CHALLENGER).version) == "2"
