"""The FAISS index over post vectors, chosen by pool size, with its recall checked at build.

Below `flat_max` posts an exact `IndexFlatIP` serves (exact is cheap there and has recall 1);
above it an approximate index: HNSW (graph; `efSearch` is raised to k, since a beam narrower
than k cannot return k good neighbours) or IVF (k-means lists; `nprobe` lists visited, the
more clustered the vectors, the fewer needed). At build the index answers a sample of real
user queries and its top-k is compared with exact search (models.evaluation.metrics.recall_at_k); a
recall below the floor raises, so the caller publishes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import faiss
import numpy as np

from models.evaluation.metrics import recall_at_k
from models.retrieval.config import IndexSettings

log = logging.getLogger(__name__)


class IndexRecallError(RuntimeError):
    """An index whose recall against exact search is below the floor."""


@dataclasses.dataclass(frozen=True)
class BuiltIndex:
    index: faiss.Index
    kind: str  # flat | ivf | hnsw
    recall: float  # recall@k against exact search on the sample queries
    k: int
    build_s: float

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) each (n_queries, k); rows -1 past the pool's end."""
        return self.index.search(_f32(queries), min(k, self.index.ntotal))


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def make_index(vectors: np.ndarray, cfg: IndexSettings, kind: str | None = None) -> faiss.Index:
    """An index of the kind the size calls for (or `kind`), trained and filled."""
    vectors = _f32(vectors)
    n, dim = vectors.shape
    kind = kind or ("flat" if n <= cfg.flat_max else cfg.kind)
    faiss.omp_set_num_threads(cfg.threads)
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.ef_construction
        index.hnsw.efSearch = cfg.ef_search
    elif kind == "ivf":
        nlist = cfg.nlist or max(1, int(4 * math.sqrt(n)))
        nlist = min(nlist, max(1, n // 39))  # faiss wants >= 39 training points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234  # k-means initialisation: the same vectors give the same lists
        index.train(vectors)
        index.nprobe = min(cfg.nprobe, nlist)
    else:
        raise ValueError(f"retrieval.index.kind must be flat, ivf or hnsw, got {kind!r}")
    index.add(vectors)
    return index


def kind_of(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    return "flat"


def set_search_width(index: faiss.Index, k: int, cfg: IndexSettings) -> None:
    """HNSW's beam must be at least k (a narrower one returns fewer good neighbours)."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = max(cfg.ef_search, k)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(n_queries, k) rows of the exact top-k by inner product."""
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(_f32(vectors))
    return flat.search(_f32(queries), min(k, len(vectors)))[1]


def measure_recall(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int) -> float:
    """recall@k of the index against exact search on the queries."""
    k = min(k, index.ntotal)
    exact = exact_top(vectors, queries, k)
    return recall_at_k(index.search(_f32(queries), k)[1], exact)


def build_index(
    vectors: np.ndarray, queries: np.ndarray, k: int, cfg: IndexSettings, kind: str | None = None
) -> BuiltIndex:
    """Build the pool's index and check its recall@k against exact on the queries.

    Raises IndexRecallError below `cfg.min_recall` and ValueError on an empty pool or no
    queries, naming the parameter.
    """
    if len(vectors) == 0:
        raise ValueError("retrieval index: the pool has no posts")
    if len(queries) == 0:
        raise ValueError("retrieval index: no user queries to measure recall with")
    started = time.perf_counter()
    index = make_index(vectors, cfg, kind)
    build_s = time.perf_counter() - started
    set_search_width(index, k, cfg)
    recall = measure_recall(index, vectors, queries, k)
    built = BuiltIndex(index, kind_of(index), recall, min(k, index.ntotal), build_s)
    log.info(
        "%s index over %d posts: recall@%d %.4f against exact on %d queries (built in %.1fs)",
        built.kind,
        index.ntotal,
        built.k,
        recall,
        len(queries),
        build_s,
    )
    if recall < cfg.min_recall:
        raise IndexRecallError(
            f"{built.kind} index recall@{built.k} {recall:.4f} against exact search is below "
            f"retrieval.index.min_recall {cfg.min_recall}; nothing is published "
            "(raise nprobe / ef_search, or flat_max)"
        )
    return built


def to_bytes(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def from_bytes(data: bytes) -> faiss.Index:
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
