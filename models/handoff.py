"""The small typed values a training pipeline's steps hand each other.

Each step of a train -> evaluate -> register -> promote chain returns one of these; a DAG
passes it through XCom as `dataclasses.asdict(value)` and the next task rebuilds it with
`Type(**value)`. Each extends the one before, so a later value carries everything earlier.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A trained model logged in an MLflow run."""

    run_id: str  # the MLflow run that holds the model and its metrics
    model_uri: str  # the logged model, e.g. models:/m-...
    ds: str  # the last day the training could use


@dataclasses.dataclass(frozen=True)
class EvaluatedRun(TrainedRun):
    """... evaluated on its validation and test days."""

    gate_metric: float  # the metric the promotion gate compares (NaN when undefined)
    report: str  # the evaluation report's local file


@dataclasses.dataclass(frozen=True)
class RegisteredVersion(EvaluatedRun):
    """... registered as a new version with the challenger alias."""

    version: str  # the registered model's new version


@dataclasses.dataclass(frozen=True)
class Promotion(RegisteredVersion):
    """... and the gate's decision."""

    promoted: bool  # the version now holds the champion alias
    reason: str  # why, in words (also on the version's and the run's tags)
    champion: str | None  # the champion version after the decision


def extend(value: TrainedRun, cls: type, **fields):
    """`value` as the next step's type, with that step's fields added."""
    return cls(**dataclasses.asdict(value), **fields)
