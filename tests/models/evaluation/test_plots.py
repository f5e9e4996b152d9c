"""models.evaluation.plots: each figure renders to a PNG, with one panel per task and the right
contents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from models.evaluation import plots
from models.evaluation.metrics import calibration_curve
from warehouse.layout import Folder

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data_axes(fig: Figure) -> list:
    """Visible axes that carry data: lines or images (colorbars carry neither)."""
    return [ax for ax in fig.axes if ax.get_visible() and (ax.lines or ax.images)]


def _assert_png(fig: Figure, path: Path) -> None:
    out = plots.save_figure(fig, path)
    assert out == path
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_MAGIC


def _rare_curves(rng: np.random.Generator, rate: float) -> dict[str, pd.DataFrame]:
    """Calibration tables for a rare action; a few predictions land in an all-negative bin."""
    n = 20_000
    p_true = np.clip(rng.beta(0.5, 0.5 / rate, n), 0.0, 0.2)
    y = (rng.random(n) < p_true).astype(int)
    p_true[:5] = 0.95  # a lone high bin whose labels are forced negative: observed rate 0
    y[:5] = 0
    downsampled = np.clip(p_true * 8, 0.0, 1.0)
    return {
        "model (downsampled)": calibration_curve(y, downsampled, 20),
        "model (corrected)": calibration_curve(y, p_true, 20),
        "oracle": calibration_curve(y, p_true, 10),
    }


def test_calibration_figure(tmp_path):
    rng = np.random.default_rng(7)
    tasks = ["click", "like", "comment", "share"]  # 4 tasks: a 2 x 3 grid with 2 cells unused
    rates = [0.05, 0.02, 0.005, 0.002]
    curves = {t: _rare_curves(rng, r) for t, r in zip(tasks, rates, strict=True)}
    zero_bins = {
        t: sum(int((c["observed_rate"] == 0).sum()) for c in curves[t].values()) for t in tasks
    }
    assert all(zero_bins.values())  # the inputs do exercise the zero case

    fig = plots.calibration_figure(curves)
    axes = _data_axes(fig)
    assert len(axes) == len(tasks) == len(fig.axes)
    assert [ax.get_title() for ax in axes] == tasks
    for ax, task in zip(axes, tasks, strict=True):
        assert ax.get_xscale() == ax.get_yscale() == "log"
        assert ax.get_xlabel() == "mean predicted"
        assert ax.get_ylabel() == "observed rate"
        lines = {line.get_label(): line for line in ax.lines}
        assert set(curves[task]) <= set(lines)
        assert lines["y = x"].get_linestyle() == "--"
        for variant, table in curves[task].items():
            x, y = (np.asarray(a) for a in lines[variant].get_data())
            positive = table["observed_rate"].to_numpy() > 0
            assert x.size == positive.sum()  # zero-rate bins left out, the rest kept
            np.testing.assert_allclose(y, np.maximum(table["observed_rate"][positive], 1e-5))
            assert (x > 0).all() and (y > 0).all()
        assert any(f"{zero_bins[task]} bin(s)" in text.get_text() for text in ax.texts)
    assert axes[0].get_legend() is not None
    assert all(ax.get_legend() is None for ax in axes[1:])
    # One colour per variant, the same in every panel.
    colors = [{ln.get_label(): ln.get_color() for ln in ax.lines} for ax in axes]
    assert all(c["oracle"] == colors[0]["oracle"] for c in colors)
    assert len({colors[0][v] for v in curves["click"]}) == 3
    _assert_png(fig, Folder(tmp_path / "report").writable("calibration.png"))


def test_calibration_figure_all_zero_panel_does_not_crash(tmp_path):
    table = calibration_curve(np.zeros(50, dtype=int), np.linspace(0, 0.3, 50), 5)
    fig = plots.calibration_figure({"report": {"model": table}})
    (ax,) = _data_axes(fig)
    (model_line,) = [ln for ln in ax.lines if ln.get_label() == "model"]
    assert len(model_line.get_xdata()) == 0
    _assert_png(fig, tmp_path / "zero.png")


def test_calibration_figure_rejects_bad_input():
    with pytest.raises(ValueError, match="observed_rate"):
        plots.calibration_figure({"click": {"m": pd.DataFrame({"mean_pred": [0.1]})}})
    with pytest.raises(ValueError, match="no task"):
        plots.calibration_figure({})


def _importance(rng: np.random.Generator) -> pd.DataFrame:
    tasks = ["click", "like", "dwell"]
    features = [f"f_{i:02d}" for i in range(30)]
    parts = []
    for task in tasks:
        gain = rng.gamma(0.6, 1.0, len(features))
        parts.append(pd.DataFrame({"task": task, "feature": features, "gain": gain}))
    frame = pd.concat(parts, ignore_index=True)
    frame["gain_share"] = frame["gain"] / frame.groupby("task")["gain"].transform("sum")
    # "dwell" never split on the last 3 features: they are absent from its rows (share 0).
    return frame[~((frame["task"] == "dwell") & frame["feature"].isin(features[-3:]))]


def test_importance_figure(tmp_path):
    frame = _importance(np.random.default_rng(3))
    tasks = ["click", "like", "dwell"]
    wide = frame.pivot(index="feature", columns="task", values="gain_share").fillna(0.0)
    expected = wide.mean(axis=1).sort_values(ascending=False).index[:12].tolist()

    fig = plots.importance_figure(frame, top=12)
    (ax,) = _data_axes(fig)
    assert len(fig.axes) == 2  # the heatmap and its colorbar
    assert [t.get_text() for t in ax.get_yticklabels()] == expected
    assert [t.get_text() for t in ax.get_xticklabels()] == tasks
    (image,) = ax.images
    shown = np.asarray(image.get_array())
    assert shown.shape == (12, len(tasks))
    np.testing.assert_allclose(shown, wide.loc[expected, tasks].to_numpy())
    _assert_png(fig, tmp_path / "importance.png")

    taller = plots.importance_figure(frame, top=30)
    assert taller.get_figheight() > fig.get_figheight()
    assert len(_data_axes(taller)[0].get_yticklabels()) == 30


def test_importance_figure_missing_column():
    frame = _importance(np.random.default_rng(3)).drop(columns="gain_share")
    with pytest.raises(ValueError, match="gain_share"):
        plots.importance_figure(frame)


def test_learning_curves_figure(tmp_path):
    rng = np.random.default_rng(11)
    its = np.arange(1, 151)
    curves = {
        "click": {
            "train": 0.30 * np.exp(-its / 60) + 0.20,
            "valid": 0.30 * np.exp(-its / 60) + 0.21 + 1e-4 * np.maximum(its - 90, 0),
        },
        "dwell": {
            "train": list(1.5 - 0.004 * its[:120] + rng.normal(0, 0.01, 120)),
            "valid": list(1.6 - 0.003 * its[:120] + rng.normal(0, 0.01, 120)),
        },
    }
    best = {"click": 90, "dwell": 117}
    metric = {"click": "binary_logloss", "dwell": "huber"}

    fig = plots.learning_curves_figure(curves, best, metric)
    axes = _data_axes(fig)
    assert len(axes) == len(curves) == len(fig.axes)
    for ax, task in zip(axes, curves, strict=True):
        assert ax.get_title() == task
        assert ax.get_ylabel() == metric[task]
        lines = {line.get_label(): line for line in ax.lines}
        for dataset, values in curves[task].items():
            x, y = lines[dataset].get_data()
            np.testing.assert_array_equal(x, np.arange(1, len(values) + 1))
            np.testing.assert_allclose(y, values)
        marker = lines[f"best = {best[task]}"]
        assert marker.get_linestyle() == ":"
        assert set(np.asarray(marker.get_xdata(), dtype=float)) == {best[task]}
    _assert_png(fig, Folder(tmp_path).writable("nested/dir/learning.png"))


def test_learning_curves_figure_needs_every_task():
    with pytest.raises(ValueError, match="dwell"):
        plots.learning_curves_figure(
            {"click": {"train": [1.0]}, "dwell": {"train": [1.0]}},
            {"click": 1},
            {"click": "binary_logloss", "dwell": "huber"},
        )


def test_cohort_figure(tmp_path):
    table = pd.DataFrame(
        {
            "cohort": ["all", "0", ">0"] * 2,
            "task": ["click"] * 3 + ["hide"] * 3,
            "share": [1.0, 0.25, 0.75] * 2,
            "auc_model": [0.78, 0.70, 0.80, 0.70, 0.65, 0.71],
            "auc_oracle": [0.84, 0.83, 0.84, 0.79, 0.78, 0.80],
        }
    )
    fig = plots.cohort_figure(table, "by history")
    assert len(fig.axes) == 2
    for ax, task in zip(fig.axes, ("click", "hide"), strict=True):
        assert ax.get_title() == f"{task}: by history"
        assert len(ax.patches) == 3 * 2  # a bar per cohort and scorer
        heights = sorted(round(b.get_height(), 2) for b in ax.patches)
        want = table[table["task"] == task][["auc_model", "auc_oracle"]].to_numpy().ravel()
        assert heights == sorted(want.round(2))
        # Each cohort's tick names its share of the impressions.
        assert [t.get_text() for t in ax.get_xticklabels()] == ["all\n100%", "0\n25%", ">0\n75%"]
    _assert_png(fig, Folder(tmp_path).writable("cohorts.png"))
    with pytest.raises(ValueError, match="auc_"):
        plots.cohort_figure(table.drop(columns=["auc_model", "auc_oracle"]), "x")
