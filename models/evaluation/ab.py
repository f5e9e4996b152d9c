"""The A/B report of a closed-loop simulation: treatment (ranked feeds) against control
(reverse-chronological), per day and pooled over the days.

The unit of analysis is the user: users are randomised, and a user's impressions are not
independent of each other, so every statistic resamples or linearises over users (clusters),
never over impressions. The active users of a (ds, bucket) are those with >= 1 impression.

Every metric is a ratio of per-user sums, sum(num) / sum(den) over the bucket's users:

    value_per_user     value / active days      value: models.value.value_score of the counts
                                                and dwell (the summed realised value)
    sessions_per_user  sessions / active days   sessions: distinct request_id
    ctr                clicks / impressions     (the click rate: there is no click_rate)
    <action>_rate      action / impressions     like, comment, share, hide, report
    negative_rate      (hide + report) / impressions
    dwell_per_session  dwell seconds / sessions

On one day every user has one active day, so value_per_user and sessions_per_user are plain
means of per-user values. Pooled over the days (ds = "all") a user's sums run over the days,
and they become per active user-day, each user weighted by their days.

Statistics, one choice for every metric:
* lift = treatment / control - 1, relative: 0.31 is +31%.
* CI: percentile bootstrap over users, resampled within each bucket, seeded; the draws of a ds
  are shared by its metrics. A draw's sums are a (draws, users) count matrix times the
  (users, columns) sums: 2000 draws of 10K users take about 0.25 s on one core, per ds.
* p-value: where every denominator is 1 (a mean of per-user values), Welch's t-test on the
  per-user values; otherwise a two-sided z-test of treatment - control with delta-method
  standard errors (`ratio_estimate`), which for denominators of 1 is the usual standard error
  of a mean. CI and p-value are computed separately, so at the margin they may disagree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy import stats

from models.evaluation.markdown import markdown as md_table
from models.value import ValueWeights, value_score
from warehouse.catalog import ACTIONS, BUCKETS, CLICK, NEGATIVE_ACTIONS, C

CONTROL, TREATMENT = BUCKETS
ALL = "all"  # the ds of the rows pooled over every day
IMPRESSIONS, SESSIONS, NEGATIVE, DAYS = "impressions", "sessions", "negative", "active_days"
VALUE_PER_USER = "value_per_user"
RATE_ACTIONS = tuple(a for a in ACTIONS if a != CLICK)  # the click rate is `ctr`
METRICS: dict[str, tuple[str, str]] = {  # metric -> (numerator, denominator) per-user sums
    VALUE_PER_USER: (C.VALUE, DAYS),
    "sessions_per_user": (SESSIONS, DAYS),
    "ctr": (CLICK, IMPRESSIONS),
    **{f"{a}_rate": (a, IMPRESSIONS) for a in RATE_ACTIONS},
    "negative_rate": (NEGATIVE, IMPRESSIONS),
    "dwell_per_session": (C.DWELL_S, SESSIONS),
}
ACTION_METRICS = ("ctr", *(f"{a}_rate" for a in RATE_ACTIONS), "negative_rate")
STATS = ("lift", "ci_low", "ci_high", "p_value")
TABLE_COLUMNS = ("metric", C.DS, CONTROL, TREATMENT, *STATS, "n_control", "n_treatment")
_SUMS = (DAYS, IMPRESSIONS, SESSIONS, *ACTIONS, NEGATIVE, C.DWELL_S, C.VALUE)
_COL = {name: i for i, name in enumerate(_SUMS)}
_CHUNK = 1 << 22  # bootstrap counts held at once (draws x users): 32 MiB of float64


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate and its standard error."""

    value: float  # the estimate
    se: float  # its standard error (NaN with fewer than 2 units)


def user_metrics(
    impressions: pd.DataFrame,
    engagements: pd.DataFrame,
    weights: ValueWeights,
    buckets: Sequence[str] = BUCKETS,
) -> pd.DataFrame:
    """Per (ds, bucket, user_id) of the active users: impressions, sessions, each action's
    count, negative (hide + report), dwell_s (seconds) and value.

    impressions: ds, bucket, user_id, request_id, impression_id (unique); engagements:
    impression_id, action, dwell_s (NaN off clicks). Engagements on impressions not given are
    left out. value is the value model's score of the user's counts and dwell, so it equals
    the sum of models.value.realised_value over the user's impressions. A user in more than
    one bucket, a bucket outside `buckets` or an unknown action raises ValueError.
    """
    keys = [C.DS, C.BUCKET, C.USER_ID]
    _require(impressions, [*keys, C.REQUEST_ID, C.IMPRESSION_ID], "impressions")
    _require(engagements, [C.IMPRESSION_ID, C.ACTION, C.DWELL_S], "engagements")
    _check_values(impressions[C.BUCKET], buckets, "buckets")
    _check_values(engagements[C.ACTION], ACTIONS, "actions")
    if impressions[C.IMPRESSION_ID].duplicated().any():
        raise ValueError("impression_id must be unique in impressions")
    arms = impressions.groupby(C.USER_ID)[C.BUCKET].nunique()
    if (arms > 1).any():
        raise ValueError(f"{int((arms > 1).sum())} users are in more than one bucket")
    imp = impressions[[*keys, C.REQUEST_ID, C.IMPRESSION_ID]]
    out = imp.groupby(keys).agg(
        **{IMPRESSIONS: (C.IMPRESSION_ID, "size"), SESSIONS: (C.REQUEST_ID, "nunique")}
    )
    eng = engagements[[C.IMPRESSION_ID, C.ACTION, C.DWELL_S]].merge(
        imp[[C.IMPRESSION_ID, *keys]], on=C.IMPRESSION_ID, how="inner"
    )
    flags = {a: (eng[C.ACTION] == a).to_numpy(np.int64) for a in ACTIONS}
    per_user = (
        eng[keys]
        .assign(**flags, **{C.DWELL_S: eng[C.DWELL_S].fillna(0.0).to_numpy(np.float64)})
        .groupby(keys)
        .sum()
    )
    out = out.join(per_user, how="left").fillna(0)
    out[list(ACTIONS)] = out[list(ACTIONS)].astype(np.int64)
    out[NEGATIVE] = out[list(NEGATIVE_ACTIONS)].sum(axis=1)
    counts = {a: out[a].to_numpy(np.float64) for a in ACTIONS}
    out[C.VALUE] = value_score(counts, out[C.DWELL_S].to_numpy(np.float64), weights)
    return out.reset_index().sort_values(keys, kind="stable", ignore_index=True)


def bucket_metrics(users: pd.DataFrame, buckets: Sequence[str] = BUCKETS) -> pd.DataFrame:
    """Every metric per (ds, bucket), each day then pooled (ds = "all"): n_users and METRICS.

    `users` is `user_metrics`'s output."""
    rows = []
    for ds, groups in _slices(users, buckets):
        for bucket in buckets:
            x = groups[bucket]
            with np.errstate(divide="ignore", invalid="ignore"):  # NaN where no users
                ratios = {m: _ratio(x.sum(axis=0), m) for m in METRICS}
            rows.append({C.DS: ds, C.BUCKET: bucket, "n_users": len(x), **ratios})
    return pd.DataFrame(rows)


def compare(
    users: pd.DataFrame,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    control: str = CONTROL,
    treatment: str = TREATMENT,
) -> pd.DataFrame:
    """Lift of treatment over control for every metric, each day then pooled (ds = "all").

    `users` is `user_metrics`'s output. Columns TABLE_COLUMNS: control and treatment are the
    bucket's metric, lift is relative, [ci_low, ci_high] its (1 - alpha) percentile bootstrap
    interval over `n_boot` draws of users from `seed`, and p_value as the module says.
    """
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < alpha < 1, got {n_boot} and {alpha}")
    rng = np.random.default_rng(seed)
    rows = []
    for ds, groups in _slices(users, (control, treatment)):
        xc, xt = groups[control], groups[treatment]
        if len(xc) == 0 or len(xt) == 0:
            raise ValueError(
                f"ds {ds}: no active users in {control if len(xc) == 0 else treatment}"
            )
        boot_c, boot_t = _bootstrap_sums(xc, n_boot, rng), _bootstrap_sums(xt, n_boot, rng)
        for metric, (num, den) in METRICS.items():
            rc, rt = _ratio(xc.sum(axis=0), metric), _ratio(xt.sum(axis=0), metric)
            with np.errstate(divide="ignore", invalid="ignore"):
                lifts = _ratio(boot_t, metric) / _ratio(boot_c, metric) - 1.0
                lift = rt / rc - 1.0
                lo, hi = np.quantile(lifts, [alpha / 2, 1 - alpha / 2])
            p = _p_value(xc[:, _COL[num]], xc[:, _COL[den]], xt[:, _COL[num]], xt[:, _COL[den]])
            rows.append((metric, ds, rc, rt, lift, lo, hi, p, len(xc), len(xt)))
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def ratio_estimate(num: ArrayLike, den: ArrayLike) -> Estimate:
    """sum(num) / sum(den) over units, with its delta-method standard error.

    R = mean(num) / mean(den); se^2 = var(num - R den) / (n mean(den)^2), the variance taken
    with n - 1 (for den == 1 this is the standard error of the mean of num)."""
    y, x = _vector(num, "num"), _vector(den, "den")
    if y.shape != x.shape or y.size == 0:
        raise ValueError(f"num and den must be non-empty and aligned: {y.shape} vs {x.shape}")
    if x.sum() == 0:
        raise ValueError("den sums to 0: the ratio is undefined")
    ratio = y.sum() / x.sum()
    if y.size < 2:
        return Estimate(float(ratio), float("nan"))
    resid = y - ratio * x
    return Estimate(float(ratio), float(np.sqrt(resid.var(ddof=1) / y.size) / abs(x.mean())))


def ips(rewards: ArrayLike, target_prob: ArrayLike, logging_prob: ArrayLike) -> Estimate:
    """Inverse propensity scoring: mean of w r, w = target_prob / logging_prob, with the
    analytic standard error of that mean.

    One row per logged decision: its reward, and the probability of the logged action under
    the target and the logging policy. Unbiased only under support: logging_prob > 0 wherever
    target_prob > 0. Logged rows satisfy it by construction (checked: logging_prob in (0, 1]);
    an action the logging policy never takes but the target does is invisible here, and its
    value is missing from the estimate."""
    r, w = _importance(rewards, target_prob, logging_prob)
    wr = w * r
    se = wr.std(ddof=1) / np.sqrt(wr.size) if wr.size > 1 else np.nan
    return Estimate(float(wr.mean()), float(se))


def snips(rewards: ArrayLike, target_prob: ArrayLike, logging_prob: ArrayLike) -> Estimate:
    """Self-normalised IPS: sum(w r) / sum(w), with its delta-method standard error.

    Same inputs and support assumption as `ips`; slightly biased, much lower variance when the
    weights are large."""
    r, w = _importance(rewards, target_prob, logging_prob)
    if w.sum() == 0:
        raise ValueError("target_prob is 0 on every logged action: SNIPS is undefined")
    return ratio_estimate(w * r, w)


def mlflow_metrics(table: pd.DataFrame) -> dict[str, float]:
    """ab/<metric>/{lift, ci_low, ci_high, p_value} of the pooled rows; non-finite left out."""
    pooled = table[table[C.DS] == ALL]
    out = {
        f"ab/{row['metric']}/{stat}": float(row[stat])
        for _, row in pooled.iterrows()
        for stat in STATS
    }
    return {k: v for k, v in out.items() if np.isfinite(v)}


def daily_lift_figure(table: pd.DataFrame, metric: str = VALUE_PER_USER) -> Figure:
    """Lift of `metric` per day with its CI (error bars); the pooled lift and CI shaded."""
    rows = table[table["metric"] == metric]
    days, pooled = rows[rows[C.DS] != ALL], rows[rows[C.DS] == ALL]
    if days.empty:
        raise ValueError(f"no daily rows of {metric!r} in the table")
    fig = Figure(figsize=(max(5.0, 0.6 * len(days) + 3.0), 3.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(days))
    lift, err = _percent_errors(days)
    ax.errorbar(x, lift, yerr=err, fmt="o", capsize=3, color="tab:blue", label="daily")
    if not pooled.empty:
        p = pooled.iloc[0]
        ax.axhspan(100 * p["ci_low"], 100 * p["ci_high"], color="tab:blue", alpha=0.15)
        ax.axhline(100 * p["lift"], color="tab:blue", linewidth=1, label="pooled")
    ax.axhline(0.0, linestyle="--", color="0.5", linewidth=1)
    ax.set_xticks(x, [str(d) for d in days[C.DS]])
    ax.tick_params(axis="x", labelrotation=45)
    ax.set_ylabel(f"lift of {metric} (%)")
    ax.set_title(f"{metric}: treatment vs control, bootstrap CI")
    ax.legend(fontsize="small")
    return fig


def action_lift_figure(table: pd.DataFrame, ds: str = ALL) -> Figure:
    """Lift of each action's rate with its CI, on day `ds` (pooled by default); negative
    actions in red, where a rise is a loss."""
    rows = table[(table[C.DS] == ds) & table["metric"].isin(ACTION_METRICS)]
    if rows.empty:
        raise ValueError(f"no action-rate rows for ds {ds!r} in the table")
    rows = rows.set_index("metric").loc[[m for m in ACTION_METRICS if m in set(rows["metric"])]]
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.subplots()
    negative = {f"{a}_rate" for a in NEGATIVE_ACTIONS} | {"negative_rate"}
    colors = ["tab:red" if m in negative else "tab:blue" for m in rows.index]
    lift, err = _percent_errors(rows)
    ax.bar(np.arange(len(rows)), lift, yerr=err, capsize=3, color=colors)
    ax.axhline(0.0, color="0.3", linewidth=1)
    ax.set_xticks(np.arange(len(rows)), list(rows.index))
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_ylabel("lift (%)")
    ax.set_title(f"rates per impression, treatment vs control ({ds})")
    return fig


def markdown(table: pd.DataFrame, ds: str = ALL, title: str = "A/B test") -> str:
    """The report of day `ds` (pooled by default): per metric control, treatment, lift as
    +x.y%, its CI and the p-value."""
    rows = table[table[C.DS] == ds]
    if rows.empty:
        raise ValueError(f"no rows for ds {ds!r} in the table")
    first = rows.iloc[0]
    shown = pd.DataFrame(
        {
            "metric": rows["metric"],
            CONTROL: rows[CONTROL].map(lambda v: f"{v:.4g}"),
            TREATMENT: rows[TREATMENT].map(lambda v: f"{v:.4g}"),
            "lift": rows["lift"].map(lambda v: f"{100 * v:+.1f}%"),
            "CI": [
                f"[{100 * lo:+.1f}%, {100 * hi:+.1f}%]"
                for lo, hi in rows[["ci_low", "ci_high"]].to_numpy()
            ],
            "p-value": rows["p_value"].map(lambda v: f"{v:.2g}"),
        }
    )
    when = "pooled over days" if ds == ALL else f"ds {ds}"
    return "\n".join(
        [
            f"# {title}",
            "",
            f"Treatment vs control, {when}: {first['n_control']} control and "
            f"{first['n_treatment']} treatment users. CI: percentile bootstrap over users; "
            "p-value: Welch's t-test for per-user means, delta-method z-test for ratios.",
            "",
            md_table(shown),
            "",
        ]
    )


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"{name} lacks columns {missing}")


def _check_values(values: pd.Series, allowed: Sequence[str], name: str) -> None:
    unknown = set(values.unique()) - set(allowed)
    if unknown:
        raise ValueError(f"unknown {name} {sorted(map(str, unknown))}; expected {list(allowed)}")


def _slices(users: pd.DataFrame, buckets: Sequence[str]):
    """(ds, {bucket: (users, len(_SUMS)) sums}) per day in order, then pooled over days."""
    _require(users, [C.DS, C.BUCKET, C.USER_ID, *_SUMS[1:]], "users")
    frame = users.assign(**{DAYS: 1})
    pooled = frame.groupby([C.BUCKET, C.USER_ID], sort=True)[list(_SUMS)].sum().reset_index()
    parts = [(str(ds), day) for ds, day in frame.groupby(C.DS, sort=True)]
    for ds, part in [*parts, (ALL, pooled)]:
        yield (
            ds,
            {b: part.loc[part[C.BUCKET] == b, list(_SUMS)].to_numpy(np.float64) for b in buckets},
        )


def _ratio(sums: np.ndarray, metric: str) -> np.ndarray | float:
    """A metric from column sums: (len(_SUMS),) -> float, or (draws, len(_SUMS)) -> (draws,)."""
    num, den = METRICS[metric]
    return sums[..., _COL[num]] / sums[..., _COL[den]]


def _bootstrap_sums(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Column sums of `n_boot` resamples of the rows of x (users, k): (n_boot, k)."""
    n = len(x)
    out = np.empty((n_boot, x.shape[1]))
    step = max(1, _CHUNK // n)
    for start in range(0, n_boot, step):
        b = min(step, n_boot - start)
        idx = rng.integers(0, n, size=(b, n), dtype=np.uint32) + (np.arange(b) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n)  # times drawn
        out[start : start + b] = counts.astype(np.float64) @ x
    return out


def _p_value(num_c: np.ndarray, den_c: np.ndarray, num_t: np.ndarray, den_t: np.ndarray) -> float:
    if (den_c == 1).all() and (den_t == 1).all():
        if min(len(num_c), len(num_t)) < 2 or num_c.var() + num_t.var() == 0:
            return float("nan")  # Welch's t is undefined
        return float(stats.ttest_ind(num_t, num_c, equal_var=False).pvalue)
    c, t = ratio_estimate(num_c, den_c), ratio_estimate(num_t, den_t)
    se = np.hypot(c.se, t.se)
    if not se > 0:
        return float("nan")
    return float(2 * stats.norm.sf(abs(t.value - c.value) / se))


def _vector(a: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 1 or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be 1-D and finite, got shape {arr.shape}")
    return arr


def _importance(
    rewards: ArrayLike, target_prob: ArrayLike, logging_prob: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Rewards and importance weights target / logging, after checking the inputs."""
    r, pt, pl = (
        _vector(v, n)
        for v, n in (
            (rewards, "rewards"),
            (target_prob, "target_prob"),
            (logging_prob, "logging_prob"),
        )
    )
    if not r.shape == pt.shape == pl.shape or r.size == 0:
        raise ValueError(f"misaligned or empty arrays: {r.shape}, {pt.shape}, {pl.shape}")
    if not ((pl > 0) & (pl <= 1)).all():
        raise ValueError("logging_prob must be in (0, 1]: a logged action had to be possible")
    if not ((pt >= 0) & (pt <= 1)).all():
        raise ValueError("target_prob must be in [0, 1]")
    return r, pt / pl


def _percent_errors(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Lift in percent and the (2, n) distances to its CI ends, for errorbar."""
    lift = 100 * rows["lift"].to_numpy(np.float64)
    lo, hi = 100 * rows["ci_low"].to_numpy(np.float64), 100 * rows["ci_high"].to_numpy(np.float64)
    return lift, np.vstack([lift - lo, hi - lift]).clip(min=0)
