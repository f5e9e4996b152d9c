"""Precompute every active user's ranked feed from one day's data: gold.user_news_feed ds.

    spark-submit jobs/precompute_feeds.py --ds 2026-01-17 --profile demo

1. candidates: active users (a feed request in `precompute.active_days`), and per user the
   network's new posts since the previous generation, older network posts that gained
   engagement since, the two-tower's neighbours from the day's FAISS index (searched in the
   Spark workers, the index shipped to them as a file), and the trending
   posts; seen and own posts dropped, capped (features.candidates) -> silver.feed_candidates;
2. rank: serving-time features by the training set's point-in-time code, the registry's
   champion ranker per Spark worker, the value model, the re-ranker (models.feed_scoring)
   -> gold.user_news_feed ds, staged;
3. publish: the feed contract (warehouse.contracts.feeds) on the staged partition, then commit;
4. evaluate: against the simulator's truth on the next day (models.feed_quality), when it is
   simulated: an MLflow run with the feed-quality table, candidate recall and a plot.

Feeds are generated at the end of ds by default; the DAG's `generated_at` Param (the
`generated_at` of `candidates`) moves the generation inside the day, an intra-day refresh:
features and candidates then use only what was known then.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import sys
import time
from collections.abc import Iterator

import mlflow
import pandas as pd
from pyspark.sql import functions as F

from features import candidates as fc
from features.tiles import TILES
from jobs.build_features import read_raw, read_state
from jobs.common import (
    check_day,
    days_before,
    log_settings,
    run_job,
    shift_ds,
    use_tracking,
)
from jobs.settings import Settings
from jobs.simulate_platform import world
from jobs.spark import get_spark
from models import feed_config as cfg
from models import feed_quality as fq
from models import registry as reg
from models.feed_scoring import rerank_feeds, score_candidates
from models.handoff import FeedCandidates, PublishedFeeds, RankedFeeds, extend
from models.retrieval_index import search_in_workers, write_search_files
from models.tracking import FEEDS_STAGE, REPORT, STAGE_TAG, log_figure
from models.value import value_score
from simulator.oracle import oracle_truth
from warehouse import contracts
from warehouse.artifacts import RETRIEVAL_INDEX, ArtifactStore
from warehouse.catalog import (
    ACTIONS,
    ENGAGEMENTS,
    FEED_CANDIDATES,
    FOLLOWS,
    IMPRESSIONS,
    POSITIVE_ACTIONS,
    POSTS,
    USER_NEWS_FEED,
    USERS,
    C,
    Layer,
    truth_column,
)
from warehouse.contracts.feeds import MODEL_VERSIONS, check_feed_partition
from warehouse.store import Warehouse

log = logging.getLogger(__name__)
JOB = "precompute_feeds"
ACTIVE_USERS, INDEX_DS = "active_users", "index_ds"  # what the candidates' partition records
PROFILE_TAG = "feedrank.profile"


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
    spark, store = get_spark(settings.spark), Warehouse(settings.root.warehouse)
    started = time.perf_counter()
    days = _log_days(settings, ds, max(p.pool_hours, 24 * p.active_days))
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
    growth = fc.positives_per_post(engagements, at - dt.timedelta(hours=p.pool_hours), at)
    trend = fc.positives_per_post(engagements, at - dt.timedelta(hours=p.trending_hours), at)
    network, resurfaced = fc.network_candidates(
        active,
        follows,
        pool,
        growth,
        at,
        network=cfg.NETWORK,
        resurfaced=cfg.RESURFACED,
        resurfaced_k=p.resurfaced_k,
    )
    trending = fc.trending_candidates(active, trend, pool, p.trending_k, trending=cfg.TRENDING)
    proposals = [network, resurfaced, trending]
    with contextlib.ExitStack() as shipped:  # the index files, until the table is written
        index_ds = None
        if p.interest_k > 0:
            index_ds, neighbours = shipped.enter_context(
                _neighbours(spark, settings, index_day(ds, at), active, p.interest_k)
            )
            if neighbours is not None:
                interest = fc.interest_candidates(active, neighbours, pool, interest=cfg.INTEREST)
                proposals.append(interest)
        seen = fc.seen_posts(impressions, at)
        merged = fc.merge_candidates(proposals, seen, pool, p.shares.as_dict(), p.max_candidates)
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


def _log_days(settings: Settings, ds: str, hours: int) -> list[str]:
    """The days of logs that cover `hours` before the end of ds (posts, impressions, actions)."""
    return [*days_before(settings.first_day, ds, math.ceil(hours / 24)), ds]


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
        spark.sparkContext.addFile(str(folder), recursive=True)
        ef_search = settings.retrieval.index.ef_search
        yield ds, search_in_workers(active, folder.path.name, k, ef_search)


def serving_frame(spark, store: Warehouse, settings: Settings, ds: str, table, at: dt.datetime):
    """The serving-time features of ds's candidate rows `table`, generated at `at`, from ds's
    committed tiles and raw tables."""
    raw = read_raw(spark, store, settings, ds)
    tiles = {t: read_state(spark, store, settings, t, ds, staged=False) for t in TILES}
    return fc.featurize_candidates(
        table,
        tiles,
        raw.posts,
        raw.follows,
        raw.users,
        raw.authors,
        at,
        **settings.features.model_dump(),
    )


@contextlib.contextmanager
def shipped_champion(spark, settings: Settings) -> Iterator[tuple[str, str]]:
    """(version, file name): the champion ranker, its GBDTs compiled, in a scratch folder
    added to the Spark workers' files under a name unique to this call (SparkContext.addFile
    refuses a name it already has with another path); the folder is removed afterwards.

    The compiled boosters are the version's artifact (built when it was registered); a
    version registered before that is compiled here, once, and its artifact stored: the
    workers load the compiled code and never compile."""
    use_tracking(settings)
    name = settings.mlflow.registered_model
    version = reg.champion_version(name)
    if version is None:
        raise RuntimeError(f"{name} has no champion yet: train_rankers must promote one first")
    with settings.root.scratch(f"ranker-v{version}") as scratch:
        if reg.compiled_folder(name, version, scratch) is None:
            reg.save_compiled(name, version, scratch)  # saves the ranker, compiled or not
        folder = scratch
        spark.sparkContext.addFile(str(folder), recursive=True)
        yield version, folder.path.name


def rank(settings: Settings, cands: FeedCandidates) -> RankedFeeds:
    """Featurize, score and re-rank the candidates; stage gold.user_news_feed ds."""
    ds, at = cands.ds, dt.datetime.fromisoformat(cands.generated_at)
    log_settings("precompute_feeds.rank", settings, ds)
    spark, store = get_spark(settings.spark), Warehouse(settings.root.warehouse)
    started = time.perf_counter()
    table = store.read_spark(spark, FEED_CANDIDATES, ds).drop(C.DS)
    table = table.where(F.col(C.GENERATED_AT) == F.lit(at))
    features = serving_frame(spark, store, settings, ds, table, at)
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
    spark, store = get_spark(settings.spark), Warehouse(settings.root.warehouse)
    use_tracking(settings)
    days = _log_days(settings, ds, settings.precompute.pool_hours)
    versions = reg.versions(settings.mlflow.registered_model)
    frames = {
        USER_NEWS_FEED.name: store.read_spark(spark, USER_NEWS_FEED, ds, staged=True).drop(C.DS),
        POSTS.name: store.read_spark(spark, POSTS, days).drop(C.DS),
        IMPRESSIONS.name: store.read_spark(spark, IMPRESSIONS, days).drop(C.DS),
        MODEL_VERSIONS: spark.createDataFrame([(v,) for v in versions], "version string"),
    }
    with store.lock(Layer.GOLD, ds, job="precompute_feeds.publish"):
        report = check_feed_partition(ds, frames, settings.precompute.feed_size)
        contracts.enforce(report)
        store.accept(USER_NEWS_FEED, ds, by=f"{USER_NEWS_FEED.qualified}'s contract")
        info = store.publish(USER_NEWS_FEED, ds)
    log.info("published %s ds=%s: %d rows", USER_NEWS_FEED.qualified, ds, info.rows)
    return extend(ranked, PublishedFeeds, checks=report.n_checks)


def evaluate(settings: Settings, published: PublishedFeeds) -> dict[str, float] | None:
    """The offline feed quality on the next day, against the simulator's truth (an MLflow run
    and a report); None, with a log line, when the next day is not simulated yet."""
    ds, at = published.ds, dt.datetime.fromisoformat(published.generated_at)
    nd = shift_ds(ds, 1)
    store = Warehouse(settings.root.warehouse)
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
    cands[fq.TRUE_VALUE] = _true_value(store, settings, ds, at, cands)
    engaged = _engaged(store, nd, visitors, at)
    value = fq.feed_value(cands, p.quality_k)
    recall = fq.candidate_recall(cands, engaged, cfg.SOURCES)
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
    report = fq.markdown(value, recall, counts, p.quality_k)
    metrics = fq.metrics(value, recall, p.quality_k)
    folder = settings.root.report_folder(JOB, ds)
    use_tracking(settings)
    with mlflow.start_run(run_name=f"precompute_feeds {ds}"):
        mlflow.set_tags({reg.DS_TAG: ds, PROFILE_TAG: settings.profile, STAGE_TAG: FEEDS_STAGE})
        mlflow.log_params(
            {C.MODEL_VERSION: published.model_version, C.GENERATED_AT: published.generated_at}
        )
        mlflow.log_dict(settings.precompute.model_dump(mode="json"), "precompute_settings.json")
        mlflow.log_metrics(
            metrics | {"feeds/users": published.users, "feeds/items": published.items}
        )
        mlflow.log_table(value, "feeds/value.json")
        mlflow.log_table(recall, "feeds/recall.json")
        log_figure(fq.quality_figure(value, recall, p.quality_k), "feeds/quality.png", folder)
        mlflow.log_text(report, REPORT)
    folder.writable(REPORT).write_text(report)
    log.info("feed quality ds=%s in %.1fs:\n%s", ds, time.perf_counter() - started, report)
    return metrics


def published_feeds(settings: Settings, ds: str) -> PublishedFeeds:
    """The hand-off of ds's committed feeds, rebuilt from the warehouse (for an evaluation
    that runs after the DAG run that published them: the closed loop's)."""
    store = Warehouse(settings.root.warehouse)
    cands_info, feed_info = store.info(FEED_CANDIDATES, ds), store.info(USER_NEWS_FEED, ds)
    at = feed_info.meta["generated_at"]
    cands = store.read_pandas(FEED_CANDIDATES, ds, columns=[C.USER_ID, C.SOURCES, C.GENERATED_AT])
    cands = cands[cands[C.GENERATED_AT] == pd.Timestamp(at)]
    by_source = cands[C.SOURCES].explode().value_counts().sort_index()
    return PublishedFeeds(
        ds=ds,
        generated_at=at,
        active_users=int(cands_info.meta.get(ACTIVE_USERS, cands[C.USER_ID].nunique())),
        users=int(cands[C.USER_ID].nunique()),
        candidates=len(cands),
        by_source={str(k): int(v) for k, v in by_source.items()},
        index_ds=cands_info.meta.get(INDEX_DS),
        model_version=str(feed_info.meta[C.MODEL_VERSION]),
        items=feed_info.rows,
        checks=0,  # not recorded with the partition
    )


def _popularity(store: Warehouse, settings: Settings, ds: str, at: dt.datetime) -> pd.DataFrame:
    """(post_id, popularity): positives on the post before `at`, in the pool's logs."""
    days = _log_days(settings, ds, settings.precompute.pool_hours)
    eng = store.read_pandas(ENGAGEMENTS, days, columns=[C.POST_ID, C.ACTION, C.EVENT_TS])
    pos = eng[eng[C.ACTION].isin(POSITIVE_ACTIONS) & (eng[C.EVENT_TS] < at)]
    return pos.groupby(C.POST_ID).size().rename(fq.POPULARITY).reset_index()


def _true_value(store: Warehouse, settings: Settings, ds: str, at, cands: pd.DataFrame):
    """The oracle's value of each candidate, at position 0, served at `at` on the user's
    primary device."""
    sim = settings.simulator
    users = store.read_pandas(USERS, ds, columns=[C.USER_ID, C.PRIMARY_DEVICE])
    device = users.drop_duplicates(C.USER_ID).set_index(C.USER_ID)[C.PRIMARY_DEVICE]
    pairs = pd.DataFrame(
        {
            C.USER_ID: cands[C.USER_ID].to_numpy(),
            C.POST_ID: cands[C.POST_ID].to_numpy(),
            C.SERVED_AT: pd.Timestamp(at),
            C.DEVICE: cands[C.USER_ID].map(device).to_numpy(),
        }
    )
    day = shift_ds(ds, 1)
    prior = store.read_pandas(ENGAGEMENTS, days_before(sim.start_date, day, sim.pool_days))
    truth = oracle_truth(world(sim), sim, pairs, prior.drop(columns=C.DS))
    probs = {a: truth[truth_column(a)].to_numpy() for a in ACTIONS}
    weights = settings.training.value
    return value_score(probs, truth[C.E_DWELL_S].to_numpy(), weights, dwell_given_click=True)


def _engaged(store: Warehouse, nd: str, visitors, at) -> pd.DataFrame:
    """(user_id, post_id, existed) of the posts each visitor acted on positively on nd."""
    eng = store.read_pandas(ENGAGEMENTS, nd, columns=[C.USER_ID, C.POST_ID, C.ACTION])
    eng = eng[eng[C.ACTION].isin(POSITIVE_ACTIONS) & eng[C.USER_ID].isin(visitors)]
    pairs = eng[[C.USER_ID, C.POST_ID]].drop_duplicates()
    posts = store.read_pandas(POSTS, nd, columns=[C.POST_ID])  # created on nd: after `at`
    pairs["existed"] = ~pairs[C.POST_ID].isin(posts[C.POST_ID])
    return pairs.reset_index(drop=True)


def run(settings: Settings, ds: str) -> PublishedFeeds:
    """Every step, in order (what the DAG runs as separate tasks), then the evaluation."""
    published = publish(settings, rank(settings, candidates(settings, ds)))
    evaluate(settings, published)
    return published


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
