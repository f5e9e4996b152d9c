"""The FAISS index: exact below the size threshold, approximate above, recall checked at build;
searched in the Spark workers from the shipped files as on the driver."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from models.evaluation.metrics import recall_at_k
from models.retrieval.config import IndexSettings
from models.retrieval.index import IndexRecallError, build_index, exact_top, from_bytes, to_bytes
from models.retrieval.published import search_in_workers, write_search_files
from warehouse.artifacts import RETRIEVAL_INDEX, ArtifactStore
from warehouse.catalog import C
from warehouse.layout import Folder


def _clustered(n: int, dim: int = 16, centres: int = 20, seed: int = 0) -> np.ndarray:
    """Unit vectors around a few centres, as trained embeddings are (topics)."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim))
    x = c[rng.integers(0, centres, n)] + 0.5 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


VECS = _clustered(3000)
QUERIES = _clustered(50, seed=1)


def test_small_pool_is_exact_and_finds_the_known_neighbours():
    built = build_index(VECS, QUERIES, 10, IndexSettings(flat_max=5000))
    assert built.kind == "flat"
    assert built.recall == 1.0
    # brute force by hand: argsort of the dot products
    truth = np.argsort(-(QUERIES @ VECS.T), axis=1)[:, :10]
    assert recall_at_k(built.search(QUERIES, 10)[1], truth) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_large_pool_is_approximate_with_recall_measured_against_exact(kind):
    cfg = IndexSettings(flat_max=1000, kind=kind, nprobe=16, ef_search=100)
    built = build_index(VECS, QUERIES, 50, cfg)
    assert built.kind == kind
    again = recall_at_k(built.search(QUERIES, 50)[1], exact_top(VECS, QUERIES, 50))
    assert built.recall == pytest.approx(again)
    assert built.recall >= 0.95


def test_hnsw_beam_is_raised_to_k():
    # efSearch 8 < k = 200: a beam that narrow would return far fewer than the true 200
    cfg = IndexSettings(flat_max=1000, kind="hnsw", ef_search=8)
    assert build_index(VECS, QUERIES, 200, cfg).index.hnsw.efSearch == 200


def test_build_under_the_recall_floor_fails_naming_the_setting():
    cfg = IndexSettings(flat_max=1000, kind="ivf", nlist=64, nprobe=1, min_recall=0.99)
    with pytest.raises(IndexRecallError, match="min_recall"):
        build_index(VECS, QUERIES, 100, cfg)


def test_empty_pool_and_no_queries_are_clear_errors():
    with pytest.raises(ValueError, match="no posts"):
        build_index(VECS[:0], QUERIES, 10, IndexSettings())
    with pytest.raises(ValueError, match="no user queries"):
        build_index(VECS, QUERIES[:0], 10, IndexSettings())


def test_serialised_index_answers_the_same():
    built = build_index(VECS, QUERIES, 10, IndexSettings(flat_max=1000, kind="hnsw"))
    again = from_bytes(to_bytes(built.index))
    assert np.array_equal(again.search(QUERIES, 10)[1], built.search(QUERIES, 10)[1])


# --- the search in the Spark workers ----------------------------------------------------------


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


@pytest.mark.spark
@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_workers_search_the_shipped_index_as_the_driver_does(spark, tmp_path, kind):
    # 50 users (ids 1000, 1003, ...) over 3,000 posts (ids 7, 14, ...); the workers are asked
    # for 30 of them and 2 ids the index never embedded, which get no neighbours.
    cfg = IndexSettings(
        flat_max=5000 if kind == "flat" else 1000, kind="hnsw", ef_search=8, min_recall=0.5
    )
    built = build_index(VECS, QUERIES, 20, cfg)
    assert built.kind == kind
    user_ids, post_ids = 1000 + 3 * np.arange(len(QUERIES)), 7 * np.arange(1, len(VECS) + 1)
    store = ArtifactStore(tmp_path / "artifacts")
    files = {"post_ids.npy": post_ids, "user_ids.npy": user_ids, "user_vectors.npy": QUERIES}
    files = {name: _npy(a) for name, a in files.items()}
    files |= {"index.faiss": to_bytes(built.index), "meta.json": b"{}"}
    store.publish(RETRIEVAL_INDEX, "2026-01-05", files)
    folder = write_search_files(store, "2026-01-05", Folder(tmp_path / f"ship-{kind}"))
    spark.sparkContext.addFile(str(folder), recursive=True)
    asked = [*user_ids[::5], *user_ids[1::5], *user_ids[2::5], 1, 2]  # 30 known, 2 unknown
    users = spark.createDataFrame(pd.DataFrame({C.USER_ID: asked})).repartition(3)
    # ef_search 8 < k: the workers raise HNSW's beam to k, as the build's recall check did.
    got = search_in_workers(users, folder.path.name, 20, ef_search=8).toPandas()
    assert len(got) == 30 * 20 and not got[C.USER_ID].isin([1, 2]).any()
    rows = np.searchsorted(user_ids, np.array(asked[:30]))
    sims, found = built.search(QUERIES[rows], 20)
    expected = pd.DataFrame(
        {
            C.USER_ID: np.repeat(asked[:30], 20),
            C.POST_ID: post_ids[found.ravel()],
            C.SIMILARITY: sims.ravel().astype(np.float64),
        }
    )
    keys = [C.USER_ID, C.POST_ID]
    both = expected.merge(got, on=keys, how="outer", suffixes=("", "_spark"), indicator=True)
    assert (both["_merge"] == "both").all()
    np.testing.assert_allclose(both[f"{C.SIMILARITY}_spark"], both[C.SIMILARITY], rtol=1e-5)
