"""Evaluate a day's published feeds on the next day, against the simulator's truth.

    spark-submit jobs/evaluate_feeds.py --ds 2026-01-17 --profile demo

The feeds of ds (gold.user_news_feed, generated at the end of ds or at an intra-day refresh)
are read by the users who come back on the next day: each candidate's true value (the
oracle's, at position 0) gives the top-K value of the feed against reverse-chronological,
popularity and the oracle, and the next day's engaged posts give candidate recall by source
(models.feed.quality). An MLflow run holds the table, the recall and a plot; the report also
lands in the report folder. Nothing is evaluated until the next day is simulated.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time

import mlflow
import pandas as pd

from jobs.common import (
    EVALUATE_FEEDS,
    check_day,
    log_days,
    run_job,
    shift_ds,
    use_tracking,
)
from jobs.reading import FeedOracle, published_feeds
from jobs.settings import Settings
from models.feed import quality as fq
from models.registry.handoff import PublishedFeeds
from models.registry.runs import log_figure, log_report
from models.registry.tags import DS_TAG, FEEDS_STAGE, PROFILE_TAG, STAGE_TAG
from warehouse.catalog import (
    ENGAGEMENTS,
    FEED_CANDIDATES,
    FEED_SOURCES,
    IMPRESSIONS,
    POSITIVE_ACTIONS,
    POSTS,
    USER_NEWS_FEED,
    C,
)
from warehouse.store import Warehouse

log = logging.getLogger(__name__)
JOB = EVALUATE_FEEDS


def run(settings: Settings, ds: str) -> dict[str, float] | None:
    """The evaluation of ds's committed feeds (None when the next day is not simulated)."""
    check_day(settings, ds)
    return evaluate(settings, published_feeds(settings, ds))


def evaluate(settings: Settings, published: PublishedFeeds) -> dict[str, float] | None:
    """The offline feed quality on the next day, against the simulator's truth (an MLflow run
    and a report); None, with a log line, when the next day is not simulated yet."""
    ds, at = published.ds, dt.datetime.fromisoformat(published.generated_at)
    nd = shift_ds(ds, 1)
    store = settings.open_warehouse()
    if not (store.is_committed(IMPRESSIONS, nd) and store.is_committed(ENGAGEMENTS, nd)):
        log.info("feed quality of ds=%s needs the logs of %s: not evaluated", ds, nd)
        return None
    started = time.perf_counter()
    p = settings.precompute
    visitors = store.read_pandas(IMPRESSIONS, nd, columns=[C.USER_ID])[C.USER_ID].unique()
    cands = store.read_pandas(FEED_CANDIDATES, ds).drop(columns=C.DS)
    cands = cands[cands[C.USER_ID].isin(visitors) & (cands[C.GENERATED_AT] == at)]
    feed_cols = [C.USER_ID, C.POST_ID, C.RANK, C.VALUE, C.GENERATED_AT]
    feed = store.read_pandas(USER_NEWS_FEED, ds, columns=feed_cols).drop(columns=C.DS)
    cands = cands.merge(feed[feed[C.GENERATED_AT] == at].drop(columns=C.GENERATED_AT), how="left")
    cands = cands.merge(_popularity(store, settings, ds, at), how="left").fillna({fq.POPULARITY: 0})
    cands = cands.reset_index(drop=True)
    oracle = FeedOracle(store, settings, ds, at, cands)
    cands[fq.TRUE_VALUE] = oracle.alone()
    engaged = _engaged(store, nd, visitors, at)
    value = fq.feed_value(cands, p.quality_k)
    lists = oracle.lists(p.quality_k)
    recall = fq.candidate_recall(cands, engaged, FEED_SOURCES)
    counts = {
        "generated_at": published.generated_at,
        "model_version": published.model_version,
        "active users": published.active_users,
        "users with a feed": published.users,
        "feed rows": published.items,
        "candidates": published.candidates,
        "candidates by source": published.by_source,
        f"users with sessions on {nd} (evaluated)": len(visitors),
    }
    report = fq.markdown(value, recall, counts, p.quality_k, lists)
    metrics = fq.metrics(value, recall, p.quality_k, lists)
    folder = settings.root.report_folder(JOB, ds)
    use_tracking(settings)
    with mlflow.start_run(run_name=f"precompute_feeds {ds}"):
        mlflow.set_tags({DS_TAG: ds, PROFILE_TAG: settings.profile, STAGE_TAG: FEEDS_STAGE})
        mlflow.log_params(
            {C.MODEL_VERSION: published.model_version, C.GENERATED_AT: published.generated_at}
        )
        mlflow.log_dict(settings.precompute.model_dump(mode="json"), "precompute_settings.json")
        mlflow.log_metrics(
            metrics | {"feeds/users": published.users, "feeds/items": published.items}
        )
        mlflow.log_table(value, "feeds/value.json")
        mlflow.log_table(lists, "feeds/list_value.json")
        mlflow.log_table(recall, "feeds/recall.json")
        figure = fq.quality_figure(value, recall, p.quality_k, lists)
        log_figure(figure, "feeds/quality.png", folder)
        log_report(report, folder)
    log.info("feed quality ds=%s in %.1fs:\n%s", ds, time.perf_counter() - started, report)
    return metrics


def _popularity(store: Warehouse, settings: Settings, ds: str, at: dt.datetime) -> pd.DataFrame:
    """(post_id, popularity): positives on the post before `at`, in the pool's logs."""
    days = log_days(settings.first_day, ds, settings.precompute.pool_hours)
    eng = store.read_pandas(ENGAGEMENTS, days, columns=[C.POST_ID, C.ACTION, C.EVENT_TS])
    pos = eng[eng[C.ACTION].isin(POSITIVE_ACTIONS) & (eng[C.EVENT_TS] < at)]
    return pos.groupby(C.POST_ID).size().rename(fq.POPULARITY).reset_index()


def _engaged(store: Warehouse, nd: str, visitors, at) -> pd.DataFrame:
    """(user_id, post_id, existed) of the posts each visitor acted on positively on nd."""
    eng = store.read_pandas(ENGAGEMENTS, nd, columns=[C.USER_ID, C.POST_ID, C.ACTION])
    eng = eng[eng[C.ACTION].isin(POSITIVE_ACTIONS) & eng[C.USER_ID].isin(visitors)]
    pairs = eng[[C.USER_ID, C.POST_ID]].drop_duplicates()
    posts = store.read_pandas(POSTS, nd, columns=[C.POST_ID])  # created on nd: after `at`
    pairs["existed"] = ~pairs[C.POST_ID].isin(posts[C.POST_ID])
    return pairs.reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
