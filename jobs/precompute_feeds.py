"""Precompute every active user's ranked feed from one day's data: gold.user_news_feed ds.

    spark-submit jobs/precompute_feeds.py --ds 2026-01-17 --profile demo

1. candidates: active users (a feed request in `precompute.active_days`), and per user the
   network's new posts since the previous generation, older network posts that gained
   engagement since, the two-tower's neighbours from the day's FAISS index (searched in the
   Spark workers, the index folder shipped to them: jobs.spark.shipped_folder), and the trending
   posts; seen and own posts dropped, capped (features.candidates) -> silver.feed_candidates;
2. rank: serving-time features by the training set's point-in-time code, the registry's
   champion ranker per Spark worker, the value model, the re-ranker (models.feed.scoring)
   -> gold.user_news_feed ds, staged;
3. publish: the feed contract (warehouse.contracts.feeds) on the staged partition, then commit;
Its evaluation against the simulator's truth on the next day is its own job
(jobs/evaluate_feeds.py) and DAG task.

Feeds are generated at the end of ds by default; the DAG's `generated_at` Param (the
`generated_at` of `candidates`) moves the generation inside the day, an intra-day refresh:
features and candidates then use only what was known then.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sys
import time
from collections.abc import Iterator

from pyspark.sql import functions as F

from features import candidates as fc
from features.config import FeatureSettings
from features.tiles import TILES
from jobs.common import (
    check_day,
    log_days,
    log_settings,
    run_job,
    shift_ds,
    use_tracking,
)
from jobs.reading import read_raw, read_state
from jobs.settings import Settings
from jobs.spark import get_spark, shipped_folder
from models.feed.scoring import rerank_feeds, score_candidates
from models.registry import versions as reg
from models.registry.handoff import (
    ACTIVE_USERS,
    INDEX_DS,
    FeedCandidates,
    PublishedFeeds,
    RankedFeeds,
    extend,
)
from models.retrieval.published import search_in_workers, write_search_files
from warehouse import contracts
from warehouse.artifacts import RETRIEVAL_INDEX, ArtifactStore
from warehouse.catalog import (
    ENGAGEMENTS,
    FEED_CANDIDATES,
    FOLLOWS,
    IMPRESSIONS,
    POSTS,
    USER_NEWS_FEED,
    USERS,
    C,
    Layer,
)
from warehouse.contracts.feeds import MODEL_VERSIONS, check_feed_partition
from warehouse.store import Warehouse

log = logging.getLogger(__name__)
JOB = "precompute_feeds"


def generation_time(ds: str, generated_at: str | None = None) -> dt.datetime:
    """The generation time: the end of ds by default, else a time in (ds 00:00, end of ds]."""
    start = dt.datetime.combine(dt.date.fromisoformat(ds), dt.time(), tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    if generated_at is None:
        return end
    at = dt.datetime.fromisoformat(generated_at)
    at = at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)
    if not start < at <= end:
        raise ValueError(f"generated_at {at.isoformat()} is not within ds={ds} ({start}, {end}]")
    return at


def candidates(settings: Settings, ds: str, generated_at: str | None = None) -> FeedCandidates:
    """Select and publish the candidates of every active user (silver.feed_candidates ds)."""
    check_day(settings, ds)
    log_settings("precompute_feeds.candidates", settings, ds)
    p, at = settings.precompute, generation_time(ds, generated_at)
    spark, store = get_spark(settings.spark), settings.open_warehouse()
    started = time.perf_counter()
    days = log_days(settings.first_day, ds, max(p.pool_hours, 24 * p.active_days))
    impressions = store.read_spark(spark, IMPRESSIONS, days).drop(C.DS)
    engagements = store.read_spark(spark, ENGAGEMENTS, days).drop(C.DS)
    posts = store.read_spark(spark, POSTS, days).drop(C.DS)
    follows = store.read_spark(spark, FOLLOWS, ds).drop(C.DS)
    default_since = F.lit(at - dt.timedelta(hours=p.refresh_hours))
    active = (
        fc.active_users(impressions, at, p.active_days)
        .join(_previous_generation(spark, store, ds, at), C.USER_ID, "left")
        .withColumn(fc.SINCE, F.coalesce(F.col(fc.SINCE), default_since))
        .cache()
    )
    pool = fc.pool(posts, at, p.pool_hours).cache()
    with contextlib.ExitStack() as shipped:  # the index files, until the table is written
        index_ds, neighbours = None, None
        if p.interest_k > 0:
            index_ds, neighbours = shipped.enter_context(
                _neighbours(spark, settings, index_day(ds, at), active, p.interest_k)
            )
        merged = fc.compose_candidates(
            active,
            pool,
            impressions,
            engagements,
            follows,
            neighbours,
            at,
            pool_hours=p.pool_hours,
            trending_hours=p.trending_hours,
            resurfaced_k=p.resurfaced_k,
            trending_k=p.trending_k,
            shares=p.shares.as_dict(),
            max_candidates=p.max_candidates,
        )
        merged = merged.withColumn(C.GENERATED_AT, F.lit(at).cast("timestamp"))
        n_active = active.count()
        meta = {"generated_at": at.isoformat(), ACTIVE_USERS: n_active, INDEX_DS: index_ds}
        with store.lock(Layer.SILVER, ds, job="precompute_feeds.candidates"):
            info = store.write_spark(FEED_CANDIDATES, ds, merged, meta=meta)
    written = store.read_spark(spark, FEED_CANDIDATES, ds)
    sources = written.select(F.explode(C.SOURCES).alias("s")).groupBy("s").count().collect()
    n_users = written.select(C.USER_ID).distinct().count()
    active.unpersist()
    pool.unpersist()
    out = FeedCandidates(
        ds,
        at.isoformat(),
        n_active,
        n_users,
        info.rows,
        {r[0]: int(r[1]) for r in sorted(sources)},
        index_ds,
    )
    log.info("candidates in %.1fs: %s", time.perf_counter() - started, out)
    return out


def _previous_generation(spark, store: Warehouse, ds: str, at: dt.datetime):
    """(user_id, since): each user's latest feed generated before `at` (the published feeds
    of ds or the day before), the lower bound of "new in the network"."""
    days = [d for d in (shift_ds(ds, -1), ds) if store.is_committed(USER_NEWS_FEED, d)]
    feeds = store.read_spark(spark, USER_NEWS_FEED, days)
    feeds = feeds.where(F.col(C.GENERATED_AT) < F.lit(at))
    return feeds.groupBy(C.USER_ID).agg(F.max(C.GENERATED_AT).alias(fc.SINCE))


def index_day(ds: str, at: dt.datetime) -> str:
    """The retrieval index a generation at `at` may use: ds's at the end of ds; inside the
    day, the day before's (ds's embeds users as of the end of ds, after `at`)."""
    return ds if at == generation_time(ds) else shift_ds(ds, -1)


@contextlib.contextmanager
def _neighbours(spark, settings: Settings, ds: str, active, k: int):
    """(index day, DataFrame of user_id, post_id, similarity): the k nearest posts of each
    active user the day's index embedded, searched in the Spark workers (the index files
    shipped to them while the context is open); (None, None) when there is no index for ds."""
    artifacts = ArtifactStore(settings.root.artifacts)
    if artifacts.latest(RETRIEVAL_INDEX, upto=ds) != ds:
        log.warning("no %s for ds=%s: no interest candidates", RETRIEVAL_INDEX.name, ds)
        yield None, None
        return
    with settings.root.scratch(f"retrieval-index-{ds}") as scratch:
        folder = write_search_files(artifacts, ds, scratch)
        with shipped_folder(spark, folder.path) as shipped:
            ef_search = settings.retrieval.index.ef_search
            yield ds, search_in_workers(active, shipped, k, ef_search)


def serving_frame(
    spark,
    store: Warehouse,
    first_day: dt.date,
    features: FeatureSettings,
    ds: str,
    table,
    at: dt.datetime,
):
    """The serving-time features of ds's candidate rows `table`, generated at `at`, from ds's
    committed tiles and raw tables (none before `first_day`)."""
    raw = read_raw(spark, store, first_day, ds)
    tiles = {t: read_state(spark, store, first_day, t, ds, staged=False) for t in TILES}
    return fc.featurize_candidates(
        table,
        tiles,
        raw.posts,
        raw.follows,
        raw.users,
        raw.authors,
        at,
        **features.model_dump(),
    )


@contextlib.contextmanager
def shipped_champion(spark, settings: Settings) -> Iterator[tuple[str, str]]:
    """(version, file name): the champion ranker, its GBDTs compiled, in a scratch folder
    shipped to the Spark workers under a name unique to this call (jobs.spark.shipped_folder;
    Spark refuses a name it already has with other content); removed afterwards.

    The compiled boosters are the version's artifact (built when the gate made it champion,
    jobs.train_rankers.compile_for_serving); a champion without it (its alias set by hand,
    or promoted before that rule) is compiled here, once, and its artifact stored: the
    workers load the compiled code and never compile."""
    use_tracking(settings)
    name = settings.mlflow.registered_model
    version = reg.champion_version(name)
    if version is None:
        raise RuntimeError(f"{name} has no champion yet: train_rankers must promote one first")
    with settings.root.scratch(f"ranker-v{version}") as scratch:
        if reg.compiled_folder(name, version, scratch) is None:
            reg.save_compiled(name, version, scratch)  # saves the ranker, compiled or not
        with shipped_folder(spark, scratch.path) as shipped:
            yield version, shipped


def rank(settings: Settings, cands: FeedCandidates) -> RankedFeeds:
    """Featurize, score and re-rank the candidates; stage gold.user_news_feed ds."""
    ds, at = cands.ds, dt.datetime.fromisoformat(cands.generated_at)
    log_settings("precompute_feeds.rank", settings, ds)
    spark, store = get_spark(settings.spark), settings.open_warehouse()
    started = time.perf_counter()
    table = store.read_spark(spark, FEED_CANDIDATES, ds).drop(C.DS)
    table = table.where(F.col(C.GENERATED_AT) == F.lit(at))
    features = serving_frame(spark, store, settings.first_day, settings.features, ds, table, at)
    p = settings.precompute
    with shipped_champion(spark, settings) as (version, ranker_file):
        scored = score_candidates(features, ranker_file)
        feeds = rerank_feeds(
            scored, table.select(C.USER_ID, C.POST_ID, C.SOURCES), p.rerank, p.feed_size
        )
        feeds = feeds.withColumns(
            {C.MODEL_VERSION: F.lit(version), C.GENERATED_AT: F.lit(at).cast("timestamp")}
        ).select(*USER_NEWS_FEED.columns)
        meta = {"generated_at": cands.generated_at, C.MODEL_VERSION: version}
        with store.lock(Layer.GOLD, ds, job="precompute_feeds.rank"):
            info = store.write_spark(USER_NEWS_FEED, ds, feeds, publish=False, meta=meta)
    log.info(
        "ranked ds=%s with %s v%s: %d feed rows in %.1fs",
        ds,
        settings.mlflow.registered_model,
        version,
        info.rows,
        time.perf_counter() - started,
    )
    return extend(cands, RankedFeeds, model_version=version, items=info.rows)


def publish(settings: Settings, ranked: RankedFeeds) -> PublishedFeeds:
    """The feed contract on the staged partition; commit it when it passes."""
    ds = ranked.ds
    spark, store = get_spark(settings.spark), settings.open_warehouse()
    use_tracking(settings)
    days = log_days(settings.first_day, ds, settings.precompute.pool_hours)
    versions = reg.versions(settings.mlflow.registered_model)
    frames = {
        USER_NEWS_FEED.name: store.read_spark(spark, USER_NEWS_FEED, ds, staged=True).drop(C.DS),
        POSTS.name: store.read_spark(spark, POSTS, days).drop(C.DS),
        USERS.name: store.read_spark(spark, USERS, ds).drop(C.DS),
        IMPRESSIONS.name: store.read_spark(spark, IMPRESSIONS, days).drop(C.DS),
        ENGAGEMENTS.name: store.read_spark(spark, ENGAGEMENTS, days).drop(C.DS),
        MODEL_VERSIONS: spark.createDataFrame([(v,) for v in versions], "version string"),
    }
    p = settings.precompute
    with store.lock(Layer.GOLD, ds, job="precompute_feeds.publish"):
        report = check_feed_partition(ds, frames, p.feed_size, pool_hours=p.pool_hours)
        contracts.enforce(report)
        store.accept(USER_NEWS_FEED, ds, by=f"{USER_NEWS_FEED.qualified}'s contract")
        info = store.publish(USER_NEWS_FEED, ds)
    log.info("published %s ds=%s: %d rows", USER_NEWS_FEED.qualified, ds, info.rows)
    return extend(ranked, PublishedFeeds, checks=report.n_checks)


def run(settings: Settings, ds: str) -> PublishedFeeds:
    """Every step, in order (what the DAG runs as separate tasks); jobs/evaluate_feeds.py
    evaluates the result once the next day is simulated."""
    return publish(settings, rank(settings, candidates(settings, ds)))


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
