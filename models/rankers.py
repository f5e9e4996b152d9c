"""Ranker kinds: what every ranker offers, and loading a saved one by the kind it names.

    ranker = load_ranker_folder(folder)       # a models.gbdt.Ranker, DnnRanker, EnsembleRanker
    scores = ranker.predict(feature_frame(rows))   # p_<action>, e_dwell_s, score

Every kind saves a `ranker.json` with `"kind"` beside its own files; a folder without one is
a GBDT saved before kinds existed; a GBDT folder with compiled boosters (COMPILED) loads
as models.gbdt_compiled.CompiledRanker where they fit the CPU. Each kind's module is
imported only when a folder of that kind is loaded, so a GBDT loads without torch (the
DNN's modules).
"""

from __future__ import annotations

import json
from typing import Protocol, runtime_checkable

import pandas as pd

from models.value import ValueWeights
from warehouse.layout import Folder

GBDT, DNN, ENSEMBLE = "gbdt", "dnn", "ensemble"
KINDS = (GBDT, DNN, ENSEMBLE)  # the registry's `feedrank.kind` tag takes one of these
MEMBER_KINDS = (GBDT, DNN)  # kinds trained on examples; an ensemble is made of them
KIND_TAG = "feedrank.kind"  # on a ranker's MLflow run and its registered version
META = "ranker.json"  # every kind's description file, with "kind"
COMPILED = "compiled"  # a saved GBDT's compiled boosters, if any (models.gbdt_compiled)


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


def load_ranker_folder(folder: Folder) -> RankerLike:
    """The ranker saved in `folder`, by the kind its META names."""
    kind = ranker_kind(folder)
    if kind == GBDT:
        from models.gbdt import Ranker

        ranker = Ranker.load(folder)
        if not folder.file(COMPILED).exists():
            return ranker
        from models.gbdt_compiled import load_compiled  # lleaves: only where compiled

        return load_compiled(ranker, folder)
    if kind == DNN:
        from models.dnn import DnnRanker

        return DnnRanker.load(folder)
    if kind == ENSEMBLE:
        from models.ensemble import EnsembleRanker

        return EnsembleRanker.load(folder)
    raise ValueError(f"{folder}: unknown ranker kind {kind!r}, expected one of {KINDS}")


def member_kinds(ranker: RankerLike) -> tuple[str, ...]:
    """The kinds of models inside a ranker: its own, or its members' for an ensemble."""
    members = getattr(ranker, "members", None)
    if members is None:
        return (ranker.kind,)
    return tuple(dict.fromkeys(k for m in members for k in member_kinds(m)))
