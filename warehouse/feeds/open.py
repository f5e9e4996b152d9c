"""The factory of the feed store: the backend the `feeds` settings name (as Feast's
`get_online_store_from_config`), imported only when chosen."""

from __future__ import annotations

from pathlib import Path

from warehouse.config import FeedSettings
from warehouse.feeds.base import FeedStore
from warehouse.layout import DataRoot


def open_store(settings: FeedSettings, root: DataRoot) -> FeedStore:
    """The store the settings name: Redis for redis:// URLs, else SQLite."""
    url = settings.store_url or f"sqlite:///{root.feed_store.resolve()}"
    if url.startswith(("redis://", "rediss://")):
        from warehouse.feeds.redis import RedisFeedStore

        return RedisFeedStore(url, settings)
    from warehouse.feeds.sqlite import SqliteFeedStore

    return SqliteFeedStore(Path(url.removeprefix("sqlite:///")), settings)
