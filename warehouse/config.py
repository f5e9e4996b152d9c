"""Settings of the warehouse's reads (the `warehouse` section) and of the feed store and its
read path (the `feeds` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    default_limit: int = Field(20, ge=1, le=500)  # items per page when the client names none
    max_limit: int = Field(100, ge=1, le=500)  # the largest page a client may ask for
    trending_size: int = Field(100, ge=1, le=500)  # length of the fallback (trending) feed
    log_served: bool = True  # record each page served: user, post, rank, version, served_at
    cursor_key: str = Field("feedrank-local-cursor-key", min_length=8)  # signs cursors (HMAC)
    host: str = "127.0.0.1"  # where `feedrank serve` listens
    port: int = Field(8000, ge=1, le=65535)  # and on which port

    @field_validator("store_url")
    @classmethod
    def _known_scheme(cls, url: str | None) -> str | None:
        if url is not None and url.split("://", 1)[0] not in STORE_SCHEMES:
            raise ValueError(f"feeds.store_url must start with one of {STORE_SCHEMES}://")
        return url
