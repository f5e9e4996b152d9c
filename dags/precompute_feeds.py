"""
### precompute_feeds

Every active user's ranked feed, precomputed into `gold.user_news_feed` (the cached
UserNewsFeed: at most 500 items per user and the time it was generated). Runs when a ranker
was gated and a new day of features is published (the latest such day), or by hand for the
run's logical date.

1. **candidates**: the active users (a feed request in `precompute.active_days`) and, per
   user, followees' posts new since the previous generation, older network posts that gained
   engagement since, the two-tower's neighbours from the day's FAISS index, and the trending
   posts; already seen and own posts dropped; capped at `max_candidates` by a weighted
   round-robin over the sources -> `silver.feed_candidates`.
2. **rank**: serving-time features by the training set's point-in-time code, the registry's
   `champion` ranker on each Spark worker, the value model, the re-ranker (author repeats,
   media runs, freshness, out-of-network weight) -> `gold.user_news_feed`, staged.
3. **publish**: the feed's Great Expectations contract (ranks 1..n, the cap, nothing seen,
   nothing from the future, probabilities in [0, 1], a registered model version); a failing
   partition is not published. Marks the `user_news_feed` Asset (the feed store publishes it).
4. **evaluate** (jobs/evaluate_feeds.py): when the next day is simulated, the top-10 true
   value of the feeds against reverse-chronological, popularity and the oracle, and candidate
   recall by source, in an MLflow run with a plot and a report.

Params: `profile`, `seed`, `generated_at` (an intra-day refresh), `max_candidates`.
"""

from __future__ import annotations

from dataclasses import asdict

from airflow.sdk import dag, get_current_context, task

from jobs.airflow_support import (
    DEFAULT_ARGS,
    FEATURES,
    FEEDS,
    RANKER,
    asset_scheduled,
    days_to_build,
    lazy_job,
    mark_days,
    precompute_params,
    settings_from,
)

job = lazy_job("precompute_feeds")  # imported when a task runs, not when the file is parsed
evaluate_feeds = lazy_job("evaluate_feeds")


@dag(
    schedule=(RANKER & FEATURES),
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=precompute_params(),
    tags=["feedrank", "feeds", "serving", "spark"],
    doc_md=__doc__,
    **asset_scheduled(),
)
def precompute_feeds():
    # Each step hands the next a models.registry.handoff dataclass, through XCom as a dict.
    @task
    def candidates(params=None):
        ds = days_to_build(get_current_context())[-1]  # feeds are current state: the latest
        settings = settings_from(params, ds)
        return asdict(job.candidates(settings, ds, params.get("generated_at")))

    @task
    def rank(cands, params=None):
        return asdict(job.rank(settings_from(params), job.FeedCandidates(**cands)))

    @task(outlets=[FEEDS])
    def publish(ranked, params=None, outlet_events=None):
        published = job.publish(settings_from(params), job.RankedFeeds(**ranked))
        mark_days(outlet_events, FEEDS, [published.ds])
        return asdict(published)

    @task
    def evaluate(published, params=None):
        return evaluate_feeds.evaluate(settings_from(params), job.PublishedFeeds(**published))

    evaluate(publish(rank(candidates())))


precompute_feeds()
