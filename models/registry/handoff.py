"""The small typed values a training pipeline's steps hand each other.

Each step of a train -> evaluate -> register -> promote chain returns one of these; a DAG
passes it through XCom as `dataclasses.asdict(value)` and the next task rebuilds it with
`Type(**value)`. Each extends the one before, so a later value carries everything earlier.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

T = TypeVar("T", bound="TrainedRun")
# What the feed candidates' partition records in its commit meta besides generated_at.
ACTIVE_USERS, INDEX_DS = "active_users", "index_ds"


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A trained model logged in an MLflow run."""

    run_id: str  # the MLflow run that holds the model and its metrics
    model_uri: str  # the logged model, e.g. models:/m-...
    ds: str  # the last day the training could use


@dataclasses.dataclass(frozen=True)
class EvaluatedRun(TrainedRun):
    """... evaluated on its validation and test days."""

    gate_metric: float | None  # the metric the promotion gate compares; None when undefined
    report: str  # the evaluation report's local file


@dataclasses.dataclass(frozen=True)
class RegisteredVersion(EvaluatedRun):
    """... registered as a new version with the challenger alias."""

    version: str  # the registered model's new version


@dataclasses.dataclass(frozen=True)
class Promotion(RegisteredVersion):
    """... and the gate's decision."""

    promoted: bool  # the version now holds the champion alias
    reason: str  # why, in words (also on the version's and the run's tags)
    champion: str | None  # the champion version after the decision


@dataclasses.dataclass(frozen=True)
class Gate:
    """One night's gate over every kind's new version, against the champion: each version's
    Promotion, in training order (at most one promoted), and the champion after it."""

    ds: str  # the last day the training could use
    promotions: list[Promotion]  # dicts (from XCom) become Promotions
    champion: str | None  # the champion version after the gate

    def __post_init__(self):
        rebuilt = [p if isinstance(p, Promotion) else Promotion(**p) for p in self.promotions]
        object.__setattr__(self, "promotions", rebuilt)

    @property
    def winner(self) -> Promotion | None:
        """The version the gate promoted, or None."""
        return next((p for p in self.promotions if p.promoted), None)


def extend(value: TrainedRun, cls: type[T], **fields) -> T:
    """`value` as the next step's type, with that step's fields added."""
    return cls(**dataclasses.asdict(value), **fields)


# The feed precompute's steps: candidates -> rank (features, scores, re-ranking) -> publish
# -> evaluate. Values are plain (str, int, dict) so that XCom carries them as they are.


@dataclasses.dataclass(frozen=True)
class FeedCandidates:
    """The candidates of one generation, in silver.feed_candidates ds."""

    ds: str  # the day the feeds are built from (features, index, logs up to its end)
    generated_at: str  # ISO time of the generation (lastGenerated); as_of is the hour before
    active_users: int  # users the activity policy selected
    users: int  # users with at least one candidate
    candidates: int  # rows
    by_source: dict[str, int]  # candidates each source proposed (a post may have several)
    index_ds: str | None  # the retrieval index's day; None: no interest candidates


@dataclasses.dataclass(frozen=True)
class RankedFeeds(FeedCandidates):
    """... scored by the champion ranker, re-ranked, staged as gold.user_news_feed ds."""

    model_version: str  # the ranker's registry version
    items: int  # feed rows staged


@dataclasses.dataclass(frozen=True)
class PublishedFeeds(RankedFeeds):
    """... that passed the feed contract and are published."""

    checks: int  # contract checks run
