"""Figures for the ranker training report, logged to MLflow as PNGs.

Figures are built with the object-oriented API (`matplotlib.figure.Figure`), never pyplot: no
global state, no backend to select, nothing left open between calls. Every figure lays out one
panel per task in a grid of at most `MAX_COLUMNS` columns; grid cells left over are removed, so
`fig.axes` holds the data panels (plus a colorbar where there is one).

Calibration is drawn on log-log axes because actions are rare: values are clipped to at least
`LOG_FLOOR`, and a bin whose observed rate is 0 cannot be placed there, so it is left out and
the panel says how many were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

MAX_COLUMNS = 3
LOG_FLOOR = 1e-5  # smallest value drawn on a log axis
DPI = 110
PANEL_SIZE = (4.2, 3.4)  # inches per grid cell (width, height)

CALIBRATION_COLUMNS = ("mean_pred", "observed_rate")
IMPORTANCE_COLUMNS = ("task", "feature", "gain_share")


def _grid(n_panels: int) -> tuple[Figure, list[Axes]]:
    """A constrained-layout figure with `n_panels` axes, row by row, at most MAX_COLUMNS wide."""
    if n_panels < 1:
        raise ValueError("nothing to plot: no task given")
    ncols = min(n_panels, MAX_COLUMNS)
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in grid[n_panels:]:
        ax.remove()
    return fig, list(grid[:n_panels])


def calibration_figure(curves: Mapping[str, Mapping[str, pd.DataFrame]]) -> Figure:
    """Reliability diagrams: observed rate vs mean prediction per task, one line per variant.

    `curves[task][variant]` is a `models.evaluation.metrics.calibration_curve` table. Log-log axes
    with
    the y = x diagonal dashed; a variant keeps its colour across panels. Bins with an observed
    rate of 0 are left out (counted in the panel's corner).
    """
    fig, axes = _grid(len(curves))
    variants = list(dict.fromkeys(v for per_task in curves.values() for v in per_task))
    colors = {v: f"C{i % 10}" for i, v in enumerate(variants)}
    for ax, (task, per_task) in zip(axes, curves.items(), strict=True):
        drawn: list[np.ndarray] = []
        skipped = 0
        for variant, table in per_task.items():
            missing = [c for c in CALIBRATION_COLUMNS if c not in table.columns]
            if missing:
                raise ValueError(f"calibration curve {task}/{variant} lacks columns {missing}")
            pred = table["mean_pred"].to_numpy(dtype=np.float64)
            observed = table["observed_rate"].to_numpy(dtype=np.float64)
            keep = observed > 0
            skipped += int((~keep).sum())
            x = np.maximum(pred[keep], LOG_FLOOR)
            y = np.maximum(observed[keep], LOG_FLOOR)
            ax.plot(x, y, marker="o", markersize=4, color=colors[variant], label=variant)
            drawn.extend((x, y))
        values = np.concatenate(drawn) if drawn else np.empty(0)
        lo = max(values.min() / 2, LOG_FLOOR) if values.size else LOG_FLOOR
        hi = min(values.max() * 2, 1.5) if values.size else 1.0  # room for markers at 1
        ax.plot([lo, hi], [lo, hi], linestyle="--", color="0.5", linewidth=1, label="y = x")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_title(task)
        ax.set_xlabel("mean predicted")
        ax.set_ylabel("observed rate")
        if skipped:
            ax.text(
                0.98,
                0.02,
                f"{skipped} bin(s) with observed rate 0 not shown",
                transform=ax.transAxes,
                ha="right",
                va="bottom",
                fontsize="x-small",
                color="0.4",
            )
    axes[0].legend(fontsize="small", loc="upper left")
    return fig


def top_features(importance: pd.DataFrame, top: int = 20) -> pd.DataFrame:
    """Gain share as a feature x task table: the `top` features by mean share across tasks.

    A feature a task never split on counts as 0 for that task. Rows are sorted by mean share,
    descending (ties by name); columns are the tasks in order of first appearance.
    """
    missing = [c for c in IMPORTANCE_COLUMNS if c not in importance.columns]
    if missing:
        raise ValueError(
            f"importance lacks columns {missing}; expected long form with {IMPORTANCE_COLUMNS}"
        )
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    if importance.empty:
        raise ValueError("importance has no rows")
    tasks = list(pd.unique(importance["task"]))
    table = importance.pivot_table(
        index="feature", columns="task", values="gain_share", aggfunc="sum", fill_value=0.0
    )[tasks]
    order = (
        table.mean(axis=1)
        .rename("mean")
        .reset_index()
        .sort_values(["mean", "feature"], ascending=[False, True], kind="mergesort")
    )
    return table.loc[order["feature"].head(top)]


def importance_figure(importance: pd.DataFrame, top: int = 20) -> Figure:
    """Heatmap of gain share for the `top` features by mean share across tasks.

    `importance` is long form: task, feature, gain_share (gain / total gain of the task). Rows
    are features (largest mean share on top), columns tasks; the height grows with the rows.
    """
    table = top_features(importance, top)
    n_rows, n_cols = table.shape
    fig = Figure(
        figsize=(max(4.0, 1.0 * n_cols + 3.5), max(2.5, 0.28 * n_rows + 1.4)),
        layout="constrained",
    )
    ax = fig.subplots()
    image = ax.imshow(table.to_numpy(dtype=np.float64), aspect="auto", cmap="viridis")
    ax.set_yticks(np.arange(n_rows), labels=[str(f) for f in table.index])
    ax.set_xticks(np.arange(n_cols), labels=[str(t) for t in table.columns])
    ax.tick_params(axis="x", labelrotation=45)
    ax.set_title(f"gain share, top {n_rows} features")
    fig.colorbar(image, ax=ax, label="gain share")
    return fig


def learning_curves_figure(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    best_iteration: Mapping[str, int],
    metric: Mapping[str, str],
) -> Figure:
    """Metric per boosting iteration for each dataset, one panel per task.

    `curves[task][dataset]` holds the values for iterations 1..n; `best_iteration[task]`
    (1-based) is marked with a dotted vertical line and `metric[task]` labels the y axis.
    """
    lacking = [t for t in curves if t not in best_iteration or t not in metric]
    if lacking:
        raise ValueError(f"best_iteration and metric must name every task; missing for {lacking}")
    fig, axes = _grid(len(curves))
    for ax, (task, per_dataset) in zip(axes, curves.items(), strict=True):
        for dataset, values in per_dataset.items():
            y = np.asarray(values, dtype=np.float64)
            ax.plot(np.arange(1, y.size + 1), y, label=dataset)
        best = best_iteration[task]
        ax.axvline(best, linestyle=":", color="0.3", label=f"best = {best}")
        ax.set_title(task)
        ax.set_xlabel("iteration")
        ax.set_ylabel(metric[task])
        ax.legend(fontsize="small")
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG at DPI to `path` (its folder must exist); returns `path`."""
    fig.savefig(path, dpi=DPI, format="png")
    return path


def cohort_figure(table: pd.DataFrame, title: str) -> Figure:
    """AUC per cohort, one panel per task, a bar per scorer; each cohort's share of the
    impressions under its name. `table` is a models.evaluation.gap.cohort_table (auc_<scorer>
    columns)."""
    missing = [c for c in ("cohort", "task", "share") if c not in table.columns]
    if missing:
        raise ValueError(f"cohort table lacks columns {missing}")
    scorers = [c.removeprefix("auc_") for c in table.columns if c.startswith("auc_")]
    if not scorers:
        raise ValueError("cohort table has no auc_<scorer> column")
    tasks = list(pd.unique(table["task"]))
    fig, axes = _grid(len(tasks))
    width = 0.8 / len(scorers)
    for ax, task in zip(axes, tasks, strict=True):
        rows = table[table["task"] == task]
        x = np.arange(len(rows))
        for i, scorer in enumerate(scorers):
            auc = rows[f"auc_{scorer}"].to_numpy(dtype=np.float64)
            ax.bar(x + (i - (len(scorers) - 1) / 2) * width, auc, width, label=scorer)
        names = [f"{c}\n{s:.0%}" for c, s in zip(rows["cohort"], rows["share"], strict=True)]
        ax.set_xticks(x, labels=names, fontsize="small")
        low = np.nanmin(rows[[f"auc_{s}" for s in scorers]].to_numpy(dtype=np.float64))
        ax.set_ylim(min(0.4, low - 0.05) if np.isfinite(low) else 0.4, 1.0)
        ax.axhline(0.5, linestyle=":", color="0.5", linewidth=1)
        ax.set_title(f"{task}: {title}", fontsize="small")
        ax.set_ylabel("AUC")
    axes[0].legend(fontsize="small", loc="upper left")
    return fig
