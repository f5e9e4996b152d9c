"""Tune the re-ranker's weights against the list-aware oracle, on a day's published feeds.

    python jobs/tune_rerank.py --ds 2026-01-18 --profile demo      (feedrank tune-rerank)

For the users who read ds's feeds on the next day (as jobs/evaluate_feeds.py evaluates
them): the posts each feed holds, with their value, author, media type, age at generation
and whether the user follows the author, are re-ranked under other `precompute.rerank`
weights (models.feed.rerank), and each top k is valued as the user reads it, slot by slot,
with the simulator's examination and session fatigue (simulator.oracle.as_lists), against
the oracle's greedy best list of the same posts. The search is by coordinates: each weight
over its grid with the others at their best so far, for `ROUNDS` rounds, from the profile's
weights. First the profile's weights must give back the published order (the inputs are
the precompute's), else the job stops.

The table (every setting tried, its list value and share of the oracle's list), the best
weights as the profile's TOML section, an MLflow run (`feedrank.stage = rerank_tuning`) and
`reports/tune_rerank/<ds>/report.md`. The feeds keep at most `feed_size` posts per user:
the search re-orders those, not every candidate.
"""

from __future__ import annotations

import logging
import sys
import time

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa

from features.pit import as_of_time
from features.registry import POST_AGE_H
from jobs.common import check_day, log_days, run_job, shift_ds, use_tracking
from jobs.reading import FeedOracle, published_feeds
from jobs.settings import Settings
from models.evaluation.markdown import markdown as table
from models.feed.config import RerankSettings
from models.feed.rerank import IN_NETWORK, rerank_table
from models.registry.runs import log_report
from models.registry.tags import DS_TAG, PROFILE_TAG, RERANK_STAGE, STAGE_TAG
from warehouse.catalog import FOLLOWS, IMPRESSIONS, POSTS, USER_NEWS_FEED, C

log = logging.getLogger(__name__)
JOB = "tune_rerank"

ROUNDS = 2
# Every re-ranking factor neutral: the feed in value order.
NEUTRAL = RerankSettings(
    author_repeat_decay=1.0,
    author_repeat_floor=0.0,
    separate_media=False,
    freshness_boost=0.0,
    out_of_network_weight=1.0,
)
# Each weight's values tried (the profile's own value is always tried as well).
GRID: dict[str, tuple] = {
    "author_repeat_decay": (1.0, 0.9, 0.75, 0.5, 0.3),
    "author_repeat_floor": (0.0, 0.25, 0.5),
    "separate_media": (False, True),
    "freshness_boost": (0.0, 0.2, 0.5, 1.0),
    "out_of_network_weight": (0.5, 0.7, 0.9, 1.0),
}


class Tuning:
    """Feeds re-ranked under given weights, each top k valued as lists by the oracle."""

    def __init__(self, settings: Settings, ds: str):
        self.settings, self.k = settings, settings.precompute.quality_k
        published = published_feeds(settings, ds)
        self.at = pd.Timestamp(published.generated_at)
        store = settings.open_warehouse()
        nd = shift_ds(ds, 1)
        if not store.is_committed(IMPRESSIONS, nd):
            raise ValueError(f"tuning the feeds of ds={ds} needs the logs of {nd}")
        visitors = store.read_pandas(IMPRESSIONS, nd, columns=[C.USER_ID])[C.USER_ID].unique()
        feed = store.read_pandas(USER_NEWS_FEED, ds).drop(columns=C.DS)
        feed = feed[(feed[C.GENERATED_AT] == self.at) & feed[C.USER_ID].isin(visitors)]
        days = log_days(settings.first_day, ds, settings.precompute.pool_hours)
        cols = [C.POST_ID, C.AUTHOR_ID, C.MEDIA_TYPE, C.CREATED_AT]
        posts = store.read_pandas(POSTS, days, columns=cols).drop_duplicates(C.POST_ID)
        items = feed.merge(posts, on=C.POST_ID, how="left", validate="many_to_one")
        if items[C.AUTHOR_ID].isna().any():
            raise ValueError(f"ds={ds}: feed posts missing from {POSTS.qualified}")
        follows = store.read_pandas(
            FOLLOWS, ds, columns=[C.FOLLOWER_ID, C.FOLLOWEE_ID, C.CREATED_AT]
        )
        # The re-ranker's inputs as the precompute's features had them: as of the last hour
        # boundary before the generation (features.pit), a post created later 0 hours old.
        as_of = pd.Timestamp(as_of_time(self.at.to_pydatetime()))
        follows = follows[follows[C.CREATED_AT] < as_of]
        followed = pd.MultiIndex.from_arrays([follows[C.FOLLOWER_ID], follows[C.FOLLOWEE_ID]])
        items[IN_NETWORK] = pd.MultiIndex.from_arrays([items[C.USER_ID], items[C.AUTHOR_ID]]).isin(
            followed
        )
        items[POST_AGE_H] = ((as_of - items[C.CREATED_AT]).dt.total_seconds() / 3600.0).clip(0)
        self.items = items.sort_values([C.USER_ID, C.RANK], ignore_index=True)
        self.published = self.items[[C.USER_ID, C.POST_ID, C.RANK]]
        self.readers = self.items[C.USER_ID].nunique()
        cols = [C.USER_ID, C.POST_ID, C.VALUE, C.AUTHOR_ID, C.MEDIA_TYPE, POST_AGE_H, IN_NETWORK]
        self.inputs = pa.Table.from_pandas(self.items[cols], preserve_index=False)
        self.row_of = pd.MultiIndex.from_frame(self.items[[C.USER_ID, C.POST_ID]])
        self.oracle = FeedOracle(store, settings, ds, self.at, self.items)
        best = self.oracle.best_slots(self.k)
        self.ceiling = self._value(np.flatnonzero(best >= 0), best[best >= 0])

    def _value(self, rows: np.ndarray, slots: np.ndarray) -> float:
        """Mean per reader of the list value of `rows` of items at `slots`."""
        return float(self.oracle.list_values(rows, slots).sum() / self.readers)

    def ranks(self, weights: RerankSettings) -> pd.DataFrame:
        size = self.settings.precompute.feed_size
        out = rerank_table(self.inputs, weights, size).select([C.USER_ID, C.POST_ID, C.RANK])
        return out.to_pandas()

    def value(self, weights: RerankSettings) -> float:
        """The mean list value of the top k per reader under `weights`."""
        ranked = self.ranks(weights)
        ranked = ranked[ranked[C.RANK] <= self.k]
        at = self.row_of.get_indexer(pd.MultiIndex.from_frame(ranked[[C.USER_ID, C.POST_ID]]))
        return self._value(at, ranked[C.RANK].to_numpy() - 1)

    def reproduced(self) -> float:
        """Share of readers whose published top k the profile's weights give back."""
        ranked = self.ranks(self.settings.precompute.rerank)
        top = ranked[ranked[C.RANK] <= self.k].merge(
            self.published, on=[C.USER_ID, C.RANK], suffixes=("", "_published")
        )
        same = (top[C.POST_ID] == top[f"{C.POST_ID}_published"]).groupby(top[C.USER_ID]).all()
        return float(same.mean())


def search(tuning: Tuning, start: RerankSettings, rounds: int = ROUNDS) -> pd.DataFrame:
    """Coordinate search from `start`: one row per distinct setting tried, in order."""
    tried: dict[tuple, float] = {}

    def value_of(weights: RerankSettings) -> float:
        key = tuple(weights.model_dump().values())
        if key not in tried:
            tried[key] = tuning.value(weights)
            log.info("rerank %s: list value %.4f", weights.model_dump(), tried[key])
        return tried[key]

    best, best_value = start, value_of(start)
    for _ in range(rounds):
        for name, values in GRID.items():
            for v in dict.fromkeys((*values, getattr(best, name))):
                weights = best.model_copy(update={name: v})
                if value_of(weights) > best_value + 1e-12:
                    best, best_value = weights, value_of(weights)
    fields = list(RerankSettings.model_fields)
    rows = pd.DataFrame([dict(zip(fields, key, strict=True)) for key in tried])
    rows[f"list_value_at_{tuning.k}"] = list(tried.values())
    rows["share_of_oracle"] = rows[f"list_value_at_{tuning.k}"] / tuning.ceiling
    return rows


def run(settings: Settings, ds: str) -> dict:
    check_day(settings, ds)
    started = time.perf_counter()
    tuning = Tuning(settings, ds)
    reproduced = tuning.reproduced()
    if reproduced < 0.99:
        raise ValueError(
            f"ds={ds}: the profile's rerank weights give back {reproduced:.1%} of the "
            "published top lists: the feeds were ranked under other weights or inputs"
        )
    start = settings.precompute.rerank
    rows = search(tuning, start)
    col = f"list_value_at_{tuning.k}"
    best = rows.loc[rows[col].idxmax()]
    current = float(rows[col].iloc[0])  # the search starts from the profile's weights
    off = tuning.value(NEUTRAL)
    weights = {f: best[f] for f in RerankSettings.model_fields}
    summary = {
        "readers": tuning.readers,
        "oracle list value": tuning.ceiling,
        "profile's weights": current,
        "no re-ranking (value order)": off,
        "best": float(best[col]),
    }
    toml = "[precompute.rerank]\n" + "\n".join(
        f"{f} = {str(v).lower() if isinstance(v, bool | np.bool_) else v}"
        for f, v in weights.items()
    )
    report = "\n".join(
        [
            f"# Re-ranker tuning, feeds of {ds}",
            "",
            *(f"- {name}: {value}" for name, value in summary.items()),
            "",
            "## Best weights",
            "",
            "```toml",
            toml,
            "```",
            "",
            f"## Every setting tried (list value of the top {tuning.k} per reader)",
            "",
            table(rows.sort_values(col, ascending=False)),
            "",
        ]
    )
    folder = settings.root.report_folder(JOB, ds)
    use_tracking(settings)
    with mlflow.start_run(run_name=f"tune_rerank {ds}"):
        mlflow.set_tags({DS_TAG: ds, PROFILE_TAG: settings.profile, STAGE_TAG: RERANK_STAGE})
        mlflow.log_params({f"best.{f}": v for f, v in weights.items()})
        mlflow.log_metrics(
            {
                "rerank/list_value/best": float(best[col]),
                "rerank/list_value/profile": current,
                "rerank/list_value/value_order": off,
                "rerank/list_value/oracle": tuning.ceiling,
            }
        )
        mlflow.log_table(rows, "rerank/tried.json")
        log_report(report, folder)
    log.info(
        "rerank tuning ds=%s: %d settings in %.1fs, best %.4f (profile %.4f): %s",
        ds,
        len(rows),
        time.perf_counter() - started,
        float(best[col]),
        current,
        folder.file("report.md"),
    )
    print(report)
    return {"summary": summary, "best": weights, "tried": rows}


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
