"""The MLflow experiment opens on its model-training runs, not the GenAI traces view."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from models.registry.tags import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
from models.registry.versions import use_tracking


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
