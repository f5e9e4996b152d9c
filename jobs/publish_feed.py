"""Publish one day's precomputed feeds to the feed store, as a new version.

    python jobs/publish_feed.py --ds 2026-01-08 --profile demo

1. read gold.user_news_feed ds and the users of raw.users ds (when committed: the users the
   version knows, so that a user without a feed gets the fallback, not a 404);
2. check and split the feeds per user and compute the fallback (warehouse.feeds.base);
3. write the version to the store and flip its current pointer (atomic for readers).
"""

from __future__ import annotations

import logging
import sys
import time

from jobs.common import log_settings, run_job
from jobs.settings import Settings
from warehouse.catalog import USER_NEWS_FEED, USERS, C
from warehouse.feeds.base import VersionInfo
from warehouse.feeds.batch import prepare_batch
from warehouse.feeds.open import open_store

log = logging.getLogger(__name__)


def run(settings: Settings, ds: str) -> VersionInfo:
    """Publish gold.user_news_feed ds; returns the new current version."""
    log_settings("publish_feed", settings, ds)
    started = time.perf_counter()
    warehouse = settings.open_warehouse()
    feeds = warehouse.read_arrow(USER_NEWS_FEED, ds, verify=True)  # leaves the warehouse
    users = None
    if warehouse.is_committed(USERS, ds):
        users = warehouse.read_arrow(USERS, ds, columns=[C.USER_ID]).column(C.USER_ID).to_pylist()
    batch = prepare_batch(feeds, ds, users, settings.feeds.trending_size)
    store = open_store(settings.feeds, settings.root)
    try:
        info = store.publish(batch)
    finally:
        store.close()
    log.info(
        "published feed version %s: %d users, %d items in %.1fs",
        info.version,
        info.users,
        info.items,
        time.perf_counter() - started,
    )
    return info


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
