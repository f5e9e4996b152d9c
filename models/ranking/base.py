"""What every ranker shares: its kinds, its tasks, its output columns, its interface and meta.

    scores = ranker.predict(feature_frame(rows))   # p_<action>, e_dwell_s, value_score

Every kind saves a `ranker.json` with `"kind"` beside its own files (`write_meta`); a folder
without one is a GBDT saved before kinds existed. Loading a folder by its kind is
models.ranking.load's, the one module that knows every kind; this one imports none of them.
A GBDT folder with compiled boosters (COMPILED) loads as models.ranking.compiled's
CompiledRanker where they fit the CPU.
"""

from __future__ import annotations

import json
from typing import Protocol, runtime_checkable

import pandas as pd

from models.value import ValueWeights
from warehouse.catalog import ACTIONS, truth_column
from warehouse.layout import Folder

GBDT, DNN, ENSEMBLE = "gbdt", "dnn", "ensemble"
KINDS = (GBDT, DNN, ENSEMBLE)  # the registry's `feedrank.kind` tag takes one of these
MEMBER_KINDS = (GBDT, DNN)  # kinds trained on examples; an ensemble is made of them
META = "ranker.json"  # every kind's description file, with "kind"
DWELL = "dwell"  # the dwell regressor's task name
# A ranker's value-model output column (warehouse.catalog.C.SCORE is the feed's re-ranked score).
VALUE_SCORE = "score"
TASKS = (*ACTIONS, DWELL)  # every task a ranker models: each action, and dwell given a click


class IncompatibleRanker(ValueError):
    """A ranker trained on other feature columns than the current feature frame."""


def prediction_column(action: str) -> str:
    """The column of an action's calibrated probability in a ranker's predict (p_click, ...)."""
    return truth_column(action)  # the same names as the oracle's, so reports line up


COMPILED = "compiled"  # a saved GBDT's compiled boosters, if any (models.ranking.compiled)


@runtime_checkable
class RankerLike(Protocol):
    """What training, evaluation, the registry and feed scoring use of a ranker."""

    kind: str  # one of KINDS
    features: tuple[str, ...]  # the feature-frame columns it reads
    absent: tuple[str, ...]  # tasks without a model (their probability is 0)
    negative_rate: float  # share of negatives its raw output was trained on
    weights: ValueWeights  # the value model's weights of its `score`

    @property
    def debiased(self) -> bool:
        """Whether position and source were training inputs (fixed when scoring)."""
        ...

    def predict(
        self, X: pd.DataFrame, *, corrected: bool = True, logged_bias: bool = False
    ) -> pd.DataFrame:
        """p_<action> per action, e_dwell_s (given a click) and the value score, per row."""
        ...

    def save(self, folder: Folder) -> Folder:
        """Write the ranker's files and META (with "kind") into `folder`; the folder."""
        ...


def write_meta(folder: Folder, meta: dict) -> None:
    """Write a ranker's description (with "kind") as META into `folder`."""
    folder.writable(META).write_text(json.dumps(meta, indent=2))


def read_meta(folder: Folder) -> dict:
    """The description a saved ranker folder holds in META."""
    return json.loads(folder.file(META).read_text())


def ranker_kind(folder: Folder) -> str:
    """The kind a saved ranker folder names (no "kind": a GBDT saved before kinds)."""
    return read_meta(folder).get("kind", GBDT)
