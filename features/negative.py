"""Negative feedback: smoothed hide and report rates of the post (per post_id, as_of) and of
its author (per author_id, as_of), and the viewer's own hide rate (per user_id, as_of).

Hides and reports count by event_ts, impressions by served_at, both strictly before as_of
(asof_sums over hourly tiles: bucket < as_of <=> ts < as_of). Reports are rare, so they are
counted only here, never per window of the post family (registry.COUNTED_ACTIONS).
"""

from __future__ import annotations

import dataclasses

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features import registry as R
from features.author import ratio
from features.pit import AsofPart, asof_pass, asof_sums, needed, windowed
from features.post import post_events
from features.registry import AS_OF, BUCKET
from features.windows import count_col, kind_buckets
from warehouse.catalog import NEGATIVE_ACTIONS, C

_KINDS = (R.IMPRESSION, *NEGATIVE_ACTIONS)
_IMP, _HIDE, _REPORT = (count_col(k) for k in _KINDS)


@dataclasses.dataclass(frozen=True)
class Priors:
    """The smoothed rates' priors (features.config: hide_prior_rate ... report_prior_strength)."""

    hide_rate: float
    hide_strength: float
    report_rate: float
    report_strength: float


def post_negative_tile(impressions: DataFrame, engagements: DataFrame, posts: DataFrame):
    """Per (post_id, author_id, bucket): impressions of the post (served_at), hides and
    reports on it (event_ts); the author from posts. Every action's hour has a row (zero
    counts for positives only), as in the network tile."""
    ev = post_events(impressions, engagements).join(posts.select(C.POST_ID, C.AUTHOR_ID), C.POST_ID)
    return kind_buckets(ev, [C.POST_ID, C.AUTHOR_ID], "_kind", "_ts", _KINDS, False)


def user_negative_tile(impressions: DataFrame, engagements: DataFrame) -> DataFrame:
    """Per (user_id, bucket): impressions served to the user and the user's hides (every
    action of the user has its hour's row)."""
    imp = impressions.select(
        C.USER_ID, F.lit(R.IMPRESSION).alias("_kind"), F.col(C.SERVED_AT).alias("_ts")
    )
    eng = engagements.select(
        C.USER_ID, F.col(C.ACTION).alias("_kind"), F.col(C.EVENT_TS).alias("_ts")
    )
    return kind_buckets(imp.unionByName(eng), [C.USER_ID], "_kind", "_ts", _KINDS[:2], False)


def _smoothed(
    events: str, window_h: int, prior_rate: float, prior_strength: float, impressions: str = _IMP
):
    """(events + prior_rate * prior_strength) / (impressions + prior_strength), in the window."""
    num = windowed(events, window_h) + prior_rate * prior_strength
    return num / (windowed(impressions, window_h) + prior_strength)


def _rates(
    requests: DataFrame, tile: DataFrame, key: str, window_h: int, names, priors: Priors
) -> DataFrame:
    """Per (key, as_of): the smoothed hide and report rates (names) of the tile's rows of key."""
    sums = asof_sums(requests, tile, [key], BUCKET, [_IMP, _HIDE, _REPORT], [0, window_h])
    p = priors
    return sums.select(
        key,
        AS_OF,
        _smoothed(_HIDE, window_h, p.hide_rate, p.hide_strength).alias(names[0]),
        _smoothed(_REPORT, window_h, p.report_rate, p.report_strength).alias(names[1]),
    )


def post_negative_features(
    impressions_as_of: DataFrame, tile: DataFrame, priors: Priors
) -> DataFrame:
    """Per (post_id, as_of): the post's smoothed hide and report rates over the 7d before
    as_of (the window of its smoothed engagement rate). tile: post_negative_tile."""
    req = needed(impressions_as_of, [C.POST_ID])
    names = (R.POST_SMOOTHED_HIDE_RATE, R.POST_SMOOTHED_REPORT_RATE)
    return _rates(req, tile, C.POST_ID, R.POST_NEGATIVE_WINDOW_H, names, priors)


_A_IMP, _A_HIDE, _A_REPORT = "_an_imp", "_an_hide", "_an_report"
_AUTHOR_LAGS = (0, R.AUTHOR_NEGATIVE_D * 24)


def author_negative_parts(tile: DataFrame) -> list[AsofPart]:
    """author_negative_features' share of a per-author as-of pass (features.pit.asof_pass):
    the post tile's rows as they are (a running sum needs no per-author-hour total first)."""
    own = {_A_IMP: _IMP, _A_HIDE: _HIDE, _A_REPORT: _REPORT}
    return [AsofPart(tile, BUCKET, own, _AUTHOR_LAGS)]


def author_negative_features(
    impressions_as_of: DataFrame,
    tile: DataFrame,
    priors: Priors,
    *,
    sums: DataFrame | None = None,
) -> DataFrame:
    """Per (author_id, as_of): the same rates over all the author's posts, 30d. tile:
    post_negative_tile. sums: a per-author as-of pass holding author_negative_parts, if the
    caller shares one between families."""
    if sums is None:
        req = needed(impressions_as_of, [C.AUTHOR_ID])
        sums = asof_pass(req, [C.AUTHOR_ID], author_negative_parts(tile))
    lag, p = R.AUTHOR_NEGATIVE_D * 24, priors
    hide = _smoothed(_A_HIDE, lag, p.hide_rate, p.hide_strength, _A_IMP)
    report = _smoothed(_A_REPORT, lag, p.report_rate, p.report_strength, _A_IMP)
    return sums.select(
        C.AUTHOR_ID,
        AS_OF,
        hide.alias(R.AUTHOR_SMOOTHED_HIDE_RATE),
        report.alias(R.AUTHOR_SMOOTHED_REPORT_RATE),
    )


_U_IMP, _U_HIDE = "_un_imp", "_un_hide"
_USER_LAGS = (0, R.USER_NEGATIVE_D * 24)


def user_hide_parts(tile: DataFrame) -> list[AsofPart]:
    """user_hide_rate's share of a per-user as-of pass (features.pit.asof_pass)."""
    return [AsofPart(tile, BUCKET, {_U_IMP: _IMP, _U_HIDE: _HIDE}, _USER_LAGS)]


def user_hide_rate(
    impressions_as_of: DataFrame, tile: DataFrame, *, sums: DataFrame | None = None
) -> DataFrame:
    """Per (user_id, as_of): the viewer's hides / impressions served to the viewer over the
    30d before as_of; null before any impression there, like the user's engagement rates
    (a viewer's own rate is known from their own logs, no prior is needed to rank them).
    tile: user_negative_tile. sums: a per-user as-of pass holding user_hide_parts, if the
    caller shares one between families."""
    if sums is None:
        req = needed(impressions_as_of, [C.USER_ID])
        sums = asof_pass(req, [C.USER_ID], user_hide_parts(tile))
    lag = R.USER_NEGATIVE_D * 24
    rate = ratio(windowed(_U_HIDE, lag), windowed(_U_IMP, lag))
    return sums.select(C.USER_ID, AS_OF, rate.alias(R.USER_HIDE_RATE))
