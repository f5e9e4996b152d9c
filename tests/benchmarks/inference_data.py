"""Synthetic feature rows shaped like the feed's: per-request viewer columns, per-post columns.

    table = requests(rng, n_requests=10, size=500)      # Arrow, as the precompute scores it
    train = examples(rng, n_requests=4_000, size=50)    # models.ranking.dataset.Examples, labels
    days = example_table(rng, n_requests=100, size=50)  # the same, as training_examples rows

Counts are heavy-tailed (log-normal post reach, binomial engagement out of it, mostly-zero
network counts), rates are Beta draws, flags Bernoulli, categoricals from the catalog's
vocabularies with some missing, and the viewer's columns (country, rates, context, last
topics) are one draw per request, repeated over its candidates, as in a real request. Labels
depend on a dozen features and on the logged position, so trees of 63 leaves grow on many
of them, as on real data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from features import registry as R
from features.config import FeatureSettings
from models.ranking.dataset import CATEGORIES, LABELS, Examples, feature_frame
from warehouse.catalog import ACTIONS, IMPRESSION_SOURCES, C, label_column

WINDOW_SHARE = {"1h": 0.03, "1d": 0.3, "3d": 0.65, "7d": 1.0}  # of the 7-day count
ACTION_SHARE = {"click": 0.06, "like": 0.02, "comment": 0.005, "share": 0.004, "hide": 0.003}
BASE_LOGIT = {"click": -3.0, "like": -4.1, "comment": -5.5, "share": -5.8, "hide": -4.5}
BASE_LOGIT["report"] = -5.0
TOPICS = 50
PRIORS = FeatureSettings()  # the smoothed rates' priors, as the features job has them
USER_COLUMNS = (
    "country",
    "age_bucket",
    "gender",
    "primary_device",
    R.USER_IMPRESSIONS_7D,
    R.USER_REQUESTS_7D,
    R.user_rate(7),
    R.user_rate(30),
    R.CTX_HOUR,
    R.CTX_DOW,
    "device",
    R.CTX_HOURS_SINCE_PREV_REQUEST,
    R.USER_HIDE_RATE,
)
HISTORY_TOPICS = 10  # the viewer's last engaged posts (features.history_len)


def _category(rng: np.random.Generator, name: str, n: int, missing: float) -> np.ndarray:
    values = np.asarray(CATEGORIES[name], dtype=object)[rng.integers(0, len(CATEGORIES[name]), n)]
    values[rng.random(n) < missing] = None
    return values


def _viewers(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """One row per request: the viewer's and the context's columns."""
    prev = rng.exponential(8.0, n)
    prev[rng.random(n) < 0.1] = np.nan  # no request in the bound
    return pd.DataFrame(
        {
            "country": _category(rng, "country", n, 0.02),
            "age_bucket": _category(rng, "age_bucket", n, 0.05),
            "gender": _category(rng, "gender", n, 0.05),
            "primary_device": _category(rng, "primary_device", n, 0.0),
            R.USER_IMPRESSIONS_7D: rng.poisson(rng.lognormal(5, 1, n)).astype(float),
            R.USER_REQUESTS_7D: rng.poisson(rng.lognormal(2.5, 0.8, n)).astype(float),
            R.user_rate(7): rng.beta(2, 15, n),
            R.user_rate(30): rng.beta(2, 15, n),
            R.CTX_HOUR: rng.integers(0, 24, n).astype(float),
            R.CTX_DOW: rng.integers(1, 8, n).astype(float),
            "device": _category(rng, "device", n, 0.0),
            R.CTX_HOURS_SINCE_PREV_REQUEST: prev,
            R.USER_HIDE_RATE: np.where(rng.random(n) < 0.1, np.nan, rng.beta(1, 300, n)),
        }
    )


def _posts(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """One row per candidate: the post's, the author's and the viewer-author columns."""
    cols: dict[str, np.ndarray] = {}
    reach = rng.lognormal(5.0, 1.6, n)  # the post's 7-day impressions, heavy-tailed
    ctr = rng.beta(2, 30, n)
    for w, share in WINDOW_SHARE.items():
        impressions = rng.poisson(reach * share)
        cols[R.post_count(R.IMPRESSION, w)] = impressions
        for a, rate in ACTION_SHARE.items():
            cols[R.post_count(a, w)] = rng.binomial(impressions, np.clip(ctr * rate / 0.06, 0, 1))
    for k in R.POST_KINDS:
        cols[R.post_decayed(k)] = cols[R.post_count(k, "7d")] * rng.uniform(0.2, 1.0, n)
    for rate, (prior, weight) in {
        R.POST_SMOOTHED_HIDE_RATE: (PRIORS.hide_prior_rate, PRIORS.hide_prior_strength),
        R.POST_SMOOTHED_REPORT_RATE: (PRIORS.report_prior_rate, PRIORS.report_prior_strength),
    }.items():  # features.negative: (events + prior x weight) / (impressions + weight)
        events = rng.binomial(cols[R.post_count(R.IMPRESSION, "7d")], prior)
        cols[rate] = (events + prior * weight) / (cols[R.post_count(R.IMPRESSION, "7d")] + weight)
    cols[R.AUTHOR_SMOOTHED_HIDE_RATE] = rng.beta(2, 1000, n)
    cols[R.AUTHOR_SMOOTHED_REPORT_RATE] = rng.beta(1, 1000, n)
    cols[R.POST_AGE_H] = rng.exponential(30.0, n)
    cols[R.POST_SMOOTHED_RATE] = (cols[R.post_count("click", "7d")] + 2) / (
        cols[R.post_count(R.IMPRESSION, "7d")] + 40
    )
    follows = rng.random(n) < 0.3
    for k in R.COUNTED_ACTIONS:
        for w, share in WINDOW_SHARE.items():
            cols[R.net_count(k, w)] = rng.poisson(follows * share * ACTION_SHARE[k] * 20)
    cols["media_type"] = _category(rng, "media_type", n, 0.0)
    cols["length"] = np.round(rng.lognormal(5, 0.8, n))
    cols["has_url"] = (rng.random(n) < 0.2).astype(float)
    cols["topic"] = rng.integers(0, TOPICS, n).astype(float)
    cols[R.HASHTAG_COUNT] = rng.poisson(1.5, n).astype(float)
    cols[R.AUTHOR_FOLLOWERS] = np.round(rng.lognormal(4, 1.5, n))
    cols[R.AUTHOR_FOLLOWEES] = np.round(rng.lognormal(4, 1.0, n))
    cols[R.AUTHOR_FOLLOW_RATIO] = cols[R.AUTHOR_FOLLOWERS] / (cols[R.AUTHOR_FOLLOWEES] + 1)
    cols[R.AUTHOR_VERIFIED] = (rng.random(n) < 0.05).astype(float)
    cols[R.AUTHOR_PAGERANK] = rng.beta(1, 2000, n)
    for d in R.AUTHOR_WINDOWS_D:
        cols[R.author_rate(d)] = rng.beta(2, 20, n)
        cols[R.author_topic_rate(d)] = rng.beta(2, 20, n)
    cols[R.UA_FOLLOWS] = follows.astype(float)
    cols[R.UA_CLOSE_FRIEND] = (follows & (rng.random(n) < 0.1)).astype(float)
    cols[R.UA_COMMON_FOLLOWEES] = rng.poisson(3 * follows + 0.5).astype(float)
    for d in R.USER_AUTHOR_WINDOWS_D:
        seen = rng.random(n) < 0.3 + 0.5 * follows
        cols[R.ua_share(d)] = np.where(seen, rng.beta(2, 10, n), 0.0)
        cols[R.ua_norm(d)] = cols[R.ua_share(d)] / 0.12
    cols[R.SIM_HASHTAG_TFIDF] = np.where(rng.random(n) < 0.6, 0.0, rng.beta(2, 5, n))
    cols[R.SIM_TOPIC_SHARE] = rng.beta(1, 8, n)
    return cols


def _frame(rng: np.random.Generator, n_requests: int, size: int) -> pd.DataFrame:
    """Candidates of n_requests viewers, `size` each, with ids and the viewers' last topics."""
    n = n_requests * size
    viewers = _viewers(rng, n_requests)
    request = np.repeat(np.arange(n_requests), size)
    frame = pd.DataFrame(_posts(rng, n))
    for col in USER_COLUMNS:
        frame[col] = viewers[col].to_numpy()[request]
    last = [rng.choice(TOPICS, rng.integers(0, 6), replace=False) for _ in range(n_requests)]
    frame[R.USER_LAST_TOPICS] = [last[r] for r in request]
    history = [_history(rng) for _ in range(n_requests)]  # the viewer's last engaged posts
    for i, col in enumerate((R.USER_HIST_TOPICS, R.USER_HIST_AUTHORS, R.USER_HIST_MEDIA)):
        frame[col] = [history[r][i] for r in request]
    frame[C.USER_ID] = request.astype(np.int64)
    frame[C.AUTHOR_ID] = rng.integers(0, 1 << 20, n)
    frame[C.POST_ID] = rng.integers(0, 1 << 30, n)
    return frame


def _history(rng: np.random.Generator) -> tuple[list, list, list]:
    """Topics, author ids and media types of up to HISTORY_TOPICS engaged posts, newest first."""
    n = int(rng.integers(0, HISTORY_TOPICS + 1))
    media = list(_category(rng, "media_type", n, 0.0))
    return list(rng.integers(0, TOPICS, n)), list(rng.integers(0, 1 << 20, n)), media


def requests(rng: np.random.Generator, n_requests: int, size: int) -> list[pa.Table]:
    """Feature rows of n_requests requests, `size` candidates each, as Arrow tables."""
    frame = _frame(rng, n_requests, size)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return [table.slice(i * size, size) for i in range(n_requests)]


def example_table(rng: np.random.Generator, n_requests: int, size: int) -> pa.Table:
    """`examples`' rows as gold.training_examples holds them: ids, position, source, the
    feature rows, labels and sample_u (for trainers that read the warehouse: the DNN)."""
    return _labelled(rng, n_requests, size)[0]


def examples(rng: np.random.Generator, n_requests: int, size: int) -> Examples:
    """Logged impressions with labels: positions 0..size-1, sources of the logging policy."""
    table, X = _labelled(rng, n_requests, size)
    labels = table.select(list(LABELS)).to_pandas()
    return Examples(X, labels, table.column(C.SAMPLE_U).to_numpy())


def _labelled(
    rng: np.random.Generator, n_requests: int, size: int
) -> tuple[pa.Table, pd.DataFrame]:
    """(training examples table, its feature frame): labels drawn from a dozen features."""
    frame = _frame(rng, n_requests, size)
    n = len(frame)
    frame[C.IMPRESSION_ID] = np.arange(n, dtype=np.int64)
    frame[C.REQUEST_ID] = frame[C.USER_ID]  # one request per viewer
    frame[C.POSITION] = np.tile(np.arange(size), n_requests).astype(float)
    frame[C.SOURCE] = np.asarray(IMPRESSION_SOURCES, dtype=object)[
        rng.integers(0, len(IMPRESSION_SOURCES), n)
    ]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    X = feature_frame(table)
    relevance = (
        1.5 * np.log1p(X[R.POST_SMOOTHED_RATE] * 40).to_numpy()
        + 0.8 * X[R.UA_FOLLOWS].to_numpy()
        + 1.2 * X[R.SIM_TOPIC_SHARE].to_numpy()
        + 0.3 * (X["topic_recency"].to_numpy() > 0)
        + 2.0 * X[R.ua_share(90)].to_numpy()
        - 0.3 * np.log1p(X[R.POST_AGE_H].to_numpy())
        + 0.4 * (X["media_type"] == "video").to_numpy()
        + 3.0 * X[R.user_rate(30)].to_numpy()
        + 0.2 * np.log1p(X[R.net_count("like", "1d")].to_numpy())
        - 0.04 * X[C.POSITION].to_numpy()
    )
    labels = {}
    for a in ACTIONS:
        logit = BASE_LOGIT[a] + (relevance if a != "hide" and a != "report" else -0.5 * relevance)
        labels[label_column(a)] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    clicked = labels[label_column("click")] == 1
    dwell = 5 + 0.2 * X["length"].to_numpy() + rng.exponential(20, n)
    labels[C.DWELL_S] = np.where(clicked, dwell, np.nan)
    labels[C.SAMPLE_U] = rng.random(n)
    for name, values in labels.items():
        table = table.append_column(name, pa.array(values))
    return table, X
