"""Settings of the training set, the rankers and the registry (the `training` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.ranking.base import ENSEMBLE, KINDS, MEMBER_KINDS
from models.ranking.dnn.config import DnnSettings
from models.value import ValueWeights
from warehouse.catalog import ACTIONS


class GbdtSettings(BaseModel):
    """LightGBM knobs shared by every task; early stopping picks the number of trees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(63, ge=2)
    min_child_samples: int = Field(100, ge=1)  # rows per leaf: rare actions overfit below this
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    max_rounds: int = Field(1000, ge=1)  # upper bound; early stopping usually ends sooner
    early_stopping_rounds: int = Field(50, ge=1)
    huber_delta: float = Field(30.0, gt=0)  # seconds: dwell errors beyond this count linearly
    num_threads: int = Field(0, ge=0)  # 0: LightGBM's default (all cores)


class EnsembleSettings(BaseModel):
    """How the ensemble ranker combines its members' calibrated probabilities, per action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # average: the mean of the members' logits, nothing fitted, so the gate's validation
    # NDCG is as fair for the ensemble as for its members (whose early stopping also saw
    # those days); stacker: a logistic regression on the logits, fitted on validation
    combine: Literal["average", "stacker"] = "average"
    # the stacker fits on this share of the validation users (a seeded hash); the rest
    # measure how much of its gain is in-sample (logged as ensemble/<task>/logloss_*)
    stacker_share: float = Field(0.5, gt=0, lt=1)
    stacker_c: float = Field(1.0, gt=0)  # inverse L2 strength of the stacker's coefficients


class TrainingSettings(BaseModel):
    """Which days train, validate and test, how negatives are sampled, how models are gated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribution_window_s: int = Field(3600, ge=1)  # an action counts if this soon after serving
    train_days: int | None = Field(None, ge=1)  # days before validation; None: every such day
    val_days: int = Field(1, ge=1)  # days after training: early stopping and the promotion gate
    test_days: int = Field(1, ge=1)  # the latest days: the reported metrics
    negative_rate: float = Field(0.1, gt=0, le=1)  # share of each task's negatives kept
    seed: int = 7  # the sampling draw and LightGBM's bagging
    # position and source as training inputs, fixed to their serving values when scoring
    debias: bool = True
    gbdt: GbdtSettings = GbdtSettings()
    dnn: DnnSettings = DnnSettings()  # the multi-task deep ranker (models.ranking.dnn.ranker)
    value: ValueWeights = ValueWeights()
    ranking_k: int = Field(10, ge=1)  # NDCG@k and MAP@k per request
    promotion_margin: float = Field(0.002, ge=0)  # validation NDCG a challenger must gain
    # ranker kinds trained every night, each registered as a version (models.ranking.base.KINDS);
    # an ensemble is made of every other kind listed
    kinds: tuple[Literal["gbdt", "dnn", "ensemble"], ...] = KINDS
    ensemble: EnsembleSettings = EnsembleSettings()
    # harm guard: a challenger whose validation AUC on one of `harm_tasks` is lower than the
    # champion's (or a safer lower-ranked passing peer's of the same night) by more than this, or
    # whose NCE is higher by more, is not promoted even if its NDCG wins. 0.01 AUC is about
    # the noise between seeds on a demo validation day, and hide/report weigh little in NDCG,
    # so a model blind to them could otherwise win
    harm_margin: float = Field(0.01, ge=0)
    harm_tasks: tuple[str, ...] = ("hide", "report")  # the negative-feedback actions guarded
    # the gate's metric (models.evaluation.evaluate.GATE_METRICS): auto is the value ranking's
    # NDCG@k with
    # a truth layer (the simulator), MIND's group AUC of clicks on a real log
    gate_metric: Literal["auto", "value_ndcg", "click_group_auc", "click_ndcg"] = "auto"
    # a decision needs this many validation requests where the gate metric is defined, and
    # this many positives in them; below, nothing is promoted (24 requests once made a model
    # champion whose test click AUC was 0.42)
    gate_min_requests: int = Field(200, ge=1)
    gate_min_positives: int = Field(200, ge=1)
    # resamples of the bootstrap over requests: the MIND metrics' intervals and the gate's
    # paired interval of the gain, which must clear the margin at its lower end
    bootstrap: int = Field(1000, ge=10)
    bootstrap_level: float = Field(0.95, gt=0, lt=1)

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        if not kinds or len(set(kinds)) != len(kinds):
            raise ValueError(f"kinds must be distinct and not empty, got {list(kinds)}")
        members = [k for k in kinds if k in MEMBER_KINDS]
        if ENSEMBLE in kinds and len(members) < 2:
            raise ValueError(
                f"an ensemble needs at least 2 member kinds among {MEMBER_KINDS}, got {members}"
            )
        return kinds

    @field_validator("harm_tasks")
    @classmethod
    def _harm_tasks(cls, tasks: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(tasks) - set(ACTIONS))
        if unknown:
            raise ValueError(f"harm_tasks must be actions of {ACTIONS}, got {unknown}")
        return tasks

    def member_kinds(self) -> tuple[str, ...]:
        """The kinds trained on examples, in the order given (the ensemble's members)."""
        return tuple(k for k in self.kinds if k in MEMBER_KINDS)


class MlflowSettings(BaseModel):
    """Where runs and models go (the `mlflow` section). On a laptop: a SQLite file and an
    artifact folder under the data root; on a cluster: FEEDRANK__MLFLOW__TRACKING_URI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tracking_uri: str | None = None  # None: sqlite under <home>/mlflow; or http://mlflow:5000
    experiment: str = "feedrank"  # the pipeline's experiment
    registered_model: str = "feedrank-ranker"
