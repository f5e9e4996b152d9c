"""The day's retrieval index: the champion's vectors of the servable pool, published as one
version of warehouse.artifacts.RETRIEVAL_INDEX, and read back by the feed precompute.

    meta = publish_index(store, artifacts, data, model, version, ds, settings.retrieval)
    pub = load_published(artifacts)          # the latest day's, or load_published(artifacts, ds)
    found = search_in_workers(users, name, k, ef_search)    # in Spark, the files shipped

The pool is every post servable at the end of ds (created within the pool window); the users
are those active that day (an engagement or an impression), embedded as of the end of the day.
Their FAISS index (models.retrieval.index, recall against exact checked on a seeded sample of those
users), the post-id map and the user vectors are published atomically: a build below the
recall floor raises and publishes nothing. The feed precompute ships those files to its Spark
workers (`write_search_files`, then jobs.spark.shipped_folder), and each worker loads the index once
and searches its batches of users (`search_in_workers`): the driver holds no vectors.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from models.retrieval import index as ix
from models.retrieval.config import RetrievalSettings
from models.retrieval.stage import DAY_S, Data, encoder
from models.retrieval.two_tower import TwoTower, embed_posts, embed_users
from warehouse.artifacts import RETRIEVAL_INDEX, ArtifactStore
from warehouse.catalog import IMPRESSIONS, C
from warehouse.layout import Folder

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


# --- the search in the Spark workers ----------------------------------------------------------

SEARCH_FILES = ("index.faiss", "post_ids.npy", "user_ids.npy", "user_vectors.npy")


def write_search_files(artifacts: ArtifactStore, ds: str, folder: Folder) -> Folder:
    """Copy ds's index, id maps and user vectors into `folder` (to ship to the workers:
    jobs.spark.shipped_folder); the folder."""
    for name in SEARCH_FILES:
        folder.writable(name).write_bytes(artifacts.read(RETRIEVAL_INDEX, ds, name))
    return folder


@dataclasses.dataclass(frozen=True)
class _Searcher:
    """What a worker loads once per shipped folder: the index, and the user vectors mapped
    from disk (only the rows of the users it searches are read)."""

    index: Any
    post_ids: np.ndarray
    user_rows: pd.Index  # user id -> row of user_vectors
    user_vectors: np.ndarray  # (users, dim) float32, memory-mapped

    @classmethod
    @functools.lru_cache(maxsize=2)
    def load(cls, path: str, k: int, ef_search: int) -> _Searcher:
        import faiss

        folder = Folder(Path(path))
        index = faiss.read_index(str(folder.file("index.faiss")))
        if isinstance(index, faiss.IndexHNSW):  # a beam narrower than k misses neighbours
            index.hnsw.efSearch = max(ef_search, k)
        users = np.load(folder.file("user_ids.npy"), allow_pickle=False)
        return cls(
            index,
            np.load(folder.file("post_ids.npy"), allow_pickle=False),
            pd.Index(users),
            np.load(folder.file("user_vectors.npy"), mmap_mode="r", allow_pickle=False),
        )

    def neighbours(self, user_ids: np.ndarray, k: int) -> pa.Table:
        """(user_id, post_id, similarity) of the k nearest posts of the users it embedded."""
        rows = self.user_rows.get_indexer(user_ids)
        known = rows >= 0
        users, rows = user_ids[known], rows[known]
        k = min(k, self.index.ntotal)
        queries = np.ascontiguousarray(self.user_vectors[rows], dtype=np.float32)
        if len(rows):
            sims, found = self.index.search(queries, k)  # (users, k) each; -1: no more posts
        else:
            sims, found = np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        hit = found >= 0
        return pa.table(
            {
                C.USER_ID: pa.array(np.repeat(users, k)[hit.ravel()], pa.int64()),
                C.POST_ID: pa.array(self.post_ids[found[hit]], pa.int64()),
                C.SIMILARITY: pa.array(sims[hit].astype(np.float64)),
            }
        )


def search_in_workers(users: DataFrame, shipped: str, k: int, ef_search: int) -> DataFrame:
    """(user_id, post_id, similarity): the k nearest posts of each of `users` (a user_id
    column) the shipped index embedded, searched in the Spark workers by Arrow batch of users.

    `shipped`: the name a `write_search_files` folder was shipped under (SparkFiles.get);
    `ef_search`: HNSW's beam (raised to k)."""

    def search(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import SparkFiles

        searcher = _Searcher.load(SparkFiles.get(shipped), k, ef_search)
        for batch in batches:
            user_ids = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
            yield from searcher.neighbours(user_ids, k).to_batches()

    schema = f"{C.USER_ID} long, {C.POST_ID} long, {C.SIMILARITY} double"
    return users.select(F.col(C.USER_ID).cast("long")).mapInArrow(search, schema)
