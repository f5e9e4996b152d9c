"""The factory of the feed store: the backend the `feeds` settings name (as Feast's
`get_online_store_from_config`), imported only when chosen; and the key that signs cursors."""

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


def cursor_key(settings: FeedSettings, root: DataRoot) -> bytes:
    """The key that signs cursors: `feeds.cursor_key` when set, else the data root's own
    (generated at first use, owner-only), so that no key is shared through the repository."""
    if settings.cursor_key is not None:
        return settings.cursor_key.get_secret_value().encode()
    return root.secret("cursor_key")
