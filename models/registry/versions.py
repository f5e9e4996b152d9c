"""MLflow: the ranker as a pyfunc model, the registry's aliases and the promotion gate.

Each trained ranker, of any kind (models.ranking.base: gbdt, dnn, ensemble), is logged as one
pyfunc model (its saved folder), with a signature over the feature frame, and registered as
a new version of `feedrank-ranker` with the alias `challenger` and the tag `feedrank.kind`.

`decide` is the gate for one challenger: it becomes `champion` only when its validation
gate metric (NDCG of the value score per request, or on a real log MIND's group AUC or nDCG@10
of clicks: training.gate_metric) beats the current champion's on the same
days by the margin, and beats the best non-learned baseline by the margin too, so a useless
model (one fitted to shuffled labels, say) is never promoted even when there is no champion
yet; and the harm guard (`HarmGuard`) refuses a challenger whose negative-feedback tasks
(hide, report) have a validation AUC or NCE worse than the champion's beyond
`training.harm_margin`, however well it ranks: those tasks weigh little in NDCG, so a model
blind to them could otherwise win. The gate knows its sample (models.registry.gate.SampleRule): each
run logs its gate metric per validation request (GATE_SAMPLE), and a decision needs a minimum
of requests and positives and a paired bootstrap interval of each gain that clears the margin.
`promote` runs the gate over one night's versions (every
kind): it re-scores the champion on their validation days (its NDCG and its hide and report
AUC and NCE there, not its old run's numbers), decides for each version from the best NDCG
down, and promotes the first that passes unless a lower-ranked version of the same night
that passes too is safer on hide and report (models.registry.gate.choose; at most one, and
one whenever any passes), moves the alias, and tags every version and its run with its
outcome and the reason.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from models.evaluation.evaluate import (
    BASELINES,
    GATE_SPLIT,
    MODEL,
    evaluate_days,
    gate_metric,
    gate_words,
    metric_name,
)
from models.ranking.base import DNN, GBDT, IncompatibleRanker, RankerLike
from models.ranking.dataset import signature_frame
from models.ranking.load import member_kinds
from models.registry.gate import (
    AUC,
    NCE,
    NO_GUARD,
    Candidate,
    Decision,
    HarmGuard,
    SampleRule,
    choose,
    quality_key,
)
from models.registry.gate import decide as decide  # the gate's rule, re-exported beside promote
from models.registry.handoff import Gate, Promotion, RegisteredVersion, extend
from models.registry.tags import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    KIND_TAG,
    PROMOTION_REASON_TAG,
    PROMOTION_TAG,
)
from models.value import ValueWeights
from warehouse.layout import Folder

if TYPE_CHECKING:
    from warehouse.store import Warehouse

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_NAME = "ranker"  # the logged model's name within its run
RANKER_ARTIFACT = "ranker"  # the ranker's files within the logged model (pyfunc_model.py)
PYFUNC_CODE = importlib.util.find_spec("models.registry.pyfunc").origin  # logged as code
# A version's ranker folder with its GBDTs compiled (models.ranking.compiled), in its run:
# built once, when the gate makes the version champion (a version never served is never
# compiled), and loaded by every scoring worker.
COMPILED_ARTIFACT = "compiled_ranker"
SPLIT_ARTIFACT = "split.json"  # a run's time split: {"train": [...], "val": [...], ...}
# a run's gate metric per validation request (columns: the scorers and `positives`)
GATE_SAMPLE = "gate/val_sample.parquet"
_REQUIREMENTS = ("lightgbm", "numpy", "pandas", "pyarrow", "pydantic", "mlflow")
_KIND_REQUIREMENTS = {DNN: ("torch",)}  # what a kind's model needs beyond those


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
    ranker: RankerLike, example: pd.DataFrame, scratch: Folder
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
        pip_requirements=[f"{p}=={importlib.metadata.version(p)}" for p in requirements(ranker)],
    )


def requirements(ranker: RankerLike) -> tuple[str, ...]:
    """The packages a ranker's pyfunc model needs: the common ones and its kinds' own."""
    extra = (p for k in member_kinds(ranker) for p in _KIND_REQUIREMENTS.get(k, ()))
    return tuple(dict.fromkeys((*_REQUIREMENTS, *extra)))


def window_param(part: str) -> str:
    """The run param that gives a part of the split as first..last day (window.val, ...)."""
    return f"window.{part}"


def load_split(run_id: str) -> dict[str, list[str]]:
    """The time split a run trained and is evaluated on."""
    run = MlflowClient().get_run(run_id)
    return mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{SPLIT_ARTIFACT}")


def run_kind(run_id: str) -> str:
    """The ranker kind a run logged (its `feedrank.kind` tag; a run from before kinds: gbdt)."""
    return MlflowClient().get_run(run_id).data.tags.get(KIND_TAG, GBDT)


def version_kind(name: str, version: str) -> str:
    """The ranker kind of a registered version (its `feedrank.kind` tag; before kinds: gbdt)."""
    return MlflowClient().get_model_version(name, version).tags.get(KIND_TAG, GBDT)


def load_ranker(model_uri: str) -> RankerLike:
    """The ranker, of any kind, behind a logged or registered model
    (models:/feedrank-ranker@champion)."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().ranker


def register(model_uri: str, name: str, tags: dict[str, str] | None = None) -> str:
    """Register a new version and give it the challenger alias; its version number. A model
    already registered under `name` keeps its version (a retried task that registered it
    before it failed): no second version of the same model."""
    client = MlflowClient()
    same = [v for v in client.search_model_versions(f"name='{name}'") if v.source == model_uri]
    if same:
        version = min(int(v.version) for v in same)
        log.info("%s is already %s version %s: not registered again", model_uri, name, version)
    else:
        version = mlflow.register_model(model_uri, name, tags=tags).version
    client.set_registered_model_alias(name, CHALLENGER, version)
    log.info("registered %s version %s as %s", name, version, CHALLENGER)
    return str(version)


def save_compiled(
    name: str, version: str, scratch: Folder, cache: Folder | None = None
) -> Folder | None:
    """Save a registered version's ranker into the empty folder `scratch`, compile its GBDTs
    (itself or an ensemble's members) there, reusing `cache`'s object files of the same
    trees, and store the folder as COMPILED_ARTIFACT of the version's run; the folder, or
    None when the version holds no GBDT (nothing is stored, the ranker is saved all the
    same)."""
    from models.ranking.compiled import compile_saved  # lleaves: only where it compiles

    folder = load_ranker(f"models:/{name}/{version}").save(scratch)
    if not compile_saved(folder, cache):
        return None
    run_id = MlflowClient().get_model_version(name, version).run_id
    MlflowClient().log_artifacts(run_id, str(folder.path), COMPILED_ARTIFACT)
    log.info("compiled the GBDTs of %s version %s into its run %s", name, version, run_id)
    return folder


def _run_with_compiled(name: str, version: str) -> str | None:
    """The run of a registered version if it holds its COMPILED_ARTIFACT, else None."""
    run_id = MlflowClient().get_model_version(name, version).run_id
    names = {Path(a.path).name for a in MlflowClient().list_artifacts(run_id)}
    return run_id if COMPILED_ARTIFACT in names else None


def has_compiled(name: str, version: str) -> bool:
    """Whether a registered version's run holds its COMPILED_ARTIFACT."""
    return _run_with_compiled(name, version) is not None


def compiled_folder(name: str, version: str, scratch: Folder) -> Folder | None:
    """The COMPILED_ARTIFACT of a registered version, downloaded into the empty folder
    `scratch` (its files at the top); None when the version has none."""
    run_id = _run_with_compiled(name, version)
    if run_id is None:
        return None
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=COMPILED_ARTIFACT, dst_path=str(scratch.path)
    )
    downloaded = Path(path)
    for item in downloaded.iterdir():  # up one level: the folder's name is the caller's
        item.rename(scratch.path / item.name)
    downloaded.rmdir()
    return scratch


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
class ChampionOnDays:
    """The champion re-scored on a challenger's validation days."""

    score: float | None  # the gate metric; None when the champion cannot score these days
    quality: dict[str, float]  # hide/auc, hide/nce, ... (models.registry.gate.quality_key)
    unusable: str | None = None  # why it cannot score (trained on other feature columns)
    sample: pd.Series | None = None  # the gate metric per validation request


def run_quality(metrics: Mapping[str, float], tasks: Sequence[str]) -> dict[str, float]:
    """A run's validation AUC and NCE of `tasks` (as evaluation logged them)."""
    return {
        quality_key(t, m): metrics.get(metric_name(GATE_SPLIT, MODEL, t, m), math.nan)
        for t in tasks
        for m in (AUC, NCE)
    }


def champion_score(
    store: Warehouse,
    name: str,
    days: Sequence[str],
    weights: ValueWeights,
    k: int,
    tasks: Sequence[str] = (),
    which: str = "value_ndcg",
) -> ChampionOnDays:
    """The current champion's gate metric and its `tasks`' AUC and NCE on `days`, computed
    by the same evaluation as a challenger's (models.evaluation.evaluate.evaluate_days), so the gate
    compares both on the same rows. A champion trained on other feature columns cannot stay
    (`unusable` says why). Any other failure (the registry or its artifacts unreachable)
    raises, so the task fails and is retried rather than promote a challenger unchecked."""
    champion = load_ranker(f"models:/{name}@{CHAMPION}")
    try:
        evaluation = evaluate_days(store, champion, days, weights, k=k, oracle=False)
    except IncompatibleRanker as err:  # an outdated champion must not block a new challenger
        log.warning("the champion cannot score the validation days: %s", err)
        return ChampionOnDays(None, {}, str(err))
    metrics = evaluation.metrics(GATE_SPLIT)
    return ChampionOnDays(
        metrics.get(gate_metric(k, which=which), math.nan),
        run_quality(metrics, tasks),
        sample=evaluation.gate_sample(which, k)[MODEL],
    )


def gate_sample(run_id: str) -> pd.DataFrame | None:
    """The gate metric per validation request a run logged (GATE_SAMPLE); None for a run
    from before the gate knew its sample."""
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=GATE_SAMPLE)
    except (MlflowException, OSError):
        return None
    return pd.read_parquet(path)


def candidate(
    registered: RegisteredVersion, k: int, tasks: Sequence[str], which: str = "value_ndcg"
) -> Candidate:
    """A registered version's numbers on its validation days, from its run."""
    run = MlflowClient().get_run(registered.run_id)
    metrics = run.data.metrics
    return Candidate(
        version=registered.version,
        kind=run.data.tags.get(KIND_TAG, GBDT),
        score=metrics.get(gate_metric(k, which=which), math.nan),  # absent when undefined
        baselines={b: metrics.get(gate_metric(k, b, which), math.nan) for b in BASELINES},
        quality=run_quality(metrics, tasks),
        sample=gate_sample(registered.run_id),
    )


def promote(
    registered: Sequence[RegisteredVersion],
    name: str,
    store: Warehouse,
    weights: ValueWeights,
    *,
    k: int,
    margin: float,
    guard: HarmGuard = NO_GUARD,
    which: str = "value_ndcg",
    rule: SampleRule | None = None,
    before_champion: Callable[[RegisteredVersion], None] | None = None,
) -> Gate:
    """Gate one night's registered versions (one per kind, trained on the same split): the
    best that wins against the champion on their validation days (models.registry.gate.choose)
    becomes champion; every version and its run are tagged with its outcome and reason.
    `which`: the gate metric (models.evaluation.evaluate.GATE_METRICS); `rule`: the sample a
    decision needs (None: the point estimates alone decide). `before_champion` is called with
    the winner before the champion alias moves to it (what serving needs built first); if it
    raises, the alias stays where it was."""
    if not registered:
        raise ValueError("no registered version to gate")
    candidates = [candidate(r, k, guard.tasks, which) for r in registered]
    days = load_split(registered[0].run_id)[GATE_SPLIT]
    if any(load_split(r.run_id)[GATE_SPLIT] != days for r in registered[1:]):
        raise ValueError("the versions gated together must share their validation days")
    current = champion_version(name)
    champion, no_champion = ChampionOnDays(None, {}), "no champion yet"
    if current in {r.version for r in registered}:  # a retried gate that already promoted it
        no_champion = f"version {current} is already champion (the gate ran before)"
    elif current is not None and any(not math.isnan(c.score) for c in candidates):
        champion = champion_score(store, name, days, weights, k, guard.tasks, which)
        if champion.unusable is not None:
            no_champion = (
                f"champion version {current} cannot score these features ({champion.unusable})"
            )
    window = MlflowClient().get_run(registered[0].run_id).data.params
    decisions = choose(
        candidates,
        champion.score,
        champion.quality,
        margin,
        guard,
        no_champion,
        metric=gate_words(k, which),
        days=window.get(window_param(GATE_SPLIT), "the validation days"),
        rule=rule,
        champion_sample=champion.sample,
    )
    # The winner first, so every version's Promotion names the champion after the gate.
    order = sorted(registered, key=lambda r: not decisions[r.version].promote)
    outcomes = {
        r.version: apply_decision(r, name, decisions[r.version], before_champion) for r in order
    }
    return Gate(
        ds=registered[0].ds,
        promotions=[outcomes[r.version] for r in registered],
        champion=champion_version(name),
    )


def apply_decision(
    registered: RegisteredVersion,
    name: str,
    decision: Decision,
    before_champion: Callable[[RegisteredVersion], None] | None = None,
) -> Promotion:
    """Move the champion alias to the version if the gate promotes it (after
    `before_champion`, if given); tag the version and its run with the outcome and the
    reason either way."""
    client = MlflowClient()
    version = registered.version
    if decision.promote:
        if before_champion is not None:
            before_champion(registered)
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
