"""Publish one day's precomputed feeds to the feed store, as a new version.

    python jobs/publish_feed.py --ds 2026-01-08 --profile demo

1. read gold.user_news_feed ds and the users of raw.users ds (when committed: the users the
   version knows, so that a user without a feed gets the fallback, not a 404);
2. check and split the feeds per user and compute the fallback (warehouse.feeds.batch);
3. write the version to the store and flip its current pointer (atomic for readers); the
   version records the warehouse versions it was built from (lineage), so that `feedrank
   feeds status` says when an input was republished since (`stale_inputs`).
"""

from __future__ import annotations

import logging
import sys
import time

from jobs.common import log_settings, run_job
from jobs.settings import Settings
from warehouse.catalog import USER_NEWS_FEED, USERS, C, table
from warehouse.feeds.base import VersionInfo
from warehouse.feeds.batch import prepare_batch
from warehouse.feeds.open import open_store
from warehouse.store import Warehouse

log = logging.getLogger(__name__)


def run(settings: Settings, ds: str) -> VersionInfo:
    """Publish gold.user_news_feed ds; returns the new current version."""
    log_settings("publish_feed", settings, ds)
    started = time.perf_counter()
    warehouse = settings.open_warehouse()
    warehouse.refuse_stale(USER_NEWS_FEED, [ds], use="publish feeds to the feed store")
    feeds = warehouse.read_arrow(USER_NEWS_FEED, ds, verify=True)  # leaves the warehouse
    built_from = {USER_NEWS_FEED.name: warehouse.version(USER_NEWS_FEED, ds)}
    users = None
    if warehouse.is_committed(USERS, ds):
        users = warehouse.read_arrow(USERS, ds, columns=[C.USER_ID]).column(C.USER_ID).to_pylist()
        built_from[USERS.name] = warehouse.version(USERS, ds)
    batch = prepare_batch(feeds, ds, users, settings.feeds.trending_size, built_from)
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


def stale_inputs(warehouse: Warehouse, info: VersionInfo) -> list[str]:
    """The inputs of a published version that were republished (or removed) since: one line
    each, naming table, day and both versions; empty when it is up to date."""
    out = []
    for name, built in sorted(info.built_from.items()):
        now = warehouse.version(table(name), info.ds)
        if now != built:
            out.append(
                f"{table(name).qualified} ds={info.ds}: built from version {built}, now "
                f"{now or 'none committed'}"
            )
    return out


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
