"""Settings of the warehouse's reads (the `warehouse` section) and of the feed store and its
read path (the `feeds` section)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, field_validator

STORE_SCHEMES = ("sqlite", "redis", "rediss")
# Tables whose reads check the files' sha256 by default: the training set (it feeds the
# rankers) and the precomputed feeds (the feed store publishes them to users).
CHECKSUM_TABLES = ("training_examples", "user_news_feed")
ALL_TABLES = "*"


class WarehouseSettings(BaseModel):
    """How reads check what the warehouse committed. Every read of a committed version
    checks its Parquet footers' row count against its `_COMMITTED` marker; the tables named
    here also have their files' sha256 checked (once per version and process)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checksum_tables: tuple[str, ...] = CHECKSUM_TABLES  # table names, or ["*"] for every table
    # Build silver and gold days on inputs that are stale (built from a partition that was
    # republished since, warehouse.lineage); off: such a write is refused, naming the input.
    allow_stale: bool = False

    @field_validator("checksum_tables")
    @classmethod
    def _known_tables(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from warehouse.catalog import TABLES

        unknown = [n for n in names if n != ALL_TABLES and n not in TABLES]
        if unknown:
            raise ValueError(
                f"warehouse.checksum_tables: unknown tables {unknown}; use names of "
                f"{sorted(TABLES)} or {ALL_TABLES!r}"
            )
        return names


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
