"""MLflow: the ranker as a pyfunc model, the registry's aliases and the promotion gate.

Each trained ranker is logged as one pyfunc model (every booster, the sampling rate and the
value weights), with a signature over the feature frame, and registered as a new version of
`feedrank-ranker` with the alias `challenger`. `decide` is the gate: the challenger becomes
`champion` only when its validation value metric (NDCG of the value score, per request) beats
the current champion's on the same days by the margin, and beats the best non-learned
baseline by the margin too, so a useless model (one fitted to shuffled labels, say) is never
promoted even when there is no champion yet.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from models.dataset import signature_frame
from models.gbdt import Ranker

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_NAME = "ranker"  # the logged model's name within its run
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
# MLflow 3's UI opens an experiment without this tag on its GenAI (traces) view; this kind
# opens it on the model-training runs.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
_REQUIREMENTS = ("lightgbm", "numpy", "pandas", "pyarrow", "pydantic", "mlflow")


def use_tracking(tracking_uri: str, experiment: str, artifact_root: Path | None = None) -> str:
    """Point MLflow at a tracking store and make sure the experiment exists, marked as a
    model-training experiment; its id.

    `artifact_root`: where a new experiment keeps artifacts (a local folder, for a SQLite
    store); None leaves it to the tracking server.
    """
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        if EXPERIMENT_KIND_TAG not in found.tags:  # created before the tag was set
            MlflowClient().set_experiment_tag(
                found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND
            )
        mlflow.set_experiment(experiment_id=found.experiment_id)
        return found.experiment_id
    location = None
    if artifact_root is not None:
        artifact_root.mkdir(parents=True, exist_ok=True)
        location = artifact_root.as_uri()
    experiment_id = mlflow.create_experiment(
        experiment, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def log_ranker(ranker: Ranker, example: pd.DataFrame) -> mlflow.models.model.ModelInfo:
    """Log the ranker into the active run as a pyfunc model with signature and input example."""
    sample = example.head(200)
    signature = infer_signature(signature_frame(sample), ranker.predict(sample))
    with tempfile.TemporaryDirectory() as tmp:
        folder = ranker.save(Path(tmp) / "ranker")
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(PYFUNC_CODE),  # models from code: nothing pickled
            artifacts={"ranker": str(folder)},
            signature=signature,
            input_example=signature_frame(sample.head(5)),
            pip_requirements=[f"{p}=={importlib.metadata.version(p)}" for p in _REQUIREMENTS],
        )


def load_ranker(model_uri: str) -> Ranker:
    """The Ranker behind a logged or registered model (models:/feedrank-ranker@champion)."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().ranker


def register(model_uri: str, name: str, tags: dict[str, str] | None = None) -> str:
    """Register a new version and give it the challenger alias; its version number."""
    version = mlflow.register_model(model_uri, name, tags=tags).version
    MlflowClient().set_registered_model_alias(name, CHALLENGER, version)
    log.info("registered %s version %s as %s", name, version, CHALLENGER)
    return str(version)


_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # no model / no alias


def champion_version(name: str) -> str | None:
    """The version holding the champion alias, or None when there is none yet.

    Only "not found" means no champion: any other error (a tracking server that is down)
    raises, so the gate never mistakes an unreachable champion for a missing one.
    """
    try:
        return str(MlflowClient().get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as err:
        if err.error_code in _NOT_FOUND and "not found" in str(err):
            return None
        raise


def set_champion(name: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(name, CHAMPION, version)


@dataclasses.dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(
    challenger: float,
    champion: float | None,
    best_baseline: float,
    margin: float,
    no_champion: str = "no champion yet",
) -> Decision:
    """Promote when the challenger beats the baseline and the champion (if any) by margin.

    `no_champion` says why there is no champion to compare with, for the reason."""
    if not challenger >= best_baseline + margin:  # NaN never promotes
        return Decision(
            False,
            f"challenger {challenger:.4f} does not beat the best baseline {best_baseline:.4f} "
            f"by the margin {margin}",
        )
    if champion is None:
        return Decision(
            True,
            f"{no_champion}; challenger {challenger:.4f} beats the best baseline "
            f"{best_baseline:.4f} by at least {margin}",
        )
    if challenger >= champion + margin:
        return Decision(
            True, f"challenger {challenger:.4f} beats champion {champion:.4f} by at least {margin}"
        )
    return Decision(
        False,
        f"challenger {challenger:.4f} does not beat champion {champion:.4f} by the margin {margin}",
    )
