"""The rankers' evaluation as Markdown: the report of a training run, and a compact summary.

`format_report` renders the tables of each split's Evaluation (test first); `kinds_summary`
reads several ranker kinds' logged metrics back (`<split>/<scorer>/<task>/<metric>`,
models.evaluation.evaluate) into one table, the kinds side by side, for a terminal. Figures are
linked
by their run-artifact names, which are also their names beside the report (models.registry.runs
saves them both ways). `to_html` renders any report as one self-contained HTML page, its
figures embedded, which MLflow's artifact view shows as a page (it shows Markdown as text).
"""

from __future__ import annotations

import base64
import html
import itertools
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from markdown_it import MarkdownIt

from models.evaluation.evaluate import (
    BASELINES,
    CONSTANT,
    MODEL,
    ORACLE,
    VALUE,
    Evaluation,
    best_baseline,
    metric_name,
    mind_table,
    summary_table,
)
from models.evaluation.markdown import markdown
from models.evaluation.metrics import MIND_METRICS
from models.ranking.base import DWELL
from warehouse.catalog import ACTIONS, CLICK
from warehouse.layout import Folder

# (alt text, run-artifact name) of the figures a report links; a run without one (an averaged
# ensemble has no learning curves, only a GBDT has gain importance) links the others.
FIGURES = (
    ("calibration, test", "calibration/test.png"),
    ("importance", "importance/gain.png"),
    ("learning curves", "learning_curves.png"),
)


def format_report(
    title: str,
    run_id: str,
    split: Mapping[str, Sequence[str]],
    negative_rate: float,
    evaluations: Mapping[str, Evaluation],
    figures: Collection[str] | None = None,
) -> str:
    """Markdown: per task on test, model against oracle and baselines; the value ranking,
    the MIND protocol with its intervals, and dwell (when some click has one: MIND has none);
    then the same for validation. `figures`: the artifact names the run holds (None: every
    one of FIGURES); the calibration plot is logged with the report, so always there."""
    shown = [
        f"![{alt}]({name})"
        for alt, name in FIGURES
        if figures is None or name in figures or name.startswith("calibration/")
    ]
    train = split["train"]
    lines = [
        f"# {title}",
        "",
        f"MLflow run `{run_id}`. Days: train {train[0]}..{train[-1]} ({len(train)}), "
        f"validation {', '.join(split['val'])}, test {', '.join(split['test'])}. "
        f"Negatives kept at {negative_rate}.",
        "",
        " ".join(shown),
    ]
    for name in ("test", "val"):
        ev = evaluations[name]
        lines += ["", f"## {name}: per task", "", markdown(summary_table(ev))]
        lines += ["", f"## {name}: value ranking per request", "", markdown(ev.ranking)]
        if not ev.mind.empty:
            lines += ["", f"## {name}: MIND protocol (clicks per request)", "", MIND_NOTE]
            lines += ["", markdown(mind_table(ev))]
        if not ev.dwell.empty:
            lines += ["", f"## {name}: dwell on clicks (s)", "", markdown(ev.dwell)]
    return "\n".join(lines) + "\n"


MIND_NOTE = (
    "Group AUC, MRR, nDCG@5 and nDCG@10 of the clicks of each request, averaged over the "
    "requests with a click and a non-click, as Microsoft's MIND evaluation computes them; "
    "[lo, hi]: the bootstrap interval over requests."
)


def kinds_summary(metrics: Mapping[str, Mapping[str, float]], split: str, k: int) -> str:
    """Markdown: the logged metrics of several ranker kinds' runs (`metrics[kind]`) side by
    side on one split: per task AUC and NCE, the value ranking's NDCG@k and MAP@k, dwell
    MAE; with the oracle's and the best baseline's where they exist."""
    first = next(iter(metrics.values()))

    def get(m: Mapping[str, float], scorer: str, task: str, metric: str) -> float:
        return m.get(metric_name(split, scorer, task, metric), np.nan)

    def shown(m: Mapping[str, float], scorer: str, task: str, metric: str) -> float | str:
        """The value, with its interval "[lo, hi]" where one is logged."""
        value = get(m, scorer, task, metric)
        lo, hi = get(m, scorer, task, f"{metric}_lo"), get(m, scorer, task, f"{metric}_hi")
        if np.isnan(value) or np.isnan(lo) or np.isnan(hi):
            return value
        return f"{value:.4g} [{lo:.4g}, {hi:.4g}]"

    logged = [
        t
        for t in ACTIONS
        if any(n.startswith(metric_name(split, MODEL, t, "")) for m in metrics.values() for n in m)
    ]
    rows = [(t, metric) for t in logged for metric in ("auc", "nce")]
    rows += [(VALUE, f"ndcg_at_{k}"), (VALUE, f"map_at_{k}")]
    if any(metric_name(split, MODEL, CLICK, "group_auc") in m for m in metrics.values()):
        rows += [(CLICK, f"mind_{metric}") for metric in MIND_METRICS]
    rows += [(DWELL, "mae")]
    table = []
    for task, label in rows:
        metric = label.removeprefix("mind_")  # the MIND rows' metric names under click
        row = {"task": task, "metric": label}
        row |= {kind: shown(m, MODEL, task, metric) for kind, m in metrics.items()}
        row["oracle"] = get(first, ORACLE, task, metric)
        if metric != "nce":
            scorers = (CONSTANT,) if task == DWELL else tuple(BASELINES)
            named = {b: get(first, b, task, metric) for b in scorers}
            if task == DWELL:  # lower is better: the constant guess is the only one
                name, value = CONSTANT, named[CONSTANT]
            else:
                name, value = best_baseline(named)
            row["best baseline"] = "" if np.isnan(value) else f"{name} {value:.4g}"
        else:
            row["best baseline"] = ""
        table.append(row)
    frame = pd.DataFrame(table)
    if frame.loc[frame["task"] == DWELL, list(metrics)].isna().all(axis=None):
        frame = frame[frame["task"] != DWELL]  # a log without dwell (MIND): no empty row
    if frame["oracle"].isna().all():  # a real log: no truth, no oracle column
        frame = frame.drop(columns=["oracle"])
    return markdown(frame)


_STYLE = """
body { font-family: sans-serif; max-width: 72em; margin: 1em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 48%; margin: 0.2em; vertical-align: top; }
"""


def to_html(report: str, figures: Folder) -> str:
    """The Markdown report as one HTML page: each image it links by a name in `figures` (the
    report's folder) embedded as a base64 PNG, and every other PNG in `figures` shown after
    the report, so a report that logs figures without linking them shows them too. Raw HTML
    in the Markdown is escaped, not passed through."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(report)
    linked = set()
    for token in tokens:
        for child in token.children or ():
            if child.type == "image":
                path = figures.file(str(child.attrGet("src")))
                if path.is_file():
                    child.attrSet("src", _data_uri(path))
                    linked.add(path.resolve())
    body = md.renderer.render(tokens, md.options, {})
    rest = [p for p in sorted(figures.path.rglob("*.png")) if p.resolve() not in linked]
    if rest:
        body += "<h2>Figures</h2>\n" + "\n".join(
            f'<img alt="{html.escape(str(p.relative_to(figures.path)))}" src="{_data_uri(p)}">'
            for p in rest
        )
    headings = (n.content for t, n in itertools.pairwise(tokens) if t.type == "heading_open")
    title = next(headings, "report")
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
