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

from models.feed.scoring import KEPT, PREDICTIONS, score_candidates
from models.ranking.base import DNN, ENSEMBLE, GBDT, KINDS, VALUE_SCORE, RankerLike
from models.ranking.config import GbdtSettings, TrainingSettings
from models.ranking.dataset import feature_frame, load_examples
from models.ranking.dnn.train import fit_dnn
from models.ranking.ensemble import fit_ensemble
from models.ranking.gbdt import fit_ranker
from models.ranking.load import load_ranker_folder, member_kinds
from warehouse.catalog import TRAINING_EXAMPLES, C
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


@pytest.mark.parametrize("kind", KINDS)
def test_workers_score_each_kind_like_the_driver(spark, rankers, candidates, kind, tmp_path):
    ranker = rankers[kind]
    name = shipped(spark, ranker, Folder(tmp_path / f"feed-scoring-{kind}"))
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
