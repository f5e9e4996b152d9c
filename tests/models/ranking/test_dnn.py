"""models.ranking.dnn.ranker* on synthetic training examples with a planted structure (CPU, seconds
each):
learning, the calibration correction, debiasing, determinism, resuming, persistence, the
layers, the history attention and the ONNX export.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from small_dnn import DNN

from features import registry as R
from models.evaluation.metrics import auc, calibration_ratio
from models.evaluation.plots import learning_curves_figure
from models.ranking.base import VALUE_SCORE, IncompatibleRanker, prediction_column
from models.ranking.config import TrainingSettings
from models.ranking.dataset import (
    FEATURES,
    HISTORY_LEN,
    TOPIC_RECENCY,
    feature_frame,
    history_column,
    signature_frame,
)
from models.ranking.dnn.config import DnnSettings
from models.ranking.dnn.distributed import fit_dnn_distributed
from models.ranking.dnn.export import OnnxScorer, example_inputs, export_onnx
from models.ranking.dnn.inputs import TENSORS, Encoder, NormaliserBuilder, numeric_columns
from models.ranking.dnn.net import DnnNet
from models.ranking.dnn.ranker import DnnRanker
from models.ranking.dnn.train import fit_dnn
from warehouse.catalog import ACTIONS, TRAINING_EXAMPLES, C, label_column
from warehouse.layout import Folder
from warehouse.store import Warehouse

torch.set_num_threads(1)

DRIVER = "post_click_1d"  # the feature the synthetic actions depend on
BASE_LOGIT = {"click": -2.0, "like": -3.0, "comment": -3.5, "share": -3.5, "hide": -3.5}
BASE_LOGIT["report"] = -4.0
POSITION_EFFECT = -0.25  # per slot, on every action's logit
SLOTS = 10  # impressions per request
TRAIN, VAL, TEST = ("2026-01-01", "2026-01-02", "2026-01-03"), ("2026-01-04",), "2026-01-05"
SETTINGS = TrainingSettings(negative_rate=0.2, dnn=DNN)


def examples(n: int, seed: int) -> pa.Table:
    """Training examples whose actions depend on DRIVER (hides and reports inversely), video
    media and the position."""
    rng = np.random.default_rng(seed)
    # Noise features are constant (a few thousand rows would teach a net the noise);
    # what varies is what the actions depend on, and a few distractors.
    frame = pd.DataFrame({name: np.zeros(n) for name in FEATURES if name != TOPIC_RECENCY})
    for name in (DRIVER, "length", "post_like_1d", "author_pagerank", "sim_topic_share"):
        frame[name] = rng.random(n)
    frame["topic"] = rng.integers(0, 20, n)
    frame[R.CTX_HOUR] = rng.integers(0, 24, n)
    frame[R.CTX_DOW] = rng.integers(1, 8, n)
    frame[R.UA_FOLLOWS] = rng.integers(0, 2, n).astype(float)
    for name in ("device", "country", "age_bucket", "gender", "primary_device"):
        frame[name] = pd.Series([None] * n, dtype=object)  # missing categories are allowed
    frame["media_type"] = rng.choice(["text", "photo", "video", "link"], n)
    frame[C.USER_ID] = rng.integers(0, 300, n)
    frame[C.AUTHOR_ID] = rng.integers(0, 100, n)
    frame[C.POST_ID] = rng.integers(0, 500, n)
    frame[C.IMPRESSION_ID] = np.arange(n) + seed * 1_000_000
    frame[C.REQUEST_ID] = frame[C.IMPRESSION_ID] // SLOTS
    frame[C.POSITION] = (np.arange(n) % SLOTS).astype(np.int32)
    frame[C.SOURCE] = rng.choice(["network", "popular"], n)
    frame[C.SAMPLE_U] = rng.random(n)
    video = (frame["media_type"] == "video").to_numpy()
    for a, base in BASE_LOGIT.items():
        sign = -1.0 if a in ("hide", "report") else 1.0  # good posts draw fewer hides
        logit = base + sign * 3.0 * (frame[DRIVER].to_numpy() - 0.5) + 1.0 * video
        logit = logit + POSITION_EFFECT * frame[C.POSITION].to_numpy()
        frame[label_column(a)] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    clicked = frame[label_column("click")].to_numpy() == 1
    dwell = 10 + 80 * frame["length"].to_numpy() + rng.exponential(5, n)
    frame[C.DWELL_S] = np.where(clicked, dwell, np.nan)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    last = pa.array([[int(t)] for t in rng.integers(0, 20, n)], pa.list_(pa.int64()))
    table = table.append_column(R.USER_LAST_TOPICS, last)
    # No engagement history (history_frame below gives one where a test needs it).
    for name, kind in ((R.USER_HIST_TOPICS, pa.int32()), (R.USER_HIST_AUTHORS, pa.int64())):
        table = table.append_column(name, pa.array([[]] * n, pa.list_(kind)))
    return table.append_column(R.USER_HIST_MEDIA, pa.array([[]] * n, pa.list_(pa.string())))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Warehouse:
    wh = Warehouse(tmp_path_factory.mktemp("warehouse"))
    for i, ds in enumerate((*TRAIN, *VAL, TEST)):
        wh.write_arrow(TRAINING_EXAMPLES, ds, examples(8000, i + 1))
    return wh


@pytest.fixture(scope="module")
def test_rows(store):
    table = store.read_arrow(TRAINING_EXAMPLES, TEST)
    return feature_frame(table), table.select([*map(label_column, ACTIONS), C.DWELL_S]).to_pandas()


@pytest.fixture(scope="module")
def fitted(store, tmp_path_factory):
    folder = Folder(tmp_path_factory.mktemp("straight"))
    return fit_dnn(store, TRAIN, VAL, SETTINGS, folder)


def test_the_store_streams_batches(store):
    parts = list(
        store.iter_batches(TRAINING_EXAMPLES, TRAIN, columns=[C.POSITION], batch_rows=3000)
    )
    assert [p.num_rows for p in parts] == [3000, 3000, 2000] * 3  # per day, per file
    assert parts[0].column_names == [C.POSITION]


def test_it_learns_the_signal_and_the_correction_restores_calibration(fitted, test_rows):
    ranker, history = fitted
    X, labels = test_rows
    corrected = ranker.predict(X, logged_bias=True)
    raw = ranker.predict(X, corrected=False, logged_bias=True)
    y = labels[label_column("click")].to_numpy()
    assert auc(y, corrected[prediction_column("click")]) > 0.7
    assert calibration_ratio(y, raw[prediction_column("click")]) > 1.8  # the sampled scale
    assert calibration_ratio(y, corrected[prediction_column("click")]) == pytest.approx(1, abs=0.15)
    assert (corrected[C.E_DWELL_S] >= 0).all() and np.isfinite(corrected[VALUE_SCORE]).all()
    assert history.positives["click"] < history.rows["click"] < 3 * 8000
    assert len(history.val_metric) == len(history.train_loss["click"]) >= 1
    assert 1 <= history.best_epoch <= DNN.epochs
    assert history.curves["dwell"]["valid"] == history.val_loss["dwell"]
    assert history.curves["value"]["valid"] == history.val_metric
    fig = learning_curves_figure(history.curves, history.best_iteration, history.metric)
    assert len([ax for ax in fig.axes if ax.has_data()]) == len(ACTIONS) + 2  # dwell, value


def test_debiasing_fixes_the_position_at_scoring(fitted, test_rows):
    ranker, _ = fitted
    X, _ = test_rows
    assert ranker.debiased
    logged = ranker.predict(X, logged_bias=True)[prediction_column("click")].to_numpy()
    position = X[C.POSITION].to_numpy()
    # The planted effect: exp(-0.25 * 9) ~ 0.1 of the odds at slot 9 against slot 0.
    assert logged[position == 9].mean() < 0.6 * logged[position == 0].mean()
    served = ranker.predict(X)
    moved = X.assign(**{C.POSITION: np.roll(position, 3)})
    pd.testing.assert_frame_equal(ranker.predict(moved), served)  # the position is fixed
    assert not np.allclose(served[prediction_column("click")], logged)


def test_same_settings_same_model(store, fitted, test_rows, tmp_path):
    ranker, history = fitted
    again, history2 = fit_dnn(store, TRAIN, VAL, SETTINGS, Folder(tmp_path))
    assert history2.val_metric == history.val_metric
    assert history2.train_loss == history.train_loss
    pd.testing.assert_frame_equal(again.predict(test_rows[0]), ranker.predict(test_rows[0]))


def test_a_killed_run_resumes_to_the_same_weights(store, fitted, tmp_path):
    ranker, history = fitted

    def kill_after_first(epoch, _):
        if epoch == 1:
            raise KeyboardInterrupt

    folder = Folder(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        fit_dnn(store, TRAIN, VAL, SETTINGS, folder, on_epoch=kill_after_first)
    resumed, history2 = fit_dnn(store, TRAIN, VAL, SETTINGS, folder)
    assert history2.val_metric == history.val_metric
    for name, tensor in ranker.net.state_dict().items():
        assert torch.equal(tensor, resumed.net.state_dict()[name]), name


@pytest.mark.spark
def test_two_processes_share_the_batches_and_train_as_well_as_one(
    spark, store, fitted, test_rows, tmp_path
):
    """TorchDistributor's two processes (torchrun beside the driver, gloo): each trains on
    every other batch of half the size, so an epoch covers the rows once between them, and
    the model ranks the test day as well as one process's (within 0.02 click AUC)."""
    ranker, history = fitted
    two, history2 = fit_dnn_distributed(store, TRAIN, VAL, SETTINGS, Folder(tmp_path), processes=2)
    assert (history.processes, history2.processes) == (1, 2)
    assert history2.best_epoch >= 1 and len(history2.val_metric) >= 1
    for one, both in zip(history.rows_trained, history2.rows_trained, strict=False):
        assert one - DNN.batch_size // 2 <= both <= one  # a last half-batch may be left out
    X, labels = test_rows
    y = labels[label_column("click")].to_numpy()
    click = prediction_column("click")
    alone, together = auc(y, ranker.predict(X)[click]), auc(y, two.predict(X)[click])
    assert together > 0.7
    assert together == pytest.approx(alone, abs=0.02)


def test_a_batch_that_does_not_split_over_the_processes_is_refused(store, tmp_path, monkeypatch):
    import models.ranking.dnn.train as train

    monkeypatch.setattr(train, "world", lambda: (0, 3))  # 256 rows over 3 processes
    with pytest.raises(ValueError, match="batch_size 256 does not split evenly over the 3"):
        fit_dnn(store, TRAIN, VAL, SETTINGS, Folder(tmp_path))


@pytest.mark.parametrize(("size", "threads"), [(1, 4), (2, 2), (4, 1), (8, 1)])
def test_the_processes_of_a_group_share_the_threads(store, tmp_path, monkeypatch, size, threads):
    """num_threads is the group's: each of N processes takes num_threads // N (at least 1),
    so processes on the same cores do not oversubscribe them."""
    import models.ranking.dnn.train as train

    taken = []

    def seed_and_stop(seed, n):
        taken.append(n)
        raise InterruptedError

    monkeypatch.setattr(train, "world", lambda: (0, size))
    monkeypatch.setattr(train, "seed_everything", seed_and_stop)
    four = SETTINGS.model_copy(update={"dnn": DNN.model_copy(update={"num_threads": 4})})
    with pytest.raises(InterruptedError):
        fit_dnn(store, TRAIN, VAL, four, Folder(tmp_path))
    assert taken == [threads]


def test_save_and_load_give_the_same_scores(fitted, test_rows, tmp_path):
    ranker, _ = fitted
    X, _ = test_rows
    before = ranker.predict(X)
    folder = ranker.save(Folder(tmp_path / "ranker"))
    meta = json.loads(folder.file("ranker.json").read_text())
    assert meta["kind"] == "dnn" and meta["format_version"] == 1
    loaded = DnnRanker.load(folder)
    pd.testing.assert_frame_equal(loaded.predict(X), before)
    # Strings instead of categories (as MLflow hands them over) score the same.
    pd.testing.assert_frame_equal(loaded.predict(signature_frame(X)), before)
    assert loaded.features == ranker.features and loaded.kind == "dnn"
    # The saved graph scores like the weights.
    pd.testing.assert_frame_equal(loaded.predict(X, engine="onnx"), before, rtol=1e-5, atol=1e-6)


def test_a_frame_without_a_column_is_refused_naming_it(fitted, test_rows):
    ranker, _ = fitted
    with pytest.raises(IncompatibleRanker, match=DRIVER):
        ranker.predict(test_rows[0].drop(columns=[DRIVER]))


def test_the_exported_graph_scores_like_eager(fitted, test_rows, tmp_path):
    ranker, _ = fitted
    X = test_rows[0].iloc[:2000]
    for logged in (True, False):
        arrays = ranker.tensors(X, logged_bias=logged)
        eager = ranker.forward_arrays(arrays)
        scorer = OnnxScorer(export_onnx(ranker.net, Folder(tmp_path)))
        exported = scorer.run(arrays)
        for e, o in zip(eager, exported, strict=True):
            np.testing.assert_allclose(o, e, rtol=1e-5, atol=1e-5)
    through = ranker.predict(X, engine="onnx")
    pd.testing.assert_frame_equal(through, ranker.predict(X), rtol=1e-5, atol=1e-6)


def test_absent_tasks_score_zero(store, tmp_path):
    settings = SETTINGS.model_copy(update={"dnn": DNN.model_copy(update={"epochs": 1})})
    recorded = ("click", "like", "comment", "share", "hide")
    ranker, history = fit_dnn(store, TRAIN, VAL, settings, Folder(tmp_path), tasks=recorded)
    assert ranker.absent == ("report", "dwell") and set(history.rows) == set(recorded)
    X = feature_frame(store.read_arrow(TRAINING_EXAMPLES, TEST)).iloc[:500]
    scores = ranker.predict(X)
    assert (scores[prediction_column("report")] == 0).all() and (scores[C.E_DWELL_S] == 0).all()


# -- the network's layers, on encoded synthetic rows ------------------------------------------


def history_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature rows with history slots: a viewer clicks when the candidate's topic is among
    the topics of their history (a signal only the history attention can see)."""
    rng = np.random.default_rng(seed)
    X = feature_frame(examples(n, seed))
    length = rng.integers(0, HISTORY_LEN + 1, n)  # slots past it are padding
    topics = rng.integers(0, 20, (n, HISTORY_LEN)).astype(float)
    slots = {}
    for i in range(HISTORY_LEN):
        pad = i >= length
        slots[history_column("topic", i)] = np.where(pad, np.nan, topics[:, i])
        slots[history_column("author", i)] = np.where(pad, np.nan, rng.integers(0, 100, n))
        slots[history_column("media", i)] = np.where(pad, np.nan, rng.integers(0, 4, n))
    X = X.assign(**slots)
    seen = (topics == X["topic"].to_numpy()[:, None]) & (np.arange(HISTORY_LEN) < length[:, None])
    y = (rng.random(n) < np.where(seen.any(1), 0.9, 0.05)).astype(np.float32)
    return X, y


def encoder_for(X: pd.DataFrame, cfg: DnnSettings, history: int) -> Encoder:
    builder = NormaliserBuilder(numeric_columns(X.columns, cfg), cfg)
    builder.add(X, np.full(len(X), 30.0))
    return Encoder(cfg, builder.finish(), history)


def test_history_attention_learns_and_masks_padding():
    torch.manual_seed(0)
    cfg = DNN.model_copy(update={"interaction": "mlp", "dropout": 0.0, "cat_dim": 8})
    X, y = history_frame(6000, 11)
    enc = encoder_for(X, cfg, HISTORY_LEN)
    net = DnnNet(cfg, enc.n_numeric, HISTORY_LEN, debias=False)
    arrays = {k: torch.from_numpy(v) for k, v in enc.encode(X).items()}
    target = torch.from_numpy(y)
    opt = torch.optim.AdamW(net.parameters(), lr=0.01)
    for _ in range(6):
        for start in range(0, 4000, 200):
            part = [arrays[k][start : start + 200] for k in TENSORS]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                net(*part)[0][:, 0], target[start : start + 200]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        held_out = net(*(arrays[k][4000:] for k in TENSORS))[0][:, 0].numpy()
        assert auc(y[4000:], held_out) > 0.75  # the truth's is about 0.92
        # Padding: an empty history pools to 0, and padded slots change nothing (the
        # first 5 slots pool like all 10 where the history is at most 5 long).
        h = tuple(arrays[k][:200] for k in ("h_topic", "h_author", "h_media"))
        cand = (arrays["cat"][:200, net.topic_field], arrays["ids"][:200, 1])
        query = net.history.embed(*cand, arrays["cat"][:200, net.media_field])
        empty = net.history(query, *(torch.zeros_like(t) for t in h))
        assert torch.equal(empty, torch.zeros_like(empty))
        short = (h[0][:, 5:] == 0).all(1)
        assert 0 < int(short.sum()) < 200
        full = net.history(query, *h)[short]
        first = net.history(query, *(t[:, :5] for t in h))[short]
        torch.testing.assert_close(first, full, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("interaction", "bottom", "history", "debias"),
    [
        ("mlp", "shared", 0, False),  # no position tower: its inputs leave the graph
        ("dcn", "mmoe", 0, True),
        ("attention", "shared", 0, True),
        ("attention", "mmoe", 3, True),
    ],
)
def test_each_layer_trains_and_exports(interaction, bottom, history, debias):
    torch.manual_seed(0)
    cfg = DNN.model_copy(update={"interaction": interaction, "bottom": bottom, "experts": 3})
    net = DnnNet(cfg, 7, history, debias=debias)
    inputs = example_inputs(net, rows=16)
    inputs["num"] = torch.randn(16, 7)
    inputs["cat"] = torch.randint(0, 3, inputs["cat"].shape)
    inputs["pos"] = torch.arange(16) % 5
    if history:
        inputs["h_topic"] = torch.randint(0, 5, (16, history))
    logits, dwell = net(*inputs.values())
    assert logits.shape == (16, len(ACTIONS)) and dwell.shape == (16,)
    (logits.sum() + dwell.sum()).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in net.parameters())
    net.eval()
    with torch.no_grad():
        eager = [t.numpy() for t in net(*inputs.values())]
    exported = OnnxScorer.from_net(net).run({k: v.numpy() for k, v in inputs.items()})
    for e, o in zip(eager, exported, strict=True):
        np.testing.assert_allclose(o, e, rtol=1e-5, atol=1e-5)


def test_standardised_numbers_are_clipped():
    X = feature_frame(examples(400, 3))
    far = X.assign(**{DRIVER: X[DRIVER].max() * 1000.0})  # far outside the training range
    clipped = encoder_for(X, DNN.model_copy(update={"clip": 2.0}), 0)
    column = clipped.norm.columns.index(DRIVER)
    assert clipped.encode(far)["num"][:, column].max() == 2.0
    unclipped = encoder_for(X, DNN.model_copy(update={"clip": None}), 0)
    assert unclipped.encode(far)["num"][:, column].min() > 2.0
