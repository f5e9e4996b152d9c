"""Settings of the multi-task deep ranker (the `training.dnn` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Count-like numeric features (fnmatch patterns over the feature registry's names): log1p
# before the mean/std normalisation, since their tails span several orders of magnitude.
COUNT_PATTERNS = (
    "post_*_1h",
    "post_*_1d",
    "post_*_3d",
    "post_*_7d",
    "post_*_decayed",
    "net_*",
    "author_followers",
    "author_followees",
    "author_follow_ratio",
    "user_impressions_7d",
    "user_requests_7d",
    "ua_common_followees",
    "hashtag_count",
    "length",
    "post_age_h",
    "ctx_hours_since_prev_request",
)


class LossWeights(BaseModel):
    """Weight of each task's loss in the sum the network minimises."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    click: float = Field(1.0, ge=0)
    like: float = Field(1.0, ge=0)
    comment: float = Field(1.0, ge=0)
    share: float = Field(1.0, ge=0)
    # The rare negative actions weigh more: on demo, 3 (against 1) raised the validation
    # hide AUC from 0.603 to 0.628 and report from 0.618 to 0.652 at the same NDCG.
    hide: float = Field(3.0, ge=0)
    report: float = Field(3.0, ge=0)
    dwell: float = Field(0.5, ge=0)  # Huber loss (divided by its delta) on clicked rows


class DnnSettings(BaseModel):
    """Shape, inputs and training of the deep ranker (models.ranking.dnn.ranker,
    models.ranking.dnn.train)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # inputs
    # Hashed ids. One bucket: every id shares one embedding row, so the id is not used. On
    # demo (12 training days) id embeddings overfit within two epochs: with 20K/20K/50K
    # buckets the test day's click AUC was 0.761 and hide 0.623, with one bucket each 0.772
    # and 0.678. Raise them for a log long enough to learn its users, authors and posts.
    user_buckets: int = Field(1, ge=1)  # hashed user ids
    user_dim: int = Field(16, ge=1, le=256)  # user id embedding size
    author_buckets: int = Field(1, ge=1)  # hashed author ids (also the history's)
    author_dim: int = Field(16, ge=1, le=256)  # author id embedding size
    post_buckets: int = Field(1, ge=1)  # hashed post ids
    post_dim: int = Field(8, ge=1, le=256)  # post id embedding size
    topic_buckets: int = Field(64, ge=1)  # topic ids modulo this (the history's too)
    cat_dim: int = Field(8, ge=1, le=128)  # every categorical embedding, and attention fields
    log1p: tuple[str, ...] = COUNT_PATTERNS  # numeric columns (fnmatch) that get log1p first
    # standardised numbers are clipped to +-clip (None: not clipped); a rare count's z of
    # 250 through the DCN's products gave logits of +-5000
    clip: float | None = Field(5.0, gt=0)
    history_attention: bool = True  # DIN pooling of hist_* columns when the frame holds them
    wide_crosses: tuple[tuple[str, str], ...] = (("user_id", "topic"), ("user_id", "author_id"))
    wide_buckets: int = Field(200_000, ge=1)  # hashed cross buckets of the wide part
    max_position: int = Field(20, ge=1)  # positions above this share the last bucket
    # network
    interaction: Literal["mlp", "dcn", "attention"] = "dcn"  # layer over the input fields
    cross_layers: int = Field(2, ge=1, le=8)  # DCN-v2 cross layers
    attention_heads: int = Field(2, ge=1, le=16)  # heads of field self-attention
    bottom: Literal["shared", "mmoe"] = "shared"  # one bottom for all tasks, or experts
    experts: int = Field(4, ge=1, le=32)  # MMoE experts (one gate per task)
    hidden: tuple[int, ...] = (256, 128)  # the bottom's (each expert's) layer widths
    head_hidden: int = Field(32, ge=0)  # each task head's hidden width; 0: linear heads
    dropout: float = Field(0.1, ge=0, lt=1)
    # loss
    loss_weights: LossWeights = LossWeights()
    huber_delta: float = Field(30.0, gt=0)  # seconds: dwell errors beyond this count linearly
    # optimisation
    batch_size: int = Field(1024, ge=2)
    shuffle_buffer: int = Field(65_536, ge=1)  # rows shuffled together while streaming
    read_rows: int = Field(65_536, ge=1)  # rows per Parquet record batch read
    epochs: int = Field(8, ge=1)  # upper bound; early stopping usually ends sooner
    learning_rate: float = Field(2e-3, gt=0, le=1)  # AdamW peak rate
    weight_decay: float = Field(1e-5, ge=0)  # AdamW decoupled decay
    warmup_share: float = Field(0.05, ge=0, lt=1)  # share of steps warming up linearly
    schedule: Literal["cosine", "constant"] = "cosine"  # after the warmup
    grad_clip: float = Field(5.0, gt=0)  # max global gradient norm
    patience: int = Field(2, ge=1)  # epochs without validation gain before stopping
    # torch threads, fixed so results repeat; a group of `processes` shares them (each
    # process num_threads // processes, at least 1)
    num_threads: int = Field(2, ge=1)
    # Processes that train together (PySpark's TorchDistributor, models.ranking.dnn.distributed:
    # beside the driver on a local master, one per executor task on a cluster); 1: in the
    # job's own process. batch_size must be a multiple of it.
    processes: int = Field(1, ge=1)
    seed: int = 13  # initialisation, shuffling and dropout
