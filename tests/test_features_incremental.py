"""Features built day by day from persisted tiles equal the build from raw history.

The random log (tests/test_features_data.py) is cut into days by served_at. Each day's tiles
come from that day's partitions only (its impressions, their engagements, whose event_ts may
pass midnight, and the posts they reference) and are written as Parquet partitioned by ds. The
last day's features read each tile's partitions over its lookback only and must equal the
shared point_in_time_features call on the whole log.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import MapType, StructType
from test_features_data import GRAPH_CUTOFF, featurized, random_log

from features.config import FeatureSettings
from features.tiles import TILES, build_tiles, features_from_tiles, lookback_days, merge_tile
from warehouse.catalog import C

pytestmark = pytest.mark.spark

LAST_DAY = date(2026, 3, 10)  # the random log's impressions span 2026-03-01 .. 03-10
_PARTITIONED = ("impressions", "engagements")


@pytest.fixture(scope="module")
def log() -> dict[str, pd.DataFrame]:
    """The random log; impressions and engagements carry ds (the impression's day), as the
    raw tables' partitions do."""
    log = random_log()
    imps = log["impressions"].assign(**{C.DS: log["impressions"][C.SERVED_AT].dt.date})
    log["engagements"] = log["engagements"].merge(imps[[C.IMPRESSION_ID, C.DS]], on=C.IMPRESSION_ID)
    log["impressions"] = imps
    return log


@pytest.fixture(scope="module")
def frames(spark, log) -> dict[str, DataFrame]:
    return {k: spark.createDataFrame(v) for k, v in log.items()}


@pytest.fixture(scope="module")
def tile_root(log, frames, tmp_path_factory) -> Path:
    """Each day's tiles from that day's partitions only, written as Parquet by ds (one table
    per tile)."""
    served = log["impressions"].groupby(C.DS)[C.POST_ID].unique()
    assert served.index.max() == LAST_DAY and len(served) == 10
    per_day = {}
    for ds, post_ids in served.items():
        imps, eng = (frames[k].where(F.col(C.DS) == ds).drop(C.DS) for k in _PARTITIONED)
        posts = frames["posts"].where(F.col(C.POST_ID).isin(post_ids.tolist()))
        per_day[ds] = build_tiles(imps, eng, posts)
    root = tmp_path_factory.mktemp("tiles")
    for name in TILES:
        parts = [t[name].withColumn(C.DS, F.lit(ds)) for ds, t in per_day.items()]
        union = functools.reduce(DataFrame.unionByName, parts)
        union.write.partitionBy(C.DS).parquet(str(root / name))
    return root


def _first_day(name: str) -> date:
    return LAST_DAY - timedelta(days=lookback_days(name))


def test_features_from_tiles_equal_the_raw_build(spark, frames, tile_root):
    # each tile: its partitions ds - lookback .. ds, as the daily job reads them; the post
    # tiles (8 days) leave the first day out
    tiles = {
        name: spark.read.parquet(str(tile_root / name))
        .where(F.col(C.DS) >= F.lit(_first_day(name)))
        .drop(C.DS)
        for name in TILES
    }
    assert _first_day("post_hourly") > date(2026, 3, 1)
    targets = frames["impressions"].where(F.col(C.DS) == F.lit(LAST_DAY)).drop(C.DS)
    got = features_from_tiles(
        targets,
        tiles,
        frames["posts"],
        frames["follows"],
        frames["users"],
        frames["authors"],
        graph_cutoff=GRAPH_CUTOFF,
        **{**FeatureSettings().model_dump(), "pagerank_iterations": 2},  # as in the raw build
    )
    got = got.toPandas().sort_values(C.IMPRESSION_ID).reset_index(drop=True)
    raw = featurized(spark)
    raw = raw[raw[C.IMPRESSION_ID].isin(got[C.IMPRESSION_ID])].reset_index(drop=True)
    assert list(got.columns) == list(raw.columns)
    assert len(got) == len(raw) > 20
    for col in raw.columns:
        a, b = got[col], raw[col]
        if a.map(lambda x: isinstance(x, list | np.ndarray)).any():
            assert [list(x) for x in a] == [list(x) for x in b], col
        elif pd.api.types.is_float_dtype(b) or pd.api.types.is_float_dtype(a):
            np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=1e-9, err_msg=col)
        else:
            assert a.isna().equals(b.isna()) and (a[a.notna()] == b[b.notna()]).all(), col


# Two days whose tiles share a key in every tile: request 1 is served across midnight (items on
# both days), the like on day 1's impression lands at 00:10 on day 2, and day 2 serves and
# clicks the same post (author 100, topic 1, tags a b) to the same user in that hour.
MIDNIGHT = datetime(2026, 3, 2)
IMPS = [  # impression, request, user, post, author, served_at
    (1, 1, 7, 10, 100, MIDNIGHT - timedelta(seconds=1)),
    (2, 1, 7, 11, 100, MIDNIGHT),
    (3, 2, 7, 10, 100, MIDNIGHT + timedelta(minutes=30)),
]
ENG = [  # impression, user, post, action, event_ts
    (1, 7, 10, "like", MIDNIGHT + timedelta(minutes=10)),
    (3, 7, 10, "click", MIDNIGHT + timedelta(minutes=40)),
]
_IMP_COLS = [C.IMPRESSION_ID, C.REQUEST_ID, C.USER_ID, C.POST_ID, C.AUTHOR_ID, C.SERVED_AT]
_ENG_COLS = [C.IMPRESSION_ID, C.USER_ID, C.POST_ID, C.ACTION, C.EVENT_TS]
_POST_COLS = [C.POST_ID, C.AUTHOR_ID, C.CREATED_AT, C.TOPIC, C.HASHTAGS]
POSTS = [(10, 100, MIDNIGHT - timedelta(days=1), 1, ["a", "b"]), (11, 100, MIDNIGHT, 2, ["a"])]


def _rows(df: DataFrame, keys) -> list[dict]:
    return [r.asDict() for r in df.orderBy(*keys).collect()]


def test_tiles_are_additive(spark):
    imps = spark.createDataFrame(IMPS, _IMP_COLS)
    eng = spark.createDataFrame(ENG, _ENG_COLS)
    posts = spark.createDataFrame(POSTS, _POST_COLS)
    day2 = F.col(C.SERVED_AT) >= F.lit(MIDNIGHT)
    days = [imps.where(~day2), imps.where(day2)]
    per_day = [
        build_tiles(d, eng.join(d.select(C.IMPRESSION_ID), C.IMPRESSION_ID, "left_semi"), posts)
        for d in days
    ]
    at_once = build_tiles(imps, eng, posts)
    for name, spec in TILES.items():
        union = per_day[0][name].unionByName(per_day[1][name])
        # one job per tile: the day tiles (d), their merge (m) and the tiles built at once (b)
        tagged = [
            df.withColumn("src", F.lit(tag))
            for tag, df in (("d", union), ("m", merge_tile(name, union)), ("b", at_once[name]))
        ]
        rows = _rows(functools.reduce(DataFrame.unionByName, tagged), [*spec.keys, "src"])
        got = {tag: [r for r in rows if r["src"] == tag] for tag in "dmb"}
        # the same key in both days' tiles, so the merge really adds (or takes min / max)
        assert len(got["d"]) > len(got["m"]) == len(got["b"]), name
        for m, b in zip(got["m"], got["b"], strict=True):
            del m["src"], b["src"]
            floats = [c for c, v in b.items() if isinstance(v, float)]  # decay moments
            assert {c: m[c] for c in floats} == pytest.approx({c: b[c] for c in floats}), name
            assert {c: v for c, v in m.items() if c not in floats} == {
                c: v for c, v in b.items() if c not in floats
            }, name


def test_tile_columns_are_plain_parquet_types(spark):
    imps = spark.createDataFrame(IMPS, _IMP_COLS)
    eng = spark.createDataFrame(ENG, _ENG_COLS)
    posts = spark.createDataFrame(POSTS, _POST_COLS)
    for name, tile in build_tiles(imps, eng, posts).items():
        assert set(TILES[name].keys) <= set(tile.columns), name
        for field in tile.schema.fields:
            assert not isinstance(field.dataType, MapType | StructType), (name, field)
