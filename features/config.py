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
    # Priors of the smoothed hide and report rates (features.negative): the simulator's base
    # rates, rounded (tiny, 2 days: 0.19% hides, 0.084% reports per impression), each with
    # one pseudo-event behind it (rate * strength = 1, as prior_rate * prior_strength).
    hide_prior_rate: float = Field(0.002, ge=0, le=1)  # hide rate before any impression
    hide_prior_strength: float = Field(500.0, gt=0)  # pseudo-impressions behind it
    report_prior_rate: float = Field(0.001, ge=0, le=1)  # report rate before any impression
    report_prior_strength: float = Field(1000.0, gt=0)  # pseudo-impressions behind it
    history_len: int = Field(10, ge=1)  # engaged posts in each user_hist_* list
