"""Score every candidate with the champion ranker and re-rank each user's list, in Spark.

    scored = score_candidates(features, ranker_file)      # p_<action>, e_dwell_s, value
    feeds = rerank_feeds(scored, settings.rerank, size)   # score, rank per user

The ranker's folder is shipped to the workers (the job does it: jobs.spark.shipped_folder) and
loaded once per Python worker, on its fastest exact path (a GBDT compiled, a DNN's exported
graph on onnxruntime: models.ranking.load.load_ranker_folder's `serving`); batches of
candidate rows arrive as Arrow record batches (`mapInArrow`) and become model inputs by the
training set's own `feature_frame`, so the feature rows never sit on the driver or on disk.
The re-ranker
(models.feed.rerank) runs on Arrow batches of whole users (`mapInArrow`), every user of a batch
at once.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from features import registry as R
from models.feed.config import RerankSettings
from models.feed.rerank import IN_NETWORK, rerank_table
from models.ranking.base import VALUE_SCORE, RankerLike, prediction_column
from models.ranking.dataset import FEATURES, TOPIC_RECENCY, feature_frame
from models.ranking.load import load_ranker_folder
from warehouse.catalog import ACTIONS, C
from warehouse.layout import Folder

# What scoring keeps of each candidate besides the predictions: keys and the re-ranker's inputs.
KEPT = (C.USER_ID, C.POST_ID, C.AUTHOR_ID, C.MEDIA_TYPE, R.POST_AGE_H, R.UA_FOLLOWS)
PREDICTIONS = (*(prediction_column(a) for a in ACTIONS), C.E_DWELL_S, C.VALUE)
# Feature columns the frame is built from: the model's features and the lists they come from.
_INPUTS = (*(f for f in R.feature_columns() if f != C.HASHTAGS),)
assert set(FEATURES) - {TOPIC_RECENCY} <= set(_INPUTS)  # topic_recency: from user_last_topics


def scored_schema(features: DataFrame) -> T.StructType:
    kept = [features.schema[c] for c in KEPT]
    return T.StructType([*kept, *(T.StructField(c, T.DoubleType(), False) for c in PREDICTIONS)])


@functools.lru_cache(maxsize=2)
def _ranker(path: str) -> RankerLike:
    ranker = load_ranker_folder(Folder(Path(path)), serving=True)  # a DNN through ONNX
    # The worker's objects so far (the model, the imports) are never garbage: a full
    # collection walking them made 1% of 500-row GBDT batches 2-3x slower (bench_inference).
    gc.collect()
    gc.freeze()
    return ranker


def _score_batches(path_of: Callable[[], str]) -> Callable:
    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ranker = _ranker(path_of())
        for batch in batches:
            # The training set's conversion exactly: Arrow rows -> feature_frame (built here
            # once; a GBDT's predict only re-types a built frame, which keeps its columns).
            table = pa.Table.from_batches([batch])
            pred = ranker.predict(feature_frame(table))
            out = {c: table.column(c) for c in KEPT}
            for a in ACTIONS:
                out[prediction_column(a)] = pred[prediction_column(a)].to_numpy()
            out[C.E_DWELL_S] = pred[C.E_DWELL_S].to_numpy()
            out[C.VALUE] = pred[VALUE_SCORE].to_numpy()
            yield from pa.Table.from_pydict(out).to_batches()

    return score


def score_candidates(features: DataFrame, ranker_file: str) -> DataFrame:
    """The ranker's calibrated probabilities, E[dwell | click] and value per candidate row.

    `ranker_file`: the name a saved ranker folder was shipped under (SparkFiles.get)."""
    from pyspark import SparkFiles

    missing = [c for c in (*KEPT, *_INPUTS) if c not in features.columns]
    if missing:
        raise KeyError(f"candidate features lack columns {missing}")
    rows = features.select(*dict.fromkeys((*KEPT, *_INPUTS)))
    return rows.mapInArrow(
        _score_batches(lambda: SparkFiles.get(ranker_file)), scored_schema(features)
    )


def rerank_feeds(
    scored: DataFrame, sources: DataFrame, settings: RerankSettings, size: int
) -> DataFrame:
    """Each user's scored candidates (with their `sources`) through models.feed.rerank: the
    `size` best in feed order, with the adjusted score and rank 1..n.

    The rows are partitioned by user and sorted by user within a partition (one shuffle and
    a sort in the JVM), so an Arrow batch holds whole users except its last, whose rows are
    carried into the next batch; `rerank_table` re-ranks every user of a batch at once."""
    rows = scored.join(sources, [C.USER_ID, C.POST_ID]).withColumn(
        IN_NETWORK, F.coalesce(F.col(R.UA_FOLLOWS).cast("boolean"), F.lit(False))
    )
    schema = T.StructType(
        [
            *rows.schema.fields,
            T.StructField(C.SCORE, T.DoubleType(), False),
            T.StructField(C.RANK, T.IntegerType(), False),
        ]
    )
    grouped = rows.repartition(C.USER_ID).sortWithinPartitions(C.USER_ID)
    return grouped.mapInArrow(_rerank_batches(settings, size), schema)


def _rerank_batches(settings: RerankSettings, size: int) -> Callable:
    def rerank_users(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for table in whole_users(batches, C.USER_ID):
            yield from rerank_table(table, settings, size).to_batches()

    return rerank_users


def whole_users(batches: Iterator[pa.RecordBatch], key: str) -> Iterator[pa.Table]:
    """Tables of whole users from record batches sorted by `key`: each batch's last user is
    held back and joined to the next batch's rows (a user may span several batches)."""
    carry: pa.Table | None = None
    for batch in batches:
        table = pa.Table.from_batches([batch])
        if carry is not None:
            table = pa.concat_tables([carry, table])
        if table.num_rows == 0:
            carry = table
            continue
        users = table.column(key)
        last = users[table.num_rows - 1]
        # Sorted by key: the last user's rows are the tail of the batch.
        tail = table.num_rows - int(pc.sum(pc.equal(users, last)).as_py())
        if tail:
            yield table.slice(0, tail)
        carry = table.slice(tail)
    if carry is not None and carry.num_rows:
        yield carry
