"""MLflow: the ranker as a pyfunc model, the registry's aliases and the promotion gate.

Each trained ranker is logged as one pyfunc model (every booster, the sampling rate and the
value weights), with a signature over the feature frame, and registered as a new version of
`feedrank-ranker` with the alias `challenger`. `decide` is the gate: the challenger becomes
`champion` only when its validation value metric (NDCG of the value score, per request) beats
the current champion's on the same days by the margin, and beats the best non-learned
baseline by the margin too, so a useless model (one fitted to shuffled labels, say) is never
promoted even when there is no champion yet. `promote` runs the gate for a registered version:
it re-scores the champion on the challenger's validation days, decides, moves the alias, and
tags the version and its run with the decision and the reason.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from models.dataset import load_examples, signature_frame
from models.evaluate import BASELINES, GATE_SPLIT, best_baseline, gate_metric, value_ranking
from models.gbdt import SCORE, IncompatibleRanker, Ranker
from models.handoff import Promotion, RegisteredVersion, extend
from models.value import ValueWeights
from warehouse.layout import Folder

if TYPE_CHECKING:
    from warehouse.store import Warehouse

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_NAME = "ranker"  # the logged model's name within its run
RANKER_ARTIFACT = "ranker"  # the ranker's files within the logged model (pyfunc_model.py)
PYFUNC_CODE = importlib.util.find_spec("models.pyfunc_model").origin  # logged as code
SPLIT_ARTIFACT = "split.json"  # a run's time split: {"train": [...], "val": [...], ...}
DS_TAG = "feedrank.ds"  # a run's tag: the last day its training could use
PROMOTION_TAG, PROMOTION_REASON_TAG = "feedrank.promotion", "feedrank.promotion_reason"
# MLflow 3's UI opens an experiment without this tag on its GenAI (traces) view; this kind
# opens it on the model-training runs.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
_REQUIREMENTS = ("lightgbm", "numpy", "pandas", "pyarrow", "pydantic", "mlflow")


def use_tracking(tracking_uri: str, experiment: str, artifact_root: Path | None = None) -> str:
    """Point MLflow at a tracking store and make sure the experiment exists, marked as a
    model-training experiment; its id.

    `artifact_root`: where a new experiment keeps artifacts (an existing local folder, for a
    SQLite store); None leaves it to the tracking server.
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
    location = artifact_root.as_uri() if artifact_root is not None else None
    experiment_id = mlflow.create_experiment(
        experiment, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def log_ranker(
    ranker: Ranker, example: pd.DataFrame, scratch: Folder
) -> mlflow.models.model.ModelInfo:
    """Log the ranker into the active run as a pyfunc model with signature and input example.

    `scratch`: an empty folder the ranker's files are written to on their way into the run."""
    sample = example.head(200)
    signature = infer_signature(signature_frame(sample), ranker.predict(sample))
    folder = ranker.save(scratch.sub(RANKER_ARTIFACT))  # the run keeps the folder name
    return mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=PYFUNC_CODE,  # models from code: nothing pickled
        artifacts={RANKER_ARTIFACT: str(folder)},
        signature=signature,
        input_example=signature_frame(sample.head(5)),
        pip_requirements=[f"{p}=={importlib.metadata.version(p)}" for p in _REQUIREMENTS],
    )


def window_param(part: str) -> str:
    """The run param that gives a part of the split as first..last day (window.val, ...)."""
    return f"window.{part}"


def load_split(run_id: str) -> dict[str, list[str]]:
    """The time split a run trained and is evaluated on."""
    run = MlflowClient().get_run(run_id)
    return mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{SPLIT_ARTIFACT}")


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


def versions(name: str) -> list[str]:
    """Every version of the registered model, as strings; empty when there is none."""
    return sorted(
        (str(v.version) for v in MlflowClient().search_model_versions(f"name='{name}'")), key=int
    )


def set_champion(name: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(name, CHAMPION, version)


@dataclasses.dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(
    challenger: float,
    champion: float | None,
    baselines: Mapping[str, float],
    margin: float,
    no_champion: str = "no champion yet",
    *,
    metric: str = "the gate metric",
    days: str = "the validation days",
) -> Decision:
    """The whole promotion gate, on one metric of the same days for every model.

    Promote when the challenger beats the best baseline and the champion (if any) by the
    margin. `champion` None: there is none to compare with, and `no_champion` says why (none
    yet, or one that cannot score these features). An undefined challenger metric (NaN: no
    request on `days` had a positive realised value) never promotes. The reason names the
    numbers, the best baseline and the metric (`metric`, e.g. "validation NDCG@10").
    """
    name, baseline = best_baseline(baselines)
    if math.isnan(challenger):
        reason = f"{metric} is undefined on {days}: no request there has a positive realised value"
        verdict = Decision(False, reason)
    elif not challenger >= baseline + margin:
        verdict = Decision(
            False,
            f"challenger {challenger:.4f} does not beat the best baseline {baseline:.4f} "
            f"by the margin {margin}",
        )
    elif champion is None:
        verdict = Decision(
            True,
            f"{no_champion}; challenger {challenger:.4f} beats the best baseline "
            f"{baseline:.4f} by at least {margin}",
        )
    elif challenger >= champion + margin:
        verdict = Decision(
            True, f"challenger {challenger:.4f} beats champion {champion:.4f} by at least {margin}"
        )
    else:
        verdict = Decision(
            False,
            f"challenger {challenger:.4f} does not beat champion {champion:.4f} "
            f"by the margin {margin}",
        )
    return Decision(verdict.promote, f"{verdict.reason} (baseline: {name}; {metric})")


def champion_score(
    store: Warehouse, name: str, days: Sequence[str], weights: ValueWeights, k: int
) -> tuple[float | None, str | None]:
    """The current champion's gate metric on `days`, or (None, why) when it was trained on
    other feature columns: then it cannot stay. Any other failure (the registry or its
    artifacts unreachable) raises, so the task fails and is retried rather than promote a
    challenger unchecked."""
    examples, info = load_examples(store, days)
    champion = load_ranker(f"models:/{name}@{CHAMPION}")
    try:
        score = champion.predict(examples.X)[SCORE].to_numpy()
    except IncompatibleRanker as err:  # an outdated champion must not block a new challenger
        log.warning("the champion cannot score the validation days: %s", err)
        return None, str(err)
    ranking = value_ranking(info, {CHAMPION: score}, weights, k)
    return float(ranking[f"ndcg_at_{k}"].iloc[0]), None


def promote(
    registered: RegisteredVersion,
    name: str,
    store: Warehouse,
    weights: ValueWeights,
    *,
    k: int,
    margin: float,
) -> Promotion:
    """Make the registered version champion if it wins on its validation days (`decide`);
    the version and its run are tagged with the outcome and the reason either way."""
    client = MlflowClient()
    version = registered.version
    run = client.get_run(registered.run_id)
    metrics = run.data.metrics
    challenger = metrics.get(gate_metric(k), math.nan)  # absent when undefined
    baselines = {b: metrics.get(gate_metric(k, b), math.nan) for b in BASELINES}
    current = champion_version(name)
    champion, no_champion = None, "no champion yet"
    if current is not None and current != version and not math.isnan(challenger):
        days = load_split(registered.run_id)[GATE_SPLIT]
        champion, unusable = champion_score(store, name, days, weights, k)
        if unusable is not None:
            no_champion = f"champion version {current} cannot score these features ({unusable})"
    decision = decide(
        challenger,
        champion,
        baselines,
        margin,
        no_champion,
        metric=f"validation NDCG@{k}",
        days=run.data.params.get(window_param(GATE_SPLIT), "the validation days"),
    )
    return apply_decision(registered, name, decision)


def apply_decision(registered: RegisteredVersion, name: str, decision: Decision) -> Promotion:
    """Move the champion alias to the version if the gate promotes it; tag the version and
    its run with the outcome and the reason either way."""
    client = MlflowClient()
    version = registered.version
    if decision.promote:
        set_champion(name, version)
    outcome = "promoted" if decision.promote else "not promoted"
    for key, value in {PROMOTION_TAG: outcome, PROMOTION_REASON_TAG: decision.reason}.items():
        client.set_model_version_tag(name, version, key, value)
        client.set_tag(registered.run_id, key, value)
    champion_now = champion_version(name)
    log.info(
        "%s version %s %s: %s; champion is version %s",
        name,
        version,
        outcome,
        decision.reason,
        champion_now,
    )
    return extend(
        registered,
        Promotion,
        promoted=decision.promote,
        reason=decision.reason,
        champion=champion_now,
    )
