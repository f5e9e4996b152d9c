"""Loading a saved ranker by the kind its folder names: the one module that knows every kind.

    ranker = load_ranker_folder(folder)       # a gbdt Ranker, a DnnRanker, an EnsembleRanker

Each kind's module is imported only when a folder of that kind is loaded, so a GBDT loads
without torch (the DNN's modules). An ensemble's members are loaded through this loader too:
`EnsembleRanker.load` receives it, so the ensemble's module imports no other kind.
"""

from __future__ import annotations

from models.ranking.base import COMPILED, DNN, ENSEMBLE, GBDT, KINDS, RankerLike, ranker_kind
from warehouse.layout import Folder


def load_ranker_folder(folder: Folder) -> RankerLike:
    """The ranker saved in `folder`, by the kind its META names."""
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

        return DnnRanker.load(folder)
    if kind == ENSEMBLE:
        from models.ranking.ensemble import EnsembleRanker

        return EnsembleRanker.load(folder, load_ranker_folder)
    raise ValueError(f"{folder}: unknown ranker kind {kind!r}, expected one of {KINDS}")


def member_kinds(ranker: RankerLike) -> tuple[str, ...]:
    """The kinds of models inside a ranker: its own, or its members' for an ensemble."""
    members = getattr(ranker, "members", None)
    if members is None:
        return (ranker.kind,)
    return tuple(dict.fromkeys(k for m in members for k in member_kinds(m)))
