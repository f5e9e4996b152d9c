"""Settings of the feed store and its read path (the `feeds` section)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, field_validator

STORE_SCHEMES = ("sqlite", "redis", "rediss")
# Keys published in this repository (the old default): never to serve beyond loopback.
DEVELOPMENT_KEYS = frozenset({"feedrank-local-cursor-key"})


class FeedSettings(BaseModel):
    """Where published feeds live and how pages are served.

    The store is chosen by a URL: none for a SQLite file in the data root, `sqlite:////abs/path`
    for another file, `redis://host:6379/0` for Redis (run it with `maxmemory-policy
    volatile-lru`, so that under memory pressure Redis evicts feeds, which carry a TTL, and
    never the version pointers, which do not).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_url: str | None = None  # None: SQLite in the data root; sqlite:///... or redis://...
    keep_versions: int = Field(2, ge=2, le=10)  # versions kept: current, previous (rollback)...
    redis_prefix: str = Field("feedrank", min_length=1)  # namespace of every Redis key
    redis_ttl_s: int = Field(7 * 86400, ge=60)  # a feed not republished this long expires
    lock_ttl_s: int = Field(60, ge=1, le=3600)  # Redis writer lease, renewed while writing
    default_limit: int = Field(20, ge=1, le=500)  # items per page when the client names none
    max_limit: int = Field(100, ge=1, le=500)  # the largest page a client may ask for
    trending_size: int = Field(100, ge=1, le=500)  # length of the fallback (trending) feed
    log_served: bool = True  # record each page served: user, post, rank, version, served_at
    # Signs cursors (HMAC). None: the data root's own key (secrets/cursor_key, generated at
    # first use, mode 0600); set it when several servers on different roots share cursors.
    # Secret: logs, MLflow params and artifacts show it as '**********'.
    cursor_key: SecretStr | None = Field(None, min_length=16)
    host: str = "127.0.0.1"  # where `feedrank serve` listens
    port: int = Field(8000, ge=1, le=65535)  # and on which port

    @field_serializer("store_url", when_used="json")
    def _hide_password(self, url: str | None) -> str | None:
        """A Redis URL's password never reaches a log or MLflow."""
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username or ''}:**********@{parts.hostname}"
        netloc += f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=netloc))

    @field_validator("store_url")
    @classmethod
    def _known_scheme(cls, url: str | None) -> str | None:
        if url is not None and url.split("://", 1)[0] not in STORE_SCHEMES:
            raise ValueError(f"feeds.store_url must start with one of {STORE_SCHEMES}://")
        return url
