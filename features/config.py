"""Settings of the feature families (the `features` section of the settings).

The only source of these values: the feature functions take them as required keywords.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FeatureSettings(BaseModel):
    """Knobs of the feature families; passed to features_from_tiles as keywords."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # prior engagement rate of a post with no impressions
    prior_rate: float = Field(0.05, ge=0, le=1)
    prior_strength: float = Field(20.0, ge=0)  # pseudo-impressions behind the prior
    pagerank_iterations: int = Field(20, ge=1)  # power iterations of the author PageRank
    last_k_topics: int = Field(5, ge=1)  # topics in user_last_topics
