"""Loading a saved ranker by the kind its folder names: the one module that knows every kind.

    ranker = load_ranker_folder(folder)       # a gbdt Ranker, a DnnRanker, an EnsembleRanker

Each kind's module is imported only when a folder of that kind is loaded, so a GBDT loads
without torch (the DNN's modules). An ensemble's members are loaded through this loader too:
`EnsembleRanker.load` receives it, so the ensemble's module imports no other kind.
"""

from __future__ import annotations

import functools

from models.ranking.base import COMPILED, DNN, ENSEMBLE, GBDT, KINDS, RankerLike, ranker_kind
from warehouse.layout import Folder


def load_ranker_folder(folder: Folder, *, serving: bool = False) -> RankerLike:
    """The ranker saved in `folder`, by the kind its META names. `serving`: on its fastest
    exact path for bulk scoring: a GBDT compiled (whenever the folder holds the compiled
    boosters) and a DNN, alone or in an ensemble, on its ONNX graph through onnxruntime
    (tests/models/feed/test_scoring.py holds both to `predict` within 1e-6)."""
    kind = ranker_kind(folder)
    if kind == GBDT:
        from models.ranking.gbdt import Ranker

        ranker = Ranker.load(folder)
        if not folder.file(COMPILED).exists():
            return ranker
        from models.ranking.compiled import load_compiled  # lleaves: only where compiled

        return load_compiled(ranker, folder)
    if kind == DNN:
        from models.ranking.dnn.ranker import DnnRanker

        dnn = DnnRanker.load(folder)
        if serving and dnn.has_onnx:
            dnn.engine = "onnx"
        return dnn
    if kind == ENSEMBLE:
        from models.ranking.ensemble import EnsembleRanker

        return EnsembleRanker.load(folder, functools.partial(load_ranker_folder, serving=serving))
    raise ValueError(f"{folder}: unknown ranker kind {kind!r}, expected one of {KINDS}")


def member_kinds(ranker: RankerLike) -> tuple[str, ...]:
    """The kinds of models inside a ranker: its own, or its members' for an ensemble."""
    members = getattr(ranker, "members", None)
    if members is None:
        return (ranker.kind,)
    return tuple(dict.fromkeys(k for m in members for k in member_kinds(m)))
