"""How good are the precomputed feeds, offline, against the simulator's truth.

For the users with sessions on the day after the generation:

* feed value@k: the true value (the oracle's probabilities under the value weights, every post
  at position 0, served at generated_at on the user's primary device) of the top k posts of
  each ranking of the same candidates, summed per user and averaged over users:
  our feed (re-ranked), our value order before re-ranking, reverse-chronological, popularity
  (positives before generated_at), and the oracle's own order (the ceiling for these
  candidates). `share_of_oracle` is each ranking's value over the oracle's.
* candidate recall: of the posts each user acted on positively that day, the share that were
  among their candidates, overall and per source; also over the posts that existed at
  generation time (a post created later cannot be a candidate).

Pure functions over pandas frames; the job gathers the frames and calls the oracle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from models.evaluation.markdown import markdown as table
from warehouse.catalog import C

TRUE_VALUE = "true_value"  # the oracle's value of a candidate
POPULARITY = "popularity"  # positives on the post before generated_at
FEED, BEFORE_RERANK, REVERSE_CHRON, POPULAR, ORACLE = (
    "feed",
    "value_before_rerank",
    "reverse_chron",
    "popularity",
    "oracle",
)
RANKINGS = (FEED, BEFORE_RERANK, REVERSE_CHRON, POPULAR, ORACLE)
ALL = "all"  # the recall row over every source
_ORDERS: dict[str, list[tuple[str, bool]]] = {  # (column, ascending) per ranking, then post_id
    FEED: [(C.RANK, True)],
    BEFORE_RERANK: [(C.VALUE, False)],
    REVERSE_CHRON: [(C.CREATED_AT, False)],
    POPULAR: [(POPULARITY, False)],
    ORACLE: [(TRUE_VALUE, False)],
}


def feed_value(cands: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per ranking: users, mean top-k true value per user, and its share of the
    oracle's. `cands`: one row per (user_id, post_id) with rank (NaN: not in the feed, never
    in its top k), value, created_at, popularity and true_value."""
    missing = {C.USER_ID, C.POST_ID, TRUE_VALUE} | {c for o in _ORDERS.values() for c, _ in o}
    missing -= set(cands.columns)
    if missing:
        raise KeyError(f"feed_value needs columns {sorted(missing)}")
    users = cands[C.USER_ID].nunique()
    rows = []
    for name, order in _ORDERS.items():
        frame = cands if name != FEED else cands[cands[C.RANK].notna()]
        cols = [C.USER_ID, *(c for c, _ in order), C.POST_ID]
        asc = [True, *(a for _, a in order), True]
        top = frame.sort_values(cols, ascending=asc, kind="stable").groupby(C.USER_ID).head(k)
        total = (
            top.groupby(C.USER_ID)[TRUE_VALUE]
            .sum()
            .reindex(cands[C.USER_ID].unique(), fill_value=0.0)
        )
        rows.append({"ranking": name, "users": users, f"value_at_{k}": float(total.mean())})
    out = pd.DataFrame(rows)
    col = f"value_at_{k}"
    oracle = out.loc[out["ranking"] == ORACLE, col].iloc[0]
    out["share_of_oracle"] = out[col] / oracle if oracle > 0 else np.nan
    return out


def candidate_recall(
    cands: pd.DataFrame, engaged: pd.DataFrame, sources: Sequence[str]
) -> pd.DataFrame:
    """Per source (and `all`): engaged posts that were candidates / engaged posts, over every
    engaged post and over those created before generation (`existed` True in `engaged`).

    cands: user_id, post_id, sources (list); engaged: user_id, post_id, existed (bool), one
    row per (user, post) acted on positively."""
    hits = engaged.merge(cands[[C.USER_ID, C.POST_ID, C.SOURCES]], how="left", indicator="_match")
    candidate = (hits["_match"] == "both").to_numpy(bool)
    proposed = hits[C.SOURCES].apply(
        lambda s: set(s) if isinstance(s, list | np.ndarray) else set()
    )
    existed = hits["existed"].to_numpy(bool)
    rows = []
    for source in (ALL, *sources):
        if source == ALL:
            hit = candidate
        else:
            hit = proposed.map(lambda s, src=source: src in s).to_numpy(bool)
        rows.append(
            {
                "source": source,
                "engaged": len(hits),
                "recall": hit.mean() if len(hits) else np.nan,
                "engaged_existing": int(existed.sum()),
                "recall_existing": hit[existed].mean() if existed.any() else np.nan,
            }
        )
    return pd.DataFrame(rows)


def metrics(value: pd.DataFrame, recall: pd.DataFrame, k: int) -> dict[str, float]:
    """Flat MLflow metrics: feeds/value_at_k/<ranking>, feeds/recall[_existing]/<source>."""
    out: dict[str, float] = {}
    for _, row in value.iterrows():
        out[f"feeds/value_at_{k}/{row['ranking']}"] = float(row[f"value_at_{k}"])
        out[f"feeds/share_of_oracle/{row['ranking']}"] = float(row["share_of_oracle"])
    for _, row in recall.iterrows():
        out[f"feeds/recall/{row['source']}"] = float(row["recall"])
        out[f"feeds/recall_existing/{row['source']}"] = float(row["recall_existing"])
    return {k_: v for k_, v in out.items() if np.isfinite(v)}


def quality_figure(value: pd.DataFrame, recall: pd.DataFrame, k: int) -> Figure:
    """Two panels: mean true value@k per ranking, candidate recall per source."""
    fig = Figure(figsize=(10, 4.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    col = f"value_at_{k}"
    palette = {FEED: "tab:blue", ORACLE: "tab:green"}
    colors = [palette.get(r, "tab:gray") for r in value["ranking"]]
    left.barh(value["ranking"], value[col], color=colors)
    left.invert_yaxis()
    left.set_xlabel(f"mean true value of the top {k} per user")
    left.set_title("feed quality (oracle = ceiling of these candidates)")
    y = np.arange(len(recall))
    right.barh(y - 0.2, recall["recall"], height=0.4, label="all engaged posts")
    right.barh(y + 0.2, recall["recall_existing"], height=0.4, label="posts existing at generation")
    right.set_yticks(y, recall["source"])
    right.invert_yaxis()
    right.set_xlim(0, 1)
    right.set_xlabel("share of next-day engaged posts among the candidates")
    right.set_title("candidate recall by source")
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize="small")
    return fig


def markdown(
    value: pd.DataFrame, recall: pd.DataFrame, counts: Mapping[str, object], k: int
) -> str:
    """The report: counts, the feed-quality table and the recall table."""
    lines = ["# Feed precompute", ""]
    lines += [f"- {name}: {v}" for name, v in counts.items()]
    lines += ["", f"## Feed value@{k} (true value, oracle ceiling of the same candidates)", ""]
    lines += [table(value), ""]
    lines += ["## Candidate recall of next-day engaged posts", ""]
    lines += [table(recall), ""]
    return "\n".join(lines)
