"""The ensemble ranker: several trained rankers (GBDT, DNN) combined per action.

    ensemble, history = fit_ensemble(members, val, settings.training)
    scores = ensemble.predict(feature_frame(rows))        # p_<action>, e_dwell_s, score

Per action the members' calibrated probabilities are combined on the logit scale: by their
mean (`training.ensemble.combine = "average"`, the default) or by a logistic stacker, one
weight per member and an intercept, fitted on validation days (`"stacker"`).

The default is the average because the gate compares every kind on the validation days: an
average fits nothing there, so its validation NDCG is as honest as its members'. A stacker
fits on `stacker_share` of the validation users (a seeded hash of user_id) and the history
logs its log loss on those users and on the others beside the average's, so the in-sample
part of its gain is visible; with a few coefficients per task, it stays small.

E[dwell | click] is the members' mean; the value score is models.value.value_score of the
combined probabilities, as for any ranker. A task is absent only if every member lacks it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import expit

from models.evaluation.metrics import log_loss
from models.ranking.base import (
    DWELL,
    ENSEMBLE,
    TASKS,
    VALUE_SCORE,
    RankerLike,
    prediction_column,
    read_meta,
    write_meta,
)
from models.ranking.config import TrainingSettings
from models.ranking.dataset import INPUTS, Examples
from models.value import ValueWeights, value_score
from warehouse.catalog import ACTIONS, C, label_column
from warehouse.layout import Folder

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] before taking logits


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(q) - np.log1p(-q)


@dataclasses.dataclass(frozen=True)
class Stacker:
    """A logistic combination of the logits of the members that model a task."""

    coef: tuple[float, ...]  # one per member having the task, in the members' order
    intercept: float

    def apply(self, z: np.ndarray) -> np.ndarray:
        """Logits (n, members) -> the combined logit (n,)."""
        return z @ np.asarray(self.coef) + self.intercept


class EnsembleRanker:
    """Members' predictions combined per action (see the module): the ranker interface."""

    kind = ENSEMBLE

    def __init__(
        self,
        members: Sequence[RankerLike],
        weights: ValueWeights,
        stackers: Mapping[str, Stacker] | None = None,
    ):
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        rates = {float(m.negative_rate) for m in members}
        if len(rates) != 1:  # `corrected=False` maps back to one sampled scale
            raise ValueError(f"members must share their negative_rate, got {sorted(rates)}")
        self.members = tuple(members)
        self.weights = weights
        self.stackers = dict(stackers or {})
        self.negative_rate = rates.pop()
        self.features = tuple(c for c in INPUTS if any(c in m.features for m in members))
        self.absent = tuple(t for t in TASKS if all(t in m.absent for m in members))
        for task, stacker in self.stackers.items():
            if len(stacker.coef) != len(self._having(task)):
                raise ValueError(f"the {task} stacker has a weight per member that models it")

    @property
    def combine(self) -> str:
        return "stacker" if self.stackers else "average"

    @property
    def debiased(self) -> bool:
        return any(m.debiased for m in self.members)

    def _having(self, task: str) -> list[int]:
        return [i for i, m in enumerate(self.members) if task not in m.absent]

    def member_logits(self, preds: Sequence[pd.DataFrame], action: str) -> np.ndarray:
        """The calibrated logits of the members that model `action`: (n, members)."""
        col = prediction_column(action)
        return np.column_stack([logit(preds[i][col].to_numpy()) for i in self._having(action)])

    def predict(
        self, X: pd.DataFrame, *, corrected: bool = True, logged_bias: bool = False
    ) -> pd.DataFrame:
        """p_<action>, e_dwell_s and the value score per row, as every ranker's predict."""
        preds = [m.predict(X, logged_bias=logged_bias) for m in self.members]
        out = {}
        for a in ACTIONS:
            if a in self.absent:
                out[prediction_column(a)] = np.zeros(len(X))
                continue
            z = self.member_logits(preds, a)
            combined = self.stackers[a].apply(z) if a in self.stackers else z.mean(axis=1)
            if not corrected:  # back to the sampled scale: the correction adds log(rate)
                combined = combined - np.log(self.negative_rate)
            out[prediction_column(a)] = expit(combined)
        having = self._having(DWELL)
        dwell = (
            np.mean([preds[i][C.E_DWELL_S].to_numpy() for i in having], axis=0)
            if having
            else np.zeros(len(X))
        )
        out[C.E_DWELL_S] = dwell
        probs = {a: out[prediction_column(a)] for a in ACTIONS}
        out[VALUE_SCORE] = value_score(probs, dwell, self.weights, dwell_given_click=True)
        return pd.DataFrame(out, index=X.index)

    def save(self, folder: Folder) -> Folder:
        """Each member in its own subfolder (member_0, ...), the rest as ranker.json."""
        names = []
        for i, member in enumerate(self.members):
            names.append(f"member_{i}")
            member.save(folder.sub(names[-1]))
        meta = {
            "kind": self.kind,
            "format_version": FORMAT_VERSION,
            "weights": self.weights.model_dump(),
            "members": names,
            "stackers": {t: dataclasses.asdict(s) for t, s in self.stackers.items()},
        }
        write_meta(folder, meta)
        return folder

    @classmethod
    def load(cls, folder: Folder, load_member: Callable[[Folder], RankerLike]) -> EnsembleRanker:
        """The ensemble saved in `folder`, each member loaded by `load_member` (the kind-aware
        loader, models.ranking.load.load_ranker_folder)."""
        meta = read_meta(folder)
        if meta.get("kind") != ENSEMBLE or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: not an ensemble of format {FORMAT_VERSION}")
        members = [load_member(folder.sub(name)) for name in meta["members"]]
        stackers = {
            t: Stacker(tuple(s["coef"]), float(s["intercept"])) for t, s in meta["stackers"].items()
        }
        return cls(members, ValueWeights(**meta["weights"]), stackers)


@dataclasses.dataclass
class EnsembleHistory:
    """What fitting the ensemble did, in the fields models.registry.runs logs of any history."""

    rows: dict[str, int] = dataclasses.field(default_factory=dict)  # stacker fit rows
    positives: dict[str, int] = dataclasses.field(default_factory=dict)
    curves: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    best_iteration: dict[str, int] = dataclasses.field(default_factory=dict)
    metric: dict[str, str] = dataclasses.field(default_factory=dict)
    extra: dict[str, float] = dataclasses.field(default_factory=dict)  # logged as metrics

    def metrics(self) -> dict[str, float]:
        return dict(self.extra)


def user_fold(user_ids: np.ndarray, seed: int) -> np.ndarray:
    """A uniform draw in [0, 1) per user (splitmix64 of user_id and seed): same user, same
    draw, so a user's requests fall on one side of a split."""
    with np.errstate(over="ignore"):
        z = np.asarray(user_ids, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(
            seed + 1
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def fit_ensemble(
    members: Sequence[RankerLike], val: Examples, settings: TrainingSettings
) -> tuple[EnsembleRanker, EnsembleHistory]:
    """The ensemble of `members` as `settings.ensemble` says: averaged logits, or a stacker
    per action fitted on part of the validation days `val` (see the module)."""
    history = EnsembleHistory()
    cfg = settings.ensemble
    if cfg.combine == "average":
        return EnsembleRanker(members, settings.value), history
    from sklearn.linear_model import LogisticRegression

    base = EnsembleRanker(members, settings.value)
    # Per-task quality is measured where each post was shown: the members' logged-bias view.
    preds = [m.predict(val.X, logged_bias=True) for m in members]
    fit = user_fold(val.X[C.USER_ID].to_numpy(), settings.seed) < cfg.stacker_share
    stackers = {}
    for a in (a for a in ACTIONS if a not in base.absent):
        z, y = base.member_logits(preds, a), val.labels[label_column(a)].to_numpy()
        if y[fit].min() == y[fit].max() or y[~fit].min() == y[~fit].max():
            log.warning("%s: one class only on a side of the validation split: averaged", a)
            continue
        model = LogisticRegression(C=cfg.stacker_c).fit(z[fit], y[fit])
        stackers[a] = Stacker(tuple(float(c) for c in model.coef_[0]), float(model.intercept_[0]))
        history.rows[a], history.positives[a] = int(fit.sum()), int(y[fit].sum())
        stacked, averaged = expit(stackers[a].apply(z)), expit(z.mean(axis=1))
        for side, rows in (("fit", fit), ("held_out", ~fit)):
            history.extra[f"ensemble/{a}/logloss_{side}"] = log_loss(y[rows], stacked[rows])
            history.extra[f"ensemble/{a}/logloss_{side}_average"] = log_loss(
                y[rows], averaged[rows]
            )
        for i, c in enumerate(stackers[a].coef):
            history.extra[f"ensemble/{a}/coef_{i}"] = c
    return EnsembleRanker(members, settings.value, stackers), history
