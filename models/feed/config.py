"""Settings of the feed precompute (the `precompute` section): who gets a feed, where its
candidates come from, and how the scored list is re-ranked."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from warehouse.catalog import FEED_SOURCES


class SourceShares(BaseModel):
    """How the candidate cap is shared between sources when they propose more than it.

    A candidate's priority is its rank within a source divided by that source's share (its
    best over the sources that proposed it), and the lowest priorities fill the cap: a
    weighted round-robin, so each source keeps about its share of the cap, and what a short
    source leaves goes to the others.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: float = Field(0.5, gt=0)
    resurfaced: float = Field(0.1, gt=0)
    interest: float = Field(0.3, gt=0)
    trending: float = Field(0.1, gt=0)

    def as_dict(self) -> dict[str, float]:
        return {s: getattr(self, s) for s in FEED_SOURCES}


class RerankSettings(BaseModel):
    """The re-ranker's weights (models.feed.rerank): a pure function over one user's scored list."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The k-th post (0-based) of an author in value order is multiplied by decay**k, at least
    # by the floor (X's author-diversity scorer: 0.5 per repeat, floor 0.25).
    author_repeat_decay: float = Field(0.5, gt=0, le=1)
    author_repeat_floor: float = Field(0.25, ge=0, le=1)
    # No two media posts (photo, video) in a row where a text or link post is left to place.
    separate_media: bool = True
    # A post h hours old is multiplied by 1 + boost * 0.5 ** (h / half_life).
    freshness_boost: float = Field(0.2, ge=0)
    freshness_half_life_h: float = Field(6.0, gt=0)
    out_of_network_weight: float = Field(0.9, ge=0)  # posts by authors the user does not follow


class PrecomputeSettings(BaseModel):
    """Who gets a feed, from which candidates, and how long it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    active_days: int = Field(1, ge=1, le=30)  # active: a feed request in the N days before
    max_candidates: int = Field(500, ge=1, le=5000)  # candidates scored per user
    feed_size: int = Field(500, ge=1, le=5000)  # items kept per user after re-ranking
    pool_hours: int = Field(72, ge=1)  # a feed's posts were created this recently
    # "Since the previous generation" for a user without an earlier feed: the nightly cadence.
    refresh_hours: int = Field(24, ge=1)
    interest_k: int = Field(200, ge=0)  # two-tower neighbours asked of the day's index
    trending_hours: int = Field(6, ge=1)  # trending: positives in the hours before generation
    trending_k: int = Field(50, ge=0)  # the most engaged posts of those hours
    resurfaced_k: int = Field(50, ge=0)  # unseen older network posts that gained the most
    shares: SourceShares = SourceShares()
    rerank: RerankSettings = RerankSettings()
    quality_k: int = Field(10, ge=1)  # feed-quality report: the top k of each ranking
