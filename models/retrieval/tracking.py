"""MLflow runs of the two-tower retrieval model: what training logs, and the evaluation added.

    trained = log_training_run(RunInfo(...), split, result, n_pairs, gate, scratch)
    log_evaluation(trained.run_id, metrics, table, folder)

A run holds the resolved settings (`settings.json`, the retrieval settings as params), the
data window (`split.json`, `window.*` params with every day), pair count, best epoch, the
learning curve (training loss and the gate metric per epoch) and the towers as a pyfunc from
code (models.retrieval.pyfunc); then the recall metrics (models.retrieval.evaluate.recall_table),
the recall table and figures, and `report.md`, also written into the report folder.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Mapping

import mlflow
import numpy as np
import pandas as pd

from models.evaluation.markdown import markdown
from models.ranking.dataset import Split
from models.registry import versions as reg
from models.registry.handoff import TrainedRun
from models.registry.runs import RunInfo, log_figure, log_report
from models.registry.tags import DS_TAG
from models.retrieval import evaluate as E
from models.retrieval.two_tower import FitResult, TwoTower, save
from warehouse.layout import Folder

MODEL_NAME = "retrieval"  # the logged model's name within its run
TOWERS_ARTIFACT = "towers"  # the towers' files within the logged model (retrieval_pyfunc.py)
PYFUNC_CODE = importlib.util.find_spec("models.retrieval.pyfunc").origin  # logged as code
_REQUIREMENTS = ("torch", "numpy", "pandas", "mlflow")


def log_training_run(
    info: RunInfo, split: Split, result: FitResult, n_pairs: int, gate: str, scratch: Folder
) -> TrainedRun:
    """One MLflow run for fitted towers: settings, data window, curves, the model.

    `gate`: the name of the validation metric early stopping followed (its curve);
    `scratch`: an empty folder the towers are written to on their way into the run."""
    parts = (("train", split.train), ("val", split.val), ("test", split.test))
    with mlflow.start_run(run_name=info.name) as run:
        mlflow.set_tags({**info.tags, DS_TAG: info.ds})
        mlflow.log_params(dict(info.params))
        mlflow.log_params({reg.window_param(part): ",".join(days) for part, days in parts})
        mlflow.log_dict(dict(info.settings), "settings.json")
        mlflow.log_dict(split.as_dict(), reg.SPLIT_ARTIFACT)
        mlflow.log_metrics({"pairs/train": float(n_pairs), "best_epoch": float(result.best_epoch)})
        curve = zip(result.train_loss, result.val_metric, strict=True)
        for step, (loss, val) in enumerate(curve):
            mlflow.log_metrics({"curve/train_loss": loss, f"curve/{gate}": val}, step=step + 1)
        model = log_towers(result.model, scratch)
    return TrainedRun(run.info.run_id, model.model_uri, info.ds)


def log_towers(model: TwoTower, scratch: Folder) -> mlflow.models.model.ModelInfo:
    """Log the towers into the active run as a pyfunc from code (weights + settings)."""
    reqs = [f"{p}=={importlib.metadata.version(p)}" for p in _REQUIREMENTS]
    folder = save(model, scratch.sub(TOWERS_ARTIFACT))  # the run keeps the folder name
    return mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=PYFUNC_CODE,  # models from code: nothing pickled
        artifacts={TOWERS_ARTIFACT: str(folder)},
        pip_requirements=[r.replace("+cpu", "") for r in reqs],
    )


def load_towers(model_uri: str) -> TwoTower:
    """The towers behind a logged or registered model (models:/feedrank-retrieval@champion)."""
    return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().towers


def log_evaluation(
    run_id: str, metrics: Mapping[str, float], table: pd.DataFrame, folder: Folder
) -> str:
    """Add the recall metrics (the defined ones), table, figures and report to the run; write
    the figures and the report into `folder`. Returns the report (Markdown)."""
    report = markdown(table) + "\n"
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_table(table, "evaluation/recall.json")
        for split in table["split"].unique():
            log_figure(E.recall_figure(table, split), f"evaluation/recall_{split}.png", folder)
        log_report(report, folder)
    return report
