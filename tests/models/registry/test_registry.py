"""The MLflow experiment opens on its model-training runs, not the GenAI traces view; a
model registered twice (a retried task) is one version; the gate's hook runs before the
champion alias moves, and a hook that fails leaves the alias where it was."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from models.registry.gate import Decision
from models.registry.handoff import RegisteredVersion
from models.registry.tags import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
from models.registry.versions import (
    CHALLENGER,
    apply_decision,
    champion_version,
    register,
    set_champion,
    use_tracking,
)


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input


def logged_models(n: int) -> list[tuple[str, str]]:
    """(run_id, model_uri) of n models logged in runs of their own."""
    logged = []
    for _ in range(n):
        with mlflow.start_run() as run:
            model = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=[])
            logged.append((run.info.run_id, model.model_uri))
    return logged


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

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    use_tracking(uri, "feedrank", tmp_path / "artifacts")
    logged = [model_uri for _, model_uri in logged_models(2)]
    assert [register(logged[0], "ranker"), register(logged[0], "ranker")] == ["1", "1"]
    assert register(logged[1], "ranker") == "2"
    client = MlflowClient(uri)
    assert sorted(int(v.version) for v in client.search_model_versions("name='ranker'")) == [1, 2]
    assert str(client.get_model_version_by_alias("ranker", CHALLENGER).version) == "2"


def test_the_hook_runs_before_the_alias_moves_and_a_failing_one_keeps_the_champion(
    tmp_path, restore_tracking
):
    """The gate compiles a winner for serving before it becomes champion (jobs.train_rankers'
    compile_for_serving): the hook sees the old champion, runs for a promoted version only,
    and when it fails the alias stays on the version that had it."""
    use_tracking(f"sqlite:///{tmp_path / 'mlflow.db'}", "feedrank", tmp_path / "artifacts")
    versions = []
    for run_id, model_uri in logged_models(3):
        version = register(model_uri, "ranker")
        versions.append(RegisteredVersion(run_id, model_uri, "2026-01-08", 0.5, "", version))
    set_champion("ranker", "1")
    seen = []

    def hook(winner: RegisteredVersion) -> None:
        seen.append((winner.version, champion_version("ranker")))

    kept = apply_decision(versions[1], "ranker", Decision(False, "does not beat"), hook)
    assert not kept.promoted and seen == [] and champion_version("ranker") == "1"
    won = apply_decision(versions[1], "ranker", Decision(True, "beats"), hook)
    assert won.promoted and won.champion == "2"
    assert seen == [("2", "1")]  # the hook ran while version 1 was still champion

    def broken(winner: RegisteredVersion) -> None:
        raise RuntimeError("the compiler failed")

    with pytest.raises(RuntimeError, match="the compiler failed"):
        apply_decision(versions[2], "ranker", Decision(True, "beats"), broken)
    assert champion_version("ranker") == "2"
