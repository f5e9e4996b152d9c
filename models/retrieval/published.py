"""The day's retrieval index: the champion's vectors of the servable pool, published as one
version of warehouse.artifacts.RETRIEVAL_INDEX, and read back by the feed precompute.

    meta = publish_index(store, artifacts, data, model, version, ds, settings.retrieval)
    pub = load_published(artifacts)          # the latest day's, or load_published(artifacts, ds)

The pool is every post servable at the end of ds (created within the pool window); the users
are those active that day (an engagement or an impression), embedded as of the end of the day.
Their FAISS index (models.retrieval.index, recall against exact checked on a seeded sample of those
users), the post-id map and the user vectors are published atomically: a build below the
recall floor raises and publishes nothing.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.retrieval import index as ix
from models.retrieval.config import RetrievalSettings
from models.retrieval.stage import DAY_S, Data, encoder
from models.retrieval.two_tower import TwoTower, embed_posts, embed_users
from warehouse.artifacts import RETRIEVAL_INDEX, ArtifactStore
from warehouse.catalog import IMPRESSIONS, C

if TYPE_CHECKING:
    from warehouse.store import Warehouse

log = logging.getLogger(__name__)


def active_users(store: Warehouse, data: Data, ds: str) -> np.ndarray:
    """User rows with a positive or an impression on ds."""
    active = np.unique(data.positives.user_row[data.positives.day == ds].to_numpy())
    imp = store.read_pandas(IMPRESSIONS, ds, columns=[C.USER_ID])
    active = np.union1d(active, data.users.rows(imp[C.USER_ID].unique()))
    return active[active >= 0]


def publish_index(
    store: Warehouse,
    artifacts: ArtifactStore,
    data: Data,
    model: TwoTower,
    version: str,
    ds: str,
    r: RetrievalSettings,
) -> dict[str, Any]:
    """Index the model's vectors of the pool servable at the end of ds; publish atomically.
    Returns the version's meta.json."""
    enc = encoder(data, r, model)
    end = int(pd.Timestamp(ds, tz="UTC").timestamp()) + DAY_S
    created = data.posts.created_s
    pool = np.flatnonzero((created < end) & (created >= end - int(r.pool_window_h * 3600)))
    active = active_users(store, data, ds)
    users = embed_users(model, enc, active, np.full(len(active), end))  # (users, dim)
    vectors = embed_posts(model, enc, pool)  # (posts, dim)
    rng = np.random.default_rng(r.tower.seed)
    sample = rng.choice(len(users), min(len(users), r.index.recall_queries), replace=False)
    built = ix.build_index(vectors, users[np.sort(sample)], r.gate_k, r.index)
    meta = {
        "ds": ds,
        "model_version": version,
        "kind": built.kind,
        f"recall_at_{built.k}_vs_exact": built.recall,
        "posts": len(pool),
        "users": len(active),
        "dim": int(vectors.shape[1]),
        "build_s": built.build_s,
    }
    artifacts.publish(
        RETRIEVAL_INDEX,
        ds,
        {
            "index.faiss": ix.to_bytes(built.index),
            "post_ids.npy": _npy(data.posts.post_id[pool]),
            "user_ids.npy": _npy(data.users.user_id[active]),
            "user_vectors.npy": _npy(users),
            "meta.json": json.dumps(meta, indent=2).encode(),
        },
    )
    log.info("published retrieval index ds=%s: %s", ds, meta)
    return meta


@dataclasses.dataclass(frozen=True)
class PublishedIndex:
    """A day's published retrieval artifacts, as the feed precompute reads them."""

    index: Any  # faiss.Index over post vectors
    post_ids: np.ndarray  # (posts,) int64: the post of each index row
    user_ids: np.ndarray  # (users,) int64
    user_vectors: np.ndarray  # (users, dim) float32
    meta: dict[str, Any]


def load_published(artifacts: ArtifactStore, ds: str | None = None) -> PublishedIndex:
    """The index of ds, or the latest one (None); a clear error when there is none."""
    day = ds or artifacts.latest(RETRIEVAL_INDEX)
    if day is None:
        raise RuntimeError(f"no {RETRIEVAL_INDEX.name} is published yet")

    def npy(name: str) -> np.ndarray:
        return np.load(io.BytesIO(artifacts.read(RETRIEVAL_INDEX, day, name)), allow_pickle=False)

    return PublishedIndex(
        ix.from_bytes(artifacts.read(RETRIEVAL_INDEX, day, "index.faiss")),
        npy("post_ids.npy"),
        npy("user_ids.npy"),
        npy("user_vectors.npy"),
        json.loads(artifacts.read(RETRIEVAL_INDEX, day, "meta.json")),
    )


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
