"""Where a ranker's AUC gap to the oracle comes from, on one day of logged impressions.

Every number uses the labels and impressions models.evaluation.evaluate uses (label_<action> of
gold.training_examples; probabilities where the logging policy showed the post), and every
scorer is a frame with one p_<action> column per task, row-aligned with the labels.

* `auc_table`: the AUC of several scorers per task (the oracle, the oracle with latents hidden
  by simulator.ablation, a ranker) and each one's shortfall from the first scorer's;
* `history_interests`: each viewer's topic interests estimated from the topics of the posts
  they engaged with, to ask the oracle what such an estimate is worth (simulator.ablation);
* `cohort_table`: per cohort of impressions (e.g. `history_bucket` of the viewer's earlier
  impressions), its share of the day, its positives, each scorer's AUC and the ranker's gap
  to the oracle, with a percentile bootstrap interval over users: a user's impressions are
  not independent draws, so users are resampled, with all their rows, within the cohort.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from models.evaluation import metrics as M
from models.evaluation.markdown import markdown
from warehouse.catalog import CLICK, label_column, truth_column

GAP_TASKS = (CLICK, "hide", "report")  # the actions the targets name
HISTORY_EDGES = (0, 20, 100)  # cohorts 0, 1-20, 21-100, >100 earlier impressions
ALL = "all"  # the cohort of every impression
LEVEL = 0.9  # coverage of the gap's bootstrap interval
# Fewer positives than this in a cohort and its AUCs say nothing: they are left empty (NaN).
MIN_POSITIVES = 10
MODEL, ORACLE = "model", "oracle"  # the two scorers a cohort table's gap compares
# Pseudo-engagements of the population's topic mix added to each viewer's own: the prior's
# weight in history_interests (the simulator's interests are Dirichlet with about this
# concentration; 1 and 20 rank a little worse on the demo).
HISTORY_CONCENTRATION = 5.0


def history_bucket(counts: np.ndarray, edges: Sequence[int] = HISTORY_EDGES) -> pd.Categorical:
    """Each count's cohort: "0" when edges start at 0, then "a-b" up to each edge, ">last"."""
    edges = [int(e) for e in edges]
    if not edges or edges[0] < 0 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(f"edges must be increasing and non-negative, got {edges}")
    counts = np.asarray(counts)
    if (counts < 0).any():
        raise ValueError("counts must be non-negative")
    lows = [0, *(e + 1 for e in edges)]
    names = [_span(lo, hi) for lo, hi in zip(lows, edges, strict=False)] + [f">{edges[-1]}"]
    index = np.searchsorted(np.asarray(edges), counts, side="left")  # count <= edge: that bucket
    return pd.Categorical.from_codes(index, categories=names, ordered=True)


def history_interests(
    user: np.ndarray,
    topic: np.ndarray,
    n_users: int,
    n_topics: int,
    concentration: float = HISTORY_CONCENTRATION,
) -> np.ndarray:
    """(n_users, n_topics) estimate of each user's interest in each topic, rows summing to 1,
    from one (user, topic) row per post the user engaged with: the posterior mean of a
    Dirichlet whose prior is `concentration` pseudo-engagements spread like everyone's."""
    user, topic = np.asarray(user, dtype=np.int64), np.asarray(topic, dtype=np.int64)
    if len(user) != len(topic):
        raise ValueError("user and topic must have one entry per engagement")
    if len(user) and (user.min() < 0 or user.max() >= n_users):
        raise ValueError(f"user ids must be in 0..{n_users - 1}")
    if len(topic) and (topic.min() < 0 or topic.max() >= n_topics):
        raise ValueError(f"topics must be in 0..{n_topics - 1}")
    if concentration <= 0:
        raise ValueError(f"concentration must be positive, got {concentration}")
    counts = np.zeros((n_users, n_topics))
    np.add.at(counts, (user, topic), 1.0)
    total = counts.sum(axis=0)
    prior = total / total.sum() if total.sum() else np.full(n_topics, 1.0 / n_topics)
    est = counts + concentration * prior
    return est / est.sum(axis=1, keepdims=True)


def _span(lo: int, hi: int) -> str:
    return str(hi) if lo == hi else f"{lo}-{hi}"


def auc_table(
    labels: pd.DataFrame,
    scorers: Mapping[str, pd.DataFrame],
    tasks: Sequence[str] = GAP_TASKS,
) -> pd.DataFrame:
    """One row per scorer: auc_<task>, and loss_<task>, the first scorer's AUC minus its own."""
    aucs = {
        name: {t: M.auc(labels[label_column(t)], p[truth_column(t)]) for t in tasks}
        for name, p in scorers.items()
    }
    reference = next(iter(aucs.values()))
    rows = []
    for name, per_task in aucs.items():
        row = {"scorer": name}
        row |= {f"auc_{t}": per_task[t] for t in tasks}
        row |= {f"loss_{t}": reference[t] - per_task[t] for t in tasks}
        rows.append(row)
    return pd.DataFrame(rows)


def cohort_table(
    labels: pd.DataFrame,
    scorers: Mapping[str, pd.DataFrame],
    cohort: pd.Categorical,
    users: np.ndarray,
    tasks: Sequence[str] = GAP_TASKS,
    *,
    n_boot: int = 200,
    level: float = LEVEL,
    seed: int = 0,
    min_positives: int = MIN_POSITIVES,
) -> pd.DataFrame:
    """One row per (cohort, task), the whole day (`ALL`) first: share of impressions, n,
    positives, auc_<scorer> of each scorer, gap (the oracle's AUC minus the model's; `scorers`
    must hold MODEL and ORACLE) and its `level` bootstrap interval over `users`; AUCs, gap
    and interval are NaN where the cohort has fewer than `min_positives` positives."""
    missing = {MODEL, ORACLE} - set(scorers)
    if missing:
        raise ValueError(f"scorers lack {sorted(missing)}")
    n = len(labels)
    if not (len(cohort) == len(users) == n and all(len(p) == n for p in scorers.values())):
        raise ValueError("labels, scorers, cohort and users must have one row per impression")
    codes = np.asarray(pd.Categorical(cohort).codes)
    parts = [(ALL, np.arange(n))]
    parts += [(str(c), np.flatnonzero(codes == i)) for i, c in enumerate(cohort.categories)]
    rows = []
    for part, (name, rows_in) in enumerate(parts):
        r = np.random.default_rng([seed, part])  # each cohort its own draws
        draws = _user_draws(users[rows_in], n_boot, r)
        for t in tasks:
            y = labels[label_column(t)].to_numpy()[rows_in]
            p = {s: f[truth_column(t)].to_numpy()[rows_in] for s, f in scorers.items()}
            row = {"cohort": name, "task": t, "share": len(rows_in) / n, "n": len(rows_in)}
            row["positives"] = int(y.sum())
            enough = row["positives"] >= min_positives
            row |= {f"auc_{s}": M.auc(y, p[s]) if enough else np.nan for s in scorers}
            row["gap"] = row[f"auc_{ORACLE}"] - row[f"auc_{MODEL}"]
            interval = _interval(y, p[MODEL], p[ORACLE], draws, level) if enough else None
            row["gap_lo"], row["gap_hi"] = interval or (np.nan, np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def _user_draws(users: np.ndarray, n_boot: int, r: np.random.Generator) -> list[np.ndarray]:
    """Row indices of `n_boot` resamples of the users (with replacement), each with every one
    of its rows."""
    if len(users) == 0:
        return []
    codes, uniques = pd.factorize(users)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(uniques))
    starts = np.cumsum(counts) - counts
    out = []
    for _ in range(n_boot):
        pick = r.integers(0, len(uniques), len(uniques))
        size = counts[pick]
        offset = np.repeat(starts[pick] - (np.cumsum(size) - size), size)
        out.append(order[np.arange(size.sum()) + offset])
    return out


def _interval(y, p_model, p_oracle, draws, level: float) -> tuple[float, float]:
    """Percentile interval of the oracle's AUC minus the model's over the draws (NaN when
    fewer than half the draws have both classes)."""
    gaps = np.array([M.auc(y[d], p_oracle[d]) - M.auc(y[d], p_model[d]) for d in draws])
    gaps = gaps[np.isfinite(gaps)]
    if len(gaps) < max(1, len(draws) // 2):
        return np.nan, np.nan
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(gaps, [tail, 100 - tail])
    return float(lo), float(hi)


def format_report(
    title: str,
    ablation: pd.DataFrame,
    cohorts: Mapping[str, pd.DataFrame],
    figures: Mapping[str, str],
    n_boot: int,
    notes: Sequence[str] = (),
) -> str:
    """Markdown: the ablation table, then each cohort table (rows grouped by task) under its
    figure (`figures`: cohort name -> file name beside the report), then `notes`."""
    lines = [
        f"# {title}",
        "",
        "AUC against the logged labels of the day's impressions (gold.training_examples), "
        "every scorer at the logged position. `oracle`: the simulator's true probabilities; "
        "`oracle - X`: the true model with latent X replaced by what is known without it "
        "(simulator.ablation: interests, user bias and author quality by their population "
        "means, clickbait by the mixture over its prior); `loss_<task>`: the oracle's AUC "
        "minus the row's.",
        "",
        "## Oracle ablation",
        "",
        markdown(ablation),
    ]
    for name, table in cohorts.items():
        tasks = list(pd.unique(table["task"]))
        by_task = table.sort_values(
            "task", key=lambda s: s.map(tasks.index), kind="stable", ignore_index=True
        )
        lines += ["", f"## Cohorts: {name}", ""]
        if name in figures:
            lines += [f"![{name}]({figures[name]})", ""]
        lines.append(markdown(by_task))
    lines += [
        "",
        f"`gap`: the oracle's AUC minus the model's; [gap_lo, gap_hi]: its {LEVEL:.0%} percentile "
        f"interval over {n_boot} bootstrap resamples of the cohort's users. `share`: the "
        f"cohort's share of the day's impressions. AUCs of a cohort with fewer than "
        f"{MIN_POSITIVES} positives are left empty.",
    ]
    for note in notes:
        lines += ["", note]
    return "\n".join(lines)
