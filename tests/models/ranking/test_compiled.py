"""models.ranking.compiled: the compiled boosters score as Ranker.predict does, and the folder's
object files are reused only for the same trees; a saved ranker's compiled boosters (built
when a version is registered) load without compiling, or not at all where they do not fit."""

from __future__ import annotations

import json
import shutil

import lleaves.compiler
import mlflow
import numpy as np
import pandas as pd
import pytest

import models.ranking.compiled as compiled_module
from models.ranking import native
from models.ranking.base import COMPILED
from models.ranking.compiled import STAMP, CompiledRanker, NotCompiled, compile_saved
from models.ranking.config import GbdtSettings, TrainingSettings
from models.ranking.dataset import FEATURES, IDS, Examples, feature_frame
from models.ranking.ensemble import EnsembleRanker
from models.ranking.gbdt import Ranker, fit_ranker
from models.ranking.load import load_ranker_folder
from models.registry import versions as reg
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


# --- compiled once, loaded by every worker -----------------------------------------------------

# Three trees per task: these tests are about where the code comes from, not its speed.
TINY = SETTINGS.model_copy(
    update={"gbdt": SETTINGS.gbdt.model_copy(update={"max_rounds": 3, "early_stopping_rounds": 3})}
)


@pytest.fixture(scope="module")
def tiny() -> Ranker:
    return fit_ranker(examples(3_000, 11), examples(1_000, 12), TINY)[0]


def _refuse(*args, **kwargs):
    raise AssertionError("lleaves compiled a model")


@pytest.fixture
def no_compiling(monkeypatch):
    """lleaves' compiler made to fail: what runs under it only loads object files."""
    monkeypatch.setattr(lleaves.compiler, "compile_to_module", _refuse)


def saved(ranker, path) -> Folder:
    return ranker.save(Folder(path))


def test_a_saved_ranker_loads_its_compiled_boosters_without_compiling(tiny, tmp_path, request):
    folder = saved(tiny, tmp_path / "ranker")
    assert compile_saved(folder) == 1
    built = {p.name: p.stat().st_mtime_ns for p in folder.path.glob(f"{COMPILED}/*.o")}
    assert len(built) == len(tiny.boosters)
    assert json.loads(folder.file(f"{COMPILED}/{STAMP}").read_text())["portable"] is True
    request.getfixturevalue("no_compiling")  # a cold process from here on
    loaded = load_ranker_folder(folder)
    assert isinstance(loaded, CompiledRanker)
    X = examples(2_000, 13).X
    assert np.abs(loaded.predict(X).to_numpy() - tiny.predict(X).to_numpy()).max() <= 1e-6
    assert {p.name: p.stat().st_mtime_ns for p in folder.path.glob(f"{COMPILED}/*.o")} == built


def test_compiled_boosters_that_do_not_fit_are_not_used_nor_rebuilt(tiny, tmp_path, request):
    other = fit_ranker(examples(3_000, 14), examples(1_000, 15), TINY)[0]
    folder = saved(tiny, tmp_path / "ranker")
    compile_saved(folder)
    alien = saved(other, tmp_path / "other")
    shutil.copytree(folder.file(COMPILED), alien.file(COMPILED))  # another ranker's code
    request.getfixturevalue("no_compiling")
    with pytest.raises(NotCompiled, match="other trees"):
        CompiledRanker.load(other, alien.sub(COMPILED))
    loaded = load_ranker_folder(alien)
    assert type(loaded) is Ranker  # LightGBM's own predict: the same scores
    X = examples(500, 16).X
    pd.testing.assert_frame_equal(loaded.predict(X), other.predict(X))
    # Code built for another CPU is not loaded either.
    stamp = json.loads(folder.file(f"{COMPILED}/{STAMP}").read_text())
    stamp["target"]["triple"] = "riscv64-unknown-linux-gnu"
    folder.file(f"{COMPILED}/{STAMP}").write_text(json.dumps(stamp))
    with pytest.raises(NotCompiled, match="built for"):
        CompiledRanker.load(tiny, folder.sub(COMPILED))
    assert type(load_ranker_folder(folder)) is Ranker


def test_the_same_trees_are_compiled_once_per_cache(tiny, tmp_path):
    """A night's gbdt version and the ensemble holding it: the second folder's boosters come
    from the cache, not the compiler (nor its worker processes); other trees add their own."""
    cache = Folder(tmp_path / "cache")
    compile_saved(saved(tiny, tmp_path / "gbdt"), cache)
    assert len(list(cache.path.glob("*.o"))) == len(tiny.boosters)
    folder = saved(tiny, tmp_path / "again")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled_module, "compile_objects", _refuse)
        assert compile_saved(folder, cache) == 1
    X = examples(1_000, 23).X
    loaded = load_ranker_folder(folder)
    assert np.abs(loaded.predict(X).to_numpy() - tiny.predict(X).to_numpy()).max() <= 1e-6
    other = fit_ranker(examples(3_000, 21), examples(1_000, 22), TINY)[0]
    compile_saved(saved(other, tmp_path / "other"), cache)
    assert len(list(cache.path.glob("*.o"))) == len(tiny.boosters) + len(other.boosters)


def test_boosters_compiled_in_worker_processes_score_the_same(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(native, "PARALLEL_TREES", 0)  # spawn workers for any size
    compiled = CompiledRanker.compile(tiny, Folder(tmp_path / "parallel"))
    assert len(list((tmp_path / "parallel").glob("*.o"))) == len(tiny.boosters)
    X = examples(1_000, 24).X
    assert np.abs(compiled.predict(X).to_numpy() - tiny.predict(X).to_numpy()).max() <= TOLERANCE


def test_an_ensemble_s_gbdt_members_are_compiled(tiny, tmp_path, request):
    other = fit_ranker(examples(3_000, 17), examples(1_000, 18), TINY)[0]
    ensemble = EnsembleRanker([tiny, other], tiny.weights)
    folder = saved(ensemble, tmp_path / "ensemble")
    assert compile_saved(folder) == 2
    request.getfixturevalue("no_compiling")
    loaded = load_ranker_folder(folder)
    assert [type(m) for m in loaded.members] == [CompiledRanker, CompiledRanker]
    X = examples(1_000, 19).X
    assert np.abs(loaded.predict(X).to_numpy() - ensemble.predict(X).to_numpy()).max() <= 1e-6


def test_a_registered_version_stores_its_compiled_ranker(tiny, tmp_path, request):
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        reg.use_tracking(f"sqlite:///{tmp_path / 'mlflow.db'}", "compiled", tmp_path / "art")
        with mlflow.start_run():
            info = reg.log_ranker(tiny, examples(300, 20).X, Folder(tmp_path / "log"))
        version = reg.register(info.model_uri, "ranker")
        assert reg.compiled_folder("ranker", version, Folder(tmp_path / "none")) is None
        assert reg.save_compiled("ranker", version, Folder(tmp_path / "build")) is not None
        request.getfixturevalue("no_compiling")  # the precompute's side: download and load
        (tmp_path / "ship").mkdir()
        folder = reg.compiled_folder("ranker", version, Folder(tmp_path / "ship"))
        assert folder.file(COMPILED).is_dir()
        loaded = load_ranker_folder(folder)
    finally:
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(registry)
    assert isinstance(loaded, CompiledRanker)
    X = examples(500, 21).X
    assert np.abs(loaded.predict(X).to_numpy() - tiny.predict(X).to_numpy()).max() <= 1e-6
