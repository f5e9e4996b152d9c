"""Negative downsampling for rare actions, and the correction that undoes it.

Positive rates of comment, share, hide and report are well under 1%, so training keeps every
positive and a fraction `rate` of the negatives. A model fitted *unweighted* on such a sample
learns the inflated rate q = p / (p + (1 - p) * rate); `correct_downsampled` maps its
predictions back to p. Use one of the two remedies, never both:

* fit unweighted on the kept rows, then `correct_downsampled(pred, rate)`; or
* fit with `Downsampled.weight[keep]` (1 / rate on kept negatives), which restores the original
  class balance in the loss, and use the predictions as they are.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike


class Downsampled(NamedTuple):
    """Which rows a downsample keeps, and the weight that makes the kept rows stand for all."""

    keep: np.ndarray  # (n,) bool: every positive, about `rate` of the negatives
    weight: np.ndarray  # (n,) float: 1 for positives, 1 / rate for kept negatives, 0 if dropped


def _check_rate(rate: float) -> float:
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate must be in (0, 1], got {rate}")
    return float(rate)


def downsample_negatives(labels: ArrayLike, rate: float, rng: np.random.Generator) -> Downsampled:
    """Keep every positive and each negative independently with probability `rate`.

    Independent draws (not an exact count) keep the sample a Bernoulli thinning, which is what
    the correction and the 1 / rate weights assume. Weights are over all n rows, with 0 on the
    dropped ones, so that sum(weight * x) estimates sum(x) over the full data; train on
    `weight[keep]`.
    """
    rate = _check_rate(rate)
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    positive = y.astype(bool)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must hold only 0 and 1")
    keep = positive | (rng.random(y.size) < rate)
    weight = np.where(positive, 1.0, 1.0 / rate) * keep
    return Downsampled(keep=keep, weight=weight)


def correct_downsampled(p: ArrayLike, rate: float) -> np.ndarray:
    """Map a prediction learnt on downsampled data back to the full data's scale.

    p' = p / (p + (1 - p) / rate), written as rate * p / (rate * p + (1 - p)): the denominator
    is at least `rate`, so there is no division by zero, and p = 0 gives exactly 0 and p = 1
    exactly 1. The same as adding log(rate) to the logit.
    """
    rate = _check_rate(rate)
    arr = np.asarray(p, dtype=np.float64)
    if not ((arr >= 0) & (arr <= 1)).all():
        raise ValueError("p must be probabilities in [0, 1]")
    scaled = rate * arr
    return scaled / (scaled + (1.0 - arr))
