"""models.feed.scoring.score_candidates with a ranker of each kind (gbdt, dnn, an ensemble of
both) trained on the benchmarks' synthetic examples and shipped to the Spark workers as
jobs.precompute_feeds ships its champion: a worker's scores are the driver's, row for row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from benchmarks.inference_data import example_table, requests
from small_dnn import DNN as SMALL_DNN

from features import registry as R
from models.feed.config import RerankSettings
from models.feed.rerank import IN_NETWORK, rerank_table
from models.feed.scoring import KEPT, PREDICTIONS, rerank_feeds, score_candidates, whole_users
from models.ranking.base import (
    DNN,
    ENSEMBLE,
    GBDT,
    KINDS,
    VALUE_SCORE,
    RankerLike,
    prediction_column,
)
from models.ranking.compiled import compile_saved
from models.ranking.config import GbdtSettings, TrainingSettings
from models.ranking.dataset import feature_frame, load_examples
from models.ranking.dnn.train import fit_dnn
from models.ranking.ensemble import fit_ensemble
from models.ranking.gbdt import fit_ranker
from models.ranking.load import load_ranker_folder, member_kinds
from warehouse.catalog import ACTIONS, TRAINING_EXAMPLES, C
from warehouse.layout import Folder
from warehouse.store import Warehouse

pytestmark = pytest.mark.spark

TRAIN, VAL = "2026-01-01", "2026-01-02"
# Small models: what is tested is the scoring path, not what they learn (the rarest action,
# report, has 26 positives on the training day, 5 on the validation day). A negative rate
# below 1 puts the calibration correction in what the workers compute.
SETTINGS = TrainingSettings(
    negative_rate=0.5,
    gbdt=GbdtSettings(
        num_leaves=7, min_child_samples=20, max_rounds=30, early_stopping_rounds=30, num_threads=1
    ),
    dnn=SMALL_DNN.model_copy(update={"epochs": 1}),
)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Warehouse:
    rng = np.random.default_rng(3)
    wh = Warehouse(tmp_path_factory.mktemp("warehouse"))
    for ds, n_requests in ((TRAIN, 120), (VAL, 40)):
        wh.write_arrow(TRAINING_EXAMPLES, ds, example_table(rng, n_requests, 50))
    return wh


@pytest.fixture(scope="module")
def rankers(store, tmp_path_factory) -> dict[str, RankerLike]:
    """One ranker per kind; the ensemble averages the other two, as the nightly job's does."""
    (train, _), (val, _) = (load_examples(store, [ds]) for ds in (TRAIN, VAL))
    gbdt, _ = fit_ranker(train, val, SETTINGS)
    dnn, _ = fit_dnn(store, [TRAIN], [VAL], SETTINGS, Folder(tmp_path_factory.mktemp("dnn")))
    ensemble, _ = fit_ensemble([gbdt, dnn], val, SETTINGS)
    return {GBDT: gbdt, DNN: dnn, ENSEMBLE: ensemble}


@pytest.fixture(scope="module")
def candidates() -> pa.Table:
    """Candidate feature rows of 6 viewers, 50 each: every column score_candidates reads."""
    return pa.concat_tables(requests(np.random.default_rng(5), 6, 50))


def shipped(spark, ranker: RankerLike, folder: Folder) -> str:
    """The ranker saved and added to the workers' files as the job does (shipped_champion)."""
    folder = ranker.save(folder)
    spark.sparkContext.addFile(str(folder), recursive=True)
    return folder.path.name


def test_the_rankers_are_of_every_kind(rankers):
    assert {k: r.kind for k, r in rankers.items()} == {k: k for k in KINDS}
    assert member_kinds(rankers[ENSEMBLE]) == (GBDT, DNN)


@pytest.mark.parametrize("kind", [DNN, ENSEMBLE])
def test_serving_scores_a_dnn_through_its_onnx_graph_as_predict_does(
    rankers, candidates, kind, tmp_path
):
    """Loaded for serving (as the feed scoring's workers load it), a DNN, alone or in the
    ensemble, runs its exported graph on onnxruntime: probabilities within 1e-6 of the eager
    network's, E[dwell] within a relative 1e-5 (float32 through other kernels)."""
    folder = rankers[kind].save(Folder(tmp_path / kind))
    served, plain = load_ranker_folder(folder, serving=True), load_ranker_folder(folder)

    def dnn_of(ranker):
        return ranker if kind == DNN else ranker.members[member_kinds(ranker).index(DNN)]

    assert (dnn_of(served).engine, dnn_of(plain).engine) == ("onnx", "eager")
    X = feature_frame(candidates)
    got, want = served.predict(X), rankers[kind].predict(X)
    for a in ACTIONS:
        column = prediction_column(a)
        np.testing.assert_allclose(got[column], want[column], rtol=0, atol=1e-6, err_msg=column)
    np.testing.assert_allclose(got[C.E_DWELL_S], want[C.E_DWELL_S], rtol=1e-5)
    # The value is a sum of signed terms, near 0 for some rows: within 1e-6 there too.
    np.testing.assert_allclose(got[VALUE_SCORE], want[VALUE_SCORE], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_workers_score_each_kind_like_the_driver(spark, rankers, candidates, kind, tmp_path):
    """Every candidate row scored once, as the same ranker loaded for serving on the driver
    scores it (a DNN on its ONNX graph: the test above holds it to the eager network)."""
    folder = Folder(tmp_path / f"feed-scoring-{kind}")
    name = shipped(spark, rankers[kind], folder)
    ranker = load_ranker_folder(folder, serving=True)
    # Three partitions: several tasks, so a reused Python worker scores from its cached ranker.
    features = spark.createDataFrame(candidates.to_pandas()).repartition(3)
    scored = score_candidates(features, name).toPandas()
    assert list(scored.columns) == [*KEPT, *PREDICTIONS]
    keys = [C.USER_ID, C.POST_ID]
    expected = ranker.predict(feature_frame(candidates)).rename(columns={VALUE_SCORE: C.VALUE})
    expected = pd.concat([candidates.select(keys).to_pandas(), expected], axis=1)
    assert not expected.duplicated(keys).any()  # a key names one row
    both = expected.merge(scored, on=keys, how="outer", suffixes=("", "_spark"), indicator=True)
    assert (both["_merge"] == "both").all() and len(both) == candidates.num_rows
    for col in PREDICTIONS:
        # A net's float32 passes over batches of another size may round the last bit
        # differently on some CPUs; a real difference (a row, a column, the bias) is larger.
        np.testing.assert_allclose(both[f"{col}_spark"], both[col], rtol=1e-6, err_msg=col)
    assert both[C.VALUE].nunique() > candidates.num_rows // 2  # scores that tell rows apart


def test_a_worker_s_torch_uses_the_task_s_cores(spark, rankers, tmp_path):
    """Nothing in the DNN bounds torch's threads when scoring: Spark does, setting
    OMP_NUM_THREADS to spark.task.cpus in its Python workers unless spark.executorEnv sets it
    (SPARK-42613), which torch reads at import. Its default, every core in each worker,
    would oversubscribe the executor."""
    name = shipped(spark, rankers[DNN], Folder(tmp_path / "feed-scoring-threads"))

    def threads(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import torch
        from pyspark import SparkFiles, TaskContext

        assert load_ranker_folder(Folder(Path(SparkFiles.get(name)))).kind == DNN
        for _ in batches:
            cpus = TaskContext.get().cpus()
            yield pd.DataFrame({"torch": [torch.get_num_threads()], "cpus": [cpus]})

    seen = spark.range(0, 2, 1, 2).mapInPandas(threads, "torch int, cpus int").toPandas()
    assert len(seen) == 2 and (seen["torch"] == seen["cpus"]).all()


# --- re-ranking in the workers -----------------------------------------------------------------


def test_whole_users_carries_a_user_split_over_batches():
    # Users 1 (3 rows) 2 (4 rows, over three batches) 3 (1 row); an empty batch in between.
    users = [1, 1, 1, 2, 2, 2, 2, 3]
    table = pa.table({C.USER_ID: users, "row": range(8)})
    batches = [*table.slice(0, 4).to_batches(), *table.slice(4, 0).to_batches()]
    batches += [*table.slice(4, 1).to_batches(), *table.slice(5, 3).to_batches()]
    got = [t.column(C.USER_ID).to_pylist() for t in whole_users(iter(batches), C.USER_ID)]
    assert got == [[1, 1, 1], [2, 2, 2, 2], [3]]


def scored_rows(seed: int, users: int, per_user: int) -> pd.DataFrame:
    """Scored candidates of `users` users (KEPT and PREDICTIONS columns), few authors (repeats)
    and rounded values (ties), some not followed and some with no follow feature."""
    rng = np.random.default_rng(seed)
    n = users * per_user
    frame = pd.DataFrame(
        {
            C.USER_ID: np.repeat(np.arange(users, dtype=np.int64) * 7, per_user),
            C.POST_ID: rng.permutation(10 * n)[:n].astype(np.int64),
            C.AUTHOR_ID: rng.integers(0, 5, n).astype(np.int64),
            C.MEDIA_TYPE: rng.choice(["text", "link", "photo", "video"], n),
            R.POST_AGE_H: rng.choice([0.0, 6.0, 30.0], n),
            R.UA_FOLLOWS: rng.choice([0.0, 1.0, np.nan], n),
        }
    )
    for col in PREDICTIONS:
        frame[col] = np.round(rng.normal(0.3, 1.0, n), 1)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_rerank_feeds_in_the_workers_equals_rerank_table_on_the_driver(spark):
    frame = scored_rows(8, users=40, per_user=25)
    sources = frame[[C.USER_ID, C.POST_ID]].assign(
        **{C.SOURCES: [["network"] if i % 3 else ["interest"] for i in range(len(frame))]}
    )
    settings, size = RerankSettings(), 12
    conf = {
        "spark.sql.execution.arrow.maxRecordsPerBatch": "30",
        "spark.sql.shuffle.partitions": "3",
    }
    before = {k: spark.conf.get(k) for k in conf}
    try:  # small batches and several partitions: users split over batches, several tasks
        for k, v in conf.items():
            spark.conf.set(k, v)
        scored = spark.createDataFrame(frame).repartition(4)
        feeds = rerank_feeds(scored, spark.createDataFrame(sources), settings, size).toPandas()
    finally:
        for k, v in before.items():
            spark.conf.set(k, v)
    rows = frame.merge(sources, on=[C.USER_ID, C.POST_ID])
    rows[IN_NETWORK] = rows[R.UA_FOLLOWS].fillna(0).astype(bool)
    expected = rerank_table(pa.Table.from_pandas(rows, preserve_index=False), settings, size)
    expected = expected.to_pandas()
    assert len(feeds) == 40 * size
    feeds = feeds.sort_values([C.USER_ID, C.RANK]).reset_index(drop=True)
    assert feeds[C.RANK].tolist() == list(range(1, size + 1)) * 40
    for col in (C.USER_ID, C.POST_ID, C.RANK, C.SCORE, C.VALUE, IN_NETWORK):
        assert feeds[col].tolist() == expected[col].tolist(), col
    assert feeds[C.SOURCES].map(list).tolist() == expected[C.SOURCES].map(list).tolist()


def test_workers_score_through_the_compiled_gbdt_without_compiling(
    spark, rankers, candidates, tmp_path
):
    """The champion's GBDT compiled once (as at registration) and shipped: each cold worker
    loads the object files (lleaves' compiler refused there) and scores as `predict`."""
    folder = rankers[GBDT].save(Folder(tmp_path / "feed-scoring-compiled"))
    assert compile_saved(folder) == 1
    spark.sparkContext.addFile(str(folder), recursive=True)
    name = folder.path.name

    def probe(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import lleaves.compiler
        from pyspark import SparkFiles

        def refuse(*args, **kwargs):
            raise AssertionError("a worker compiled")

        saved, lleaves.compiler.compile_to_module = lleaves.compiler.compile_to_module, refuse
        try:
            ranker = load_ranker_folder(Folder(Path(SparkFiles.get(name))))
        finally:
            lleaves.compiler.compile_to_module = saved
        for _ in batches:
            yield pd.DataFrame({"ranker": [type(ranker).__name__]})

    seen = spark.range(0, 2, 1, 2).mapInPandas(probe, "ranker string").toPandas()
    assert seen["ranker"].tolist() == ["CompiledRanker"] * 2
    features = spark.createDataFrame(candidates.to_pandas()).repartition(3)
    scored = score_candidates(features, name).toPandas()
    expected = (
        rankers[GBDT].predict(feature_frame(candidates)).rename(columns={VALUE_SCORE: C.VALUE})
    )
    expected = pd.concat([candidates.select([C.USER_ID, C.POST_ID]).to_pandas(), expected], axis=1)
    both = expected.merge(scored, on=[C.USER_ID, C.POST_ID], suffixes=("", "_spark"))
    assert len(both) == candidates.num_rows
    assert both[C.VALUE].nunique() > candidates.num_rows // 2  # scores that tell rows apart
    for col in PREDICTIONS:
        assert (both[f"{col}_spark"] - both[col]).abs().max() <= 1e-6, col
