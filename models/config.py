"""Settings of the training set, the rankers and the registry (the `training` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from models.dnn_config import DnnSettings
from models.value import ValueWeights


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
    dnn: DnnSettings = DnnSettings()  # the multi-task deep ranker (models.dnn)
    value: ValueWeights = ValueWeights()
    ranking_k: int = Field(10, ge=1)  # NDCG@k and MAP@k per request
    promotion_margin: float = Field(0.002, ge=0)  # validation NDCG a challenger must gain


class MlflowSettings(BaseModel):
    """Where runs and models go (the `mlflow` section). On a laptop: a SQLite file and an
    artifact folder under the data root; on a cluster: FEEDRANK__MLFLOW__TRACKING_URI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tracking_uri: str | None = None  # None: sqlite under <home>/mlflow; or http://mlflow:5000
    experiment: str = "feedrank"  # the pipeline's experiment
    registered_model: str = "feedrank-ranker"
