"""How good are the precomputed feeds, offline, against the simulator's truth.

For the users with sessions on the day after the generation:

* feed value@k: the true value (the oracle's probabilities under the value weights, every post
  at position 0, served at generated_at on the user's primary device) of the top k posts of
  each ranking of the same candidates, summed per user and averaged over users:
  our feed (re-ranked), our value order before re-ranking, reverse-chronological, popularity
  (positives before generated_at), and the oracle's own order (the ceiling for these
  candidates). `share_of_oracle` is each ranking's value over the oracle's.
* feed value@k as lists: the same top k of each ranking valued as the user reads them, each
  post at its slot after the ones above it (examination and the simulator's session fatigue);
  the oracle's list is the greedy best list (simulator.oracle.best_lists).
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
SLOT = "slot"  # a post's 0-based place in a ranking's top k
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
    return value_table(
        {
            name: cands.loc[top.index, [C.USER_ID, TRUE_VALUE]]
            for name, top in top_k(cands, k).items()
        },
        cands[C.USER_ID].unique(),
        f"value_at_{k}",
    )


def top_k(cands: pd.DataFrame, k: int, rankings: Sequence[str] = RANKINGS) -> dict[str, pd.Series]:
    """Each ranking's top k per user: the slot (0..k-1) of each chosen row of `cands`,
    indexed by the row's label in `cands`. The oracle's order is by true_value (each post
    alone at the top)."""
    missing = {C.USER_ID, C.POST_ID} | {c for r in rankings for c, _ in _ORDERS[r]}
    missing -= set(cands.columns)
    if missing:
        raise KeyError(f"the rankings need columns {sorted(missing)}")
    out = {}
    for name in rankings:
        order = _ORDERS[name]
        frame = cands if name != FEED else cands[cands[C.RANK].notna()]
        cols = [C.USER_ID, *(c for c, _ in order), C.POST_ID]
        asc = [True, *(a for _, a in order), True]
        ranked = frame.sort_values(cols, ascending=asc, kind="stable")
        slot = ranked.groupby(C.USER_ID).cumcount()
        out[name] = slot[slot < k].rename(SLOT)
    return out


def value_table(values: Mapping[str, pd.DataFrame], users, column: str) -> pd.DataFrame:
    """One row per ranking: the users, the mean per user of the summed true_value of its rows
    (`values[ranking]`: user_id, true_value; a user without rows counts 0), and its share of
    the oracle's."""
    rows = []
    users = pd.Index(users)
    for name, frame in values.items():
        total = frame.groupby(C.USER_ID)[TRUE_VALUE].sum().reindex(users, fill_value=0.0)
        rows.append({"ranking": name, "users": len(users), column: float(total.mean())})
    out = pd.DataFrame(rows)
    oracle = out.loc[out["ranking"] == ORACLE, column].iloc[0]
    out["share_of_oracle"] = out[column] / oracle if oracle > 0 else np.nan
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


def metrics(
    value: pd.DataFrame, recall: pd.DataFrame, k: int, lists: pd.DataFrame | None = None
) -> dict[str, float]:
    """Flat MLflow metrics: feeds/value_at_k/<ranking>, feeds/share_of_oracle/<ranking>,
    feeds/recall[_existing]/<source>; with `lists`, feeds/list_value_at_k/<ranking> and
    feeds/list_share_of_oracle/<ranking>."""
    out: dict[str, float] = {}
    for _, row in value.iterrows():
        out[f"feeds/value_at_{k}/{row['ranking']}"] = float(row[f"value_at_{k}"])
        out[f"feeds/share_of_oracle/{row['ranking']}"] = float(row["share_of_oracle"])
    for _, row in (lists if lists is not None else pd.DataFrame()).iterrows():
        out[f"feeds/list_value_at_{k}/{row['ranking']}"] = float(row[f"list_value_at_{k}"])
        out[f"feeds/list_share_of_oracle/{row['ranking']}"] = float(row["share_of_oracle"])
    for _, row in recall.iterrows():
        out[f"feeds/recall/{row['source']}"] = float(row["recall"])
        out[f"feeds/recall_existing/{row['source']}"] = float(row["recall_existing"])
    return {k_: v for k_, v in out.items() if np.isfinite(v)}


def quality_figure(
    value: pd.DataFrame, recall: pd.DataFrame, k: int, lists: pd.DataFrame | None = None
) -> Figure:
    """Two panels: mean true value@k per ranking (each post alone at the top, and, with
    `lists`, each list as read: its posts at their slots), candidate recall per source."""
    fig = Figure(figsize=(10, 4.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    col = f"value_at_{k}"
    palette = {FEED: "tab:blue", ORACLE: "tab:green"}
    colors = [palette.get(r, "tab:gray") for r in value["ranking"]]
    y = np.arange(len(value))
    if lists is None:
        left.barh(y, value[col], color=colors)
    else:
        by_ranking = lists.set_index("ranking")[f"list_{col}"].reindex(value["ranking"])
        left.barh(y - 0.2, value[col], height=0.4, color=colors, label="each post at the top")
        left.barh(
            y + 0.2,
            by_ranking.to_numpy(),
            height=0.4,
            color=colors,
            alpha=0.5,
            hatch="//",
            label="as a list (slots, fatigue)",
        )
        left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize="small")
    left.set_yticks(y, value["ranking"])
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
    value: pd.DataFrame,
    recall: pd.DataFrame,
    counts: Mapping[str, object],
    k: int,
    lists: pd.DataFrame | None = None,
) -> str:
    """The report: counts, the feed-quality tables and the recall table."""
    lines = ["# Feed precompute", ""]
    lines += [f"- {name}: {v}" for name, v in counts.items()]
    lines += ["", f"## Feed value@{k} (true value, oracle ceiling of the same candidates)", ""]
    lines += ["Each post's true value alone at the top of the feed.", ""]
    lines += [table(value), ""]
    if lists is not None:
        lines += [f"## Feed value@{k} as lists", ""]
        lines += [
            "Each list as a user reads it: every post at its slot (examination), after the "
            "posts above it (the session's fatigue for authors and topics already seen). The "
            "oracle's list is built greedily, slot by slot, from the same candidates.",
            "",
            table(lists),
            "",
        ]
    lines += ["## Candidate recall of next-day engaged posts", ""]
    lines += [table(recall), ""]
    return "\n".join(lines)
