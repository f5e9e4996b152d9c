"""Settings of the two-tower retrieval model and its FAISS index (the `retrieval` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from warehouse.catalog import POSITIVE_ACTIONS


class PositiveWeights(BaseModel):
    """Weight of a training pair by the strongest positive action on the impression."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    click: float = Field(1.0, ge=0)
    like: float = Field(2.0, ge=0)
    comment: float = Field(3.0, ge=0)
    share: float = Field(3.0, ge=0)

    def as_dict(self) -> dict[str, float]:
        return {a: getattr(self, a) for a in POSITIVE_ACTIONS}


class TowerSettings(BaseModel):
    """Shape and training of the user and post towers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(32, ge=2, le=512)  # output embedding size (the index's dimension)
    id_dim: int = Field(16, ge=1, le=256)  # size of every categorical embedding
    hidden: int = Field(64, ge=1, le=2048)  # width of each tower's hidden layer
    user_buckets: int = Field(20_000, ge=1)  # hashed user ids
    author_buckets: int = Field(20_000, ge=1)  # hashed author ids
    hashtag_buckets: int = Field(4096, ge=1)  # hashed hashtags
    n_topics: int = Field(64, ge=1)  # topic ids above this share the last bucket
    history_len: int = Field(20, ge=1, le=500)  # engaged posts pooled into the user tower
    pooling: Literal["mean", "attention"] = "mean"  # how the history is pooled
    temperature: float = Field(0.1, gt=0, le=10)  # logits = cosine / temperature
    logq: bool = True  # subtract log sampling probability from in-batch logits
    random_negatives: int = Field(0, ge=0)  # uniform negatives from the pool, per batch
    batch_size: int = Field(512, ge=2)
    learning_rate: float = Field(0.003, gt=0, le=1)
    max_epochs: int = Field(20, ge=1)
    patience: int = Field(3, ge=1)  # epochs without validation gain before stopping
    threads: int = Field(2, ge=1)  # torch threads: fixed, so results repeat
    seed: int = 11  # initialisation, batch order and random negatives


class IndexSettings(BaseModel):
    """Which FAISS index serves the pool and the recall it must reach against exact search."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flat_max: int = Field(50_000, ge=1)  # pools up to this size use exact IndexFlatIP
    kind: Literal["ivf", "hnsw"] = "hnsw"  # the approximate index above flat_max
    nlist: int = Field(0, ge=0)  # IVF lists; 0: 4 * sqrt(pool size)
    nprobe: int = Field(128, ge=1)  # IVF lists visited per query (64 gave recall 0.90 at 100K)
    hnsw_m: int = Field(32, ge=4, le=128)  # HNSW neighbours per node
    ef_construction: int = Field(80, ge=8)  # HNSW build beam
    ef_search: int = Field(800, ge=1)  # HNSW beam, raised to k if below (800: 0.965 at 100K)
    min_recall: float = Field(0.95, ge=0, le=1)  # recall@k against exact; below fails the build
    recall_queries: int = Field(500, ge=1)  # real user queries sampled to measure it
    threads: int = Field(2, ge=1)  # faiss.omp_set_num_threads


class RetrievalSettings(BaseModel):
    """Training pairs, evaluation and the promotion gate of the retrieval stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    positives: PositiveWeights = PositiveWeights()
    tower: TowerSettings = TowerSettings()
    index: IndexSettings = IndexSettings()
    pool_window_h: float = Field(48.0, gt=0)  # a post is servable this long after creation
    ks: tuple[int, ...] = (50, 200, 500)  # recall@k reported
    gate_k: int = Field(500, ge=1)  # recall@k the promotion gate compares
    cold_age_h: float = Field(6.0, gt=0)  # the cold-start slice: posts younger than this
    eval_requests: int = Field(5000, ge=1)  # requests sampled per evaluated day (seeded)
    promotion_margin: float = Field(0.0, ge=0)  # validation recall a challenger must gain
    registered_model: str = "feedrank-retrieval"
