"""Settings of the feature families (the `features` section of the settings)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FeatureSettings(BaseModel):
    """Knobs of the feature families; passed to features_from_tiles as keywords."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prior_rate: float = 0.05  # prior engagement rate of a post with no impressions yet
    prior_strength: float = 20.0  # pseudo-impressions behind the prior
    pagerank_iterations: int = 20  # power iterations of the author PageRank
    last_k_topics: int = 5  # topics in user_last_topics
