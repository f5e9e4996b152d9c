"""models.ranking.compiled: the compiled boosters score as Ranker.predict does, and the folder's
object files are reused only for the same trees."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.ranking.compiled import CompiledRanker
from models.ranking.config import GbdtSettings, TrainingSettings
from models.ranking.dataset import FEATURES, IDS, Examples, feature_frame
from models.ranking.gbdt import Ranker, fit_ranker
from warehouse.catalog import ACTIONS, IMPRESSION_SOURCES, C, label_column
from warehouse.layout import Folder

# Few small trees: compiling costs about a second per tree on a loaded machine.
SETTINGS = TrainingSettings(
    negative_rate=0.5,
    gbdt=GbdtSettings(
        num_leaves=15, min_child_samples=20, max_rounds=15, early_stopping_rounds=15, num_threads=1
    ),
)
TOLERANCE = 1e-12  # the same double-precision sums as LightGBM, maybe in another order


def examples(n: int, seed: int) -> Examples:
    """Rows with what scoring meets: missing and unseen categories, NaN numbers, logged
    positions and sources; every action driven by a number, a category and the topic."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.lognormal(0, 1, n) for name in FEATURES})
    frame.loc[rng.random(n) < 0.1, "ctx_hours_since_prev_request"] = np.nan
    frame["topic"] = rng.integers(0, 20, n).astype(float)
    frame["media_type"] = rng.choice(["text", "photo", "video", "link", "gif", None], n)
    for name in ("device", "country", "age_bucket", "gender", "primary_device"):
        frame[name] = None
    frame["country"] = rng.choice(["us", "br", None], n)
    frame["ua_follows"] = (rng.random(n) < 0.3).astype(float)
    for name in IDS:
        frame[name] = rng.integers(0, 1000, n)
    frame[C.POSITION] = rng.integers(0, 30, n).astype(float)
    frame[C.SOURCE] = rng.choice(IMPRESSION_SOURCES, n)
    X = feature_frame(frame)
    logit = -2.0 + np.log(frame["post_click_1d"]) + (frame["media_type"] == "video")
    logit += 0.5 * (frame["topic"] < 5) - 0.02 * frame[C.POSITION]
    labels = {
        label_column(a): (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8) for a in ACTIONS
    }
    clicked = labels[label_column("click")] == 1
    labels[C.DWELL_S] = np.where(clicked, 10 + 20 * frame["length"], np.nan)
    return Examples(X, pd.DataFrame(labels), rng.random(n))


@pytest.fixture(scope="module")
def ranker() -> Ranker:
    ranker, _ = fit_ranker(examples(8_000, 1), examples(2_000, 2), SETTINGS)
    return ranker


@pytest.fixture(scope="module")
def compiled(ranker, tmp_path_factory) -> tuple[CompiledRanker, Folder]:
    folder = Folder(tmp_path_factory.mktemp("compiled"))
    return CompiledRanker.compile(ranker, folder), folder


@pytest.mark.parametrize("corrected", [True, False])
@pytest.mark.parametrize("logged_bias", [False, True])
def test_compiled_scores_equal_the_rankers(ranker, compiled, corrected, logged_bias):
    X = examples(3_000, 3).X
    expected = ranker.predict(X, corrected=corrected, logged_bias=logged_bias)
    got = compiled[0].predict(X, corrected=corrected, logged_bias=logged_bias)
    assert list(got.columns) == list(expected.columns)
    assert got.index.equals(expected.index)
    assert np.abs(got.to_numpy() - expected.to_numpy()).max() <= TOLERANCE
    assert expected.std().gt(0).all()  # the models do score rows differently


def test_two_threads_score_the_same(ranker, compiled):
    X = examples(2_000, 4).X
    one = compiled[0].predict(X)
    two = CompiledRanker(ranker, compiled[0].models, threads=2).predict(X)
    pd.testing.assert_frame_equal(one, two, check_exact=True)


def test_a_compile_reuses_the_object_files_of_the_same_trees_only(ranker, compiled):
    _, folder = compiled
    built = {p.name: p.stat().st_mtime_ns for p in folder.path.glob("*.o")}
    assert len(built) == len(ranker.boosters)
    again = CompiledRanker.compile(ranker, folder)
    assert {p.name: p.stat().st_mtime_ns for p in folder.path.glob("*.o")} == built
    # Other trees in the same folder: recompiled, and they score as their own ranker.
    other, _ = fit_ranker(examples(8_000, 5), examples(2_000, 6), SETTINGS)
    recompiled = CompiledRanker.compile(other, folder)
    X = examples(1_000, 7).X
    diff = recompiled.predict(X).to_numpy() - other.predict(X).to_numpy()
    assert np.abs(diff).max() <= TOLERANCE
    assert np.abs(again.predict(X).to_numpy() - ranker.predict(X).to_numpy()).max() <= TOLERANCE
