"""Negative downsampling for rare actions, and the correction that undoes it.

Positive rates of comment, share, hide and report are well under 1%, so training keeps every
positive and a fraction `rate` of the negatives. A model fitted *unweighted* on such a sample
learns the inflated rate q = p / (p + (1 - p) * rate); `correct_downsampled` maps its
predictions back to p. Use one of the two remedies, never both:

* fit unweighted on the kept rows, then `correct_downsampled(pred, rate)`; or
* fit with weights 1 / rate on the kept negatives, which restores the original class balance
  in the loss, and use the predictions as they are.

The pipeline does the first; the sample is models.ranking.dataset.sample_mask (a Bernoulli thinning
of
the negatives from the draw stored with the training examples).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _check_rate(rate: float) -> float:
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate must be in (0, 1], got {rate}")
    return float(rate)


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
