"""The value model: one number per candidate that the feed is sorted by.

score = sum_a w_a * P(a) + w_dwell * E[dwell], with negative weights for hide and report. The
same weights applied to what a viewer actually did give the realised value of an impression,
which is the ground-truth relevance for NDCG and MAP of a request.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict

from warehouse.catalog import ACTIONS, CLICK, C


class ValueWeights(BaseModel):
    """Worth of each action to the platform, in units of one click.

    Seeds: likes and comments are the engagement the feed is for, shares spread it but are
    rarer and noisier, a hide costs ten clicks and a report fifty (it flags harm, not just
    disinterest); dwell adds 0.02 per second, so a 50 s read is worth one click.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    click: float = 1.0  # a click, whatever follows it
    like: float = 5.0  # a like
    comment: float = 5.0  # a comment
    share: float = 3.0  # a share
    hide: float = -10.0  # a hide: the viewer did not want this
    report: float = -50.0  # a report: the post may be harmful
    dwell_per_s: float = 0.02  # per second of dwell (dwell is logged on clicks only)

    def action_weights(self) -> dict[str, float]:
        """The weight of each action in catalog.ACTIONS, in that order."""
        return {a: getattr(self, a) for a in ACTIONS}


def value_score(
    probs: Mapping[str, ArrayLike],
    e_dwell: ArrayLike,
    weights: ValueWeights,
    *,
    dwell_given_click: bool = False,
) -> np.ndarray:
    """Expected value of each candidate: sum_a w_a * P(a) + w_dwell * E[dwell].

    `probs` maps action -> (n,) probabilities; an action may be left out only if its weight is
    0, and names outside catalog.ACTIONS raise. `e_dwell` is the unconditional expected dwell
    in seconds; pass a dwell model's E[dwell | click] with dwell_given_click=True and it is
    multiplied by P(click), since dwell is only logged (and realised) on clicks.
    """
    unknown = set(probs) - set(ACTIONS)
    if unknown:
        raise KeyError(f"unknown actions {sorted(unknown)}; expected some of {ACTIONS}")
    dwell = np.asarray(e_dwell, dtype=np.float64)
    if dwell.ndim != 1:
        raise ValueError(f"e_dwell must be 1-D, got shape {dwell.shape}")
    if dwell_given_click:
        dwell = dwell * _column(probs, CLICK, dwell.shape)
    score = weights.dwell_per_s * dwell
    for action, w in weights.action_weights().items():
        if w == 0.0 and action not in probs:
            continue
        score = score + w * _column(probs, action, dwell.shape)
    return score


def _column(probs: Mapping[str, ArrayLike], action: str, shape: tuple[int, ...]) -> np.ndarray:
    if action not in probs:
        raise KeyError(f"no probabilities for {action!r}, which has a non-zero weight")
    arr = np.asarray(probs[action], dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"P({action}) has shape {arr.shape}, expected {shape}")
    return arr


def realised_value(
    labels: pd.DataFrame,
    weights: ValueWeights,
    *,
    action_columns: Mapping[str, str] | None = None,
    dwell_col: str = C.DWELL_S,
) -> np.ndarray:
    """Value of what happened on each impression: the value weights on realised outcomes.

    `labels` has one 0/1 column per action (named by the action unless `action_columns` maps
    action -> column) and the dwell seconds in `dwell_col`, missing (NaN) where there was no
    click, which counts as 0. Returns (n,) floats in the row order of `labels`.
    """
    columns = {a: a for a in ACTIONS} if action_columns is None else dict(action_columns)
    realised = {a: labels[columns[a]].to_numpy(dtype=np.float64) for a in ACTIONS}
    bad = [a for a, v in realised.items() if not np.isin(v, (0.0, 1.0)).all()]
    if bad:
        raise ValueError(f"label columns must hold 0/1, not so for {bad}")
    dwell = np.nan_to_num(labels[dwell_col].to_numpy(dtype=np.float64), nan=0.0)
    return value_score(realised, dwell, weights)
