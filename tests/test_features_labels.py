"""features.labels: attribution window, dwell on clicks, the seeded sampling draw."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from features.labels import attach_labels, label_columns
from warehouse.catalog import C, label_column

pytestmark = pytest.mark.spark

T0 = dt.datetime(2026, 1, 5, 10, tzinfo=dt.UTC)


def _frames(spark):
    features = spark.createDataFrame(
        [(i, T0 + dt.timedelta(minutes=i), float(i)) for i in range(1, 5)],
        [C.IMPRESSION_ID, C.SERVED_AT, "some_feature"],
    )
    impressions = spark.createDataFrame(
        [(i, i - 1, "network") for i in range(1, 5)], [C.IMPRESSION_ID, C.POSITION, C.SOURCE]
    )
    s = dt.timedelta(seconds=1)
    engagements = spark.createDataFrame(
        [
            (1, "click", T0 + dt.timedelta(minutes=1) + 30 * s, 42.0),  # in the window
            (1, "like", T0 + dt.timedelta(minutes=1) + 600 * s, None),  # on its edge: in
            (2, "click", T0 + dt.timedelta(minutes=2) + 601 * s, 9.0),  # too late: out
            (2, "hide", T0 + dt.timedelta(minutes=2) + 5 * s, None),
            (3, "report", T0 + dt.timedelta(minutes=3) + 1 * s, None),
        ],
        [C.IMPRESSION_ID, C.ACTION, C.EVENT_TS, C.DWELL_S],
    )
    return features, impressions, engagements


def test_labels_count_actions_within_the_window(spark):
    out = attach_labels(*_frames(spark), attribution_window_s=600, seed=7).toPandas()
    out = out.set_index(C.IMPRESSION_ID).sort_index()
    assert len(out) == 4 and out["some_feature"].tolist() == [1.0, 2.0, 3.0, 4.0]
    labels = out[label_columns()]
    assert labels.loc[1].to_dict() == {
        **dict.fromkeys(label_columns(), 0),
        "label_click": 1,
        "label_like": 1,
    }
    assert labels.loc[2, label_column("click")] == 0  # 601 s after serving
    assert labels.loc[2, label_column("hide")] == 1
    assert labels.loc[3, label_column("report")] == 1
    assert (labels.loc[4] == 0).all()  # no engagement: all negative, not missing
    assert out.loc[1, C.DWELL_S] == 42.0
    assert out[C.DWELL_S].iloc[1:].isna().all()  # the late click's dwell goes with it
    assert out[C.POSITION].tolist() == [0, 1, 2, 3]
    assert (out[C.ATTRIBUTION_WINDOW_S] == 600).all() and (out[C.SAMPLE_SEED] == 7).all()


def test_a_longer_window_attributes_the_late_click(spark):
    out = attach_labels(*_frames(spark), attribution_window_s=3600, seed=7).toPandas()
    row = out.set_index(C.IMPRESSION_ID).loc[2]
    assert row[label_column("click")] == 1 and row[C.DWELL_S] == 9.0


def test_sample_u_is_uniform_and_seeded(spark):
    ids = spark.range(20_000).withColumnRenamed("id", C.IMPRESSION_ID)
    feats = ids.selectExpr(C.IMPRESSION_ID, f"timestamp'2026-01-05 10:00:00' AS {C.SERVED_AT}")
    imps = ids.selectExpr(C.IMPRESSION_ID, f"0 AS {C.POSITION}", f"'network' AS {C.SOURCE}")
    _, _, eng = _frames(spark)

    def draws(seed):
        df = attach_labels(feats, imps, eng.limit(0), attribution_window_s=60, seed=seed)
        return df.orderBy(C.IMPRESSION_ID).toPandas()[C.SAMPLE_U].to_numpy()

    u7, u8 = draws(7), draws(8)
    assert ((u7 >= 0) & (u7 < 1)).all()
    hist = np.histogram(u7, bins=10, range=(0, 1))[0]
    assert (np.abs(hist - 2000) < 5 * np.sqrt(2000)).all()  # flat
    assert np.array_equal(u7, draws(7))
    assert np.corrcoef(u7, u8)[0, 1] < 0.05  # another seed, another draw


def test_window_must_be_positive(spark):
    with pytest.raises(ValueError, match="attribution_window_s"):
        attach_labels(*_frames(spark), attribution_window_s=0, seed=1)
