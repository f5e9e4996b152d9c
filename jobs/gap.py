"""Where a ranker's AUC gap to the oracle comes from, on one day of the simulated log.

    feedrank gap --profile demo --ds 2026-01-18 --ranker-folder DIR

1. Oracle ablation: on ds's logged impressions, the AUC per task of the oracle, of the oracle
   with each trait the logs never show hidden (simulator.ablation), with all of them hidden,
   with the viewers' interests estimated from their engagements before ds
   (models.evaluation.gap.history_interests: what the logs reveal of the largest latent), and of the
   ranker: what each latent is worth, and where the ranker stands among them.
2. Cohorts: the ranker's gap to the oracle by how many impressions the viewer, the post and
   the author had before ds (raw logs), and by the post's impressions as the ranker saw them
   when it was served (post_impression_7d), each cohort with its share of the day and a
   bootstrap interval over users.
Rows, labels and the ranker's probabilities are models.evaluation.evaluate's
(gold.training_examples of
ds, scored at the logged position); the oracle is recomputed from the world and checked
against the truth layer. The report goes to reports/gap/<ds>/<kind>/ under the data root.
Reads Parquet through the warehouse; no Spark.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from features import registry as R
from jobs.common import check_day, log_settings
from jobs.reading import prior_engagements, world
from jobs.settings import Settings
from models.evaluation import gap
from models.evaluation.plots import cohort_figure, save_figure
from models.ranking.base import RankerLike
from models.ranking.dataset import load_examples, with_truth
from models.ranking.load import load_ranker_folder
from simulator import ablation as ab
from simulator.behaviour import true_model
from simulator.oracle import ORACLE_COLUMNS, oracle_exposure, truth_frame
from warehouse.catalog import ENGAGEMENTS, IMPRESSIONS, POSITIVE_ACTIONS, POSTS, C
from warehouse.layout import Folder
from warehouse.store import Warehouse

log = logging.getLogger(__name__)

JOB = "gap"
# Oracle variants the cohort tables show beside the oracle: every latent hidden, and the
# viewers' interests estimated from their history.
BLIND, HISTORY = "oracle_blind", "oracle_history"
ESTIMATED = "oracle, user interests estimated from the viewer's engagements"
# Oracle variants of the ablation table: the latents each one hides.
VARIANTS: dict[str, tuple[str, ...]] = {
    gap.ORACLE: (),
    "oracle - post's clickbait draw (author's rate known)": (ab.POST_CLICKBAIT,),
    "oracle - clickbait (population prior)": (ab.CLICKBAIT,),
    "oracle - user bias": (ab.USER_BIAS,),
    "oracle - user interests": (ab.INTERESTS,),
    ESTIMATED: (),  # interests estimated from the viewer's history (in oracle_variants)
    "oracle - author quality": (ab.QUALITY,),
    "oracle - all four latents": ab.ALL_HIDDEN,
}
# Cohorts: (what is counted, its bucket edges); authors see far more impressions than posts.
POST_SEEN = R.post_count(R.IMPRESSION, "7d")
COHORTS = {
    "viewer's impressions before ds": (C.USER_ID, (*gap.HISTORY_EDGES, 200)),
    "post's impressions before ds": (C.POST_ID, gap.HISTORY_EDGES),
    "post's impressions when served (post_impression_7d)": (POST_SEEN, gap.HISTORY_EDGES),
    "author's impressions before ds": (C.AUTHOR_ID, (0, 100, 1000)),
}
_NOTE = (
    f"Cohort tables: `{BLIND}` is `oracle - all four latents`, `{HISTORY}` is `{ESTIMATED}` "
    "(the Dirichlet posterior mean of the topics of the posts each viewer clicked, liked, "
    "commented or shared before ds, with the population's mix as prior; "
    "models.evaluation.gap.history_interests), every other latent exact."
)
_LOGGED = [C.IMPRESSION_ID, C.USER_ID, C.POST_ID, C.AUTHOR_ID, C.SERVED_AT, C.DEVICE]


@dataclasses.dataclass(frozen=True)
class GapReport:
    ablation: pd.DataFrame  # models.evaluation.gap.auc_table of the oracle variants and the ranker
    cohorts: dict[str, pd.DataFrame]  # cohort name -> models.evaluation.gap.cohort_table
    report: Path  # the Markdown report


def run(settings: Settings, ds: str, ranker_folder: Folder, *, n_boot: int = 200) -> GapReport:
    """Both analyses of ds for the ranker saved in `ranker_folder`; writes the report."""
    check_day(settings, ds)
    if not settings.has_truth:
        raise ValueError("the gap to the oracle needs the simulator's truth; a real log has none")
    ranker = load_ranker_folder(ranker_folder)
    log_settings(JOB, settings, ds)
    store = settings.open_warehouse()
    tasks = tuple(t for t in gap.GAP_TASKS if t not in ranker.absent)
    rows, predicted = _test_day(store, ranker, ds)
    variants = oracle_variants(settings, store, ds, rows)
    model_name = f"{gap.MODEL} ({ranker.kind})"
    ablation = gap.auc_table(rows, {**variants, model_name: predicted}, tasks)
    scorers = {gap.MODEL: predicted, gap.ORACLE: variants[gap.ORACLE]}
    scorers |= {BLIND: variants["oracle - all four latents"], HISTORY: variants[ESTIMATED]}
    users = rows[C.USER_ID].to_numpy()
    cohorts = {
        name: gap.cohort_table(
            rows, scorers, cohort, users, tasks, n_boot=n_boot, seed=settings.simulator.seed
        )
        for name, cohort in cohort_columns(store, ds, rows).items()
    }
    folder = settings.root.report_folder(JOB, ds).sub(ranker.kind)
    figures = {}
    for i, (name, table) in enumerate(cohorts.items()):
        figures[name] = f"cohorts_{i}.png"
        save_figure(cohort_figure(table, name), folder.writable(figures[name]))
    title = f"Gap to the oracle ({ranker.kind}, {ranker_folder}), profile {settings.profile}, {ds}"
    text = gap.format_report(title, ablation, cohorts, figures, n_boot, [_NOTE])
    report = folder.writable("report.md")
    report.write_text(text + "\n")
    log.info("gap report: %s", report)
    return GapReport(ablation, cohorts, report)


def _test_day(store: Warehouse, ranker: RankerLike, ds: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The evaluation rows of ds (labels, truth, the logged pairs, post_impression_7d) and the
    ranker's probabilities at the logged position, as models.evaluation.evaluate.evaluate_days has
    them."""
    examples, info = load_examples(store, [ds])
    frame = with_truth(store, info, [ds])
    imps = store.read_pandas(IMPRESSIONS, ds, columns=_LOGGED)
    frame = frame.merge(imps, on=C.IMPRESSION_ID, how="left", validate="one_to_one")
    if frame[C.SERVED_AT].isna().any():
        raise ValueError(f"ds={ds}: training examples without a logged impression")
    frame[POST_SEEN] = examples.X[POST_SEEN].to_numpy()
    return frame, ranker.predict(examples.X, logged_bias=True)


def oracle_variants(
    settings: Settings, store: Warehouse, ds: str, rows: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Each of VARIANTS' probabilities for the rows' logged impressions; raises unless the
    oracle hiding nothing gives back the truth layer (the same world and settings)."""
    sim = settings.simulator
    prior = prior_engagements(store, sim, ds)
    # The rows are training examples (negatives downsampled): a session's fatigue counts every
    # impression of it, so the exposures are computed over the day's whole log, then taken.
    logged = store.read_pandas(IMPRESSIONS, ds, columns=[*_LOGGED, C.REQUEST_ID, C.POSITION])
    day = oracle_exposure(
        world(sim),
        sim,
        logged,
        prior,
        position=logged[C.POSITION].to_numpy(),
        session=logged[C.REQUEST_ID].to_numpy(),
    )
    at = pd.Index(logged[C.IMPRESSION_ID]).get_indexer(rows[C.IMPRESSION_ID])
    if (at < 0).any():
        raise ValueError(f"ds={ds}: evaluation rows without a logged impression")
    x = day.take(at)
    estimated = ab.with_latents(world(sim), interests=_history_interests(settings, store, ds))
    out = {}
    for name, hidden in VARIANTS.items():
        if name == ESTIMATED:
            truth = true_model(estimated, sim, x)
        else:
            truth = ab.ablated_truth(world(sim), sim, x, hidden)
        out[name] = truth_frame(truth, rows.index)
    logged = rows[list(ORACLE_COLUMNS)].to_numpy()
    if not np.allclose(out[gap.ORACLE].to_numpy(), logged, rtol=1e-9, atol=0):
        raise ValueError(
            f"ds={ds}: the recomputed oracle differs from the truth layer; the data root was "
            "simulated with other settings (profile, seed) than these"
        )
    return out


def _history_interests(settings: Settings, store: Warehouse, ds: str) -> np.ndarray:
    """Every user's interests as the logs before ds show them: the topics of the posts each
    engaged with positively (models.evaluation.gap.history_interests)."""
    days = [d for d in store.partitions(ENGAGEMENTS) if d < ds]
    sim = settings.simulator
    if not days:
        return gap.history_interests(np.zeros(0), np.zeros(0), sim.n_users, sim.n_topics)
    eng = store.read_pandas(ENGAGEMENTS, days, columns=[C.USER_ID, C.POST_ID, C.ACTION])
    engaged = eng.loc[eng[C.ACTION].isin(POSITIVE_ACTIONS), [C.USER_ID, C.POST_ID]]
    post_days = [d for d in store.partitions(POSTS) if d < ds]
    posts = store.read_pandas(POSTS, post_days, columns=[C.POST_ID, C.TOPIC])
    engaged = engaged.drop_duplicates().merge(posts, on=C.POST_ID)
    user, topic = engaged[C.USER_ID].to_numpy(), engaged[C.TOPIC].to_numpy()
    return gap.history_interests(user, topic, sim.n_users, sim.n_topics)


def cohort_columns(store: Warehouse, ds: str, rows: pd.DataFrame) -> dict[str, pd.Categorical]:
    """COHORTS' cohort of each row: counts of impressions before ds from the raw logs, or the
    row's own column."""
    days = [d for d in store.partitions(IMPRESSIONS) if d < ds]
    keys = [C.USER_ID, C.POST_ID, C.AUTHOR_ID]
    before = store.read_pandas(IMPRESSIONS, days, columns=keys) if days else None
    out = {}
    for name, (column, edges) in COHORTS.items():
        if column in keys:
            counts = before[column].value_counts() if before is not None else pd.Series()
            values = rows[column].map(counts).fillna(0).to_numpy()
        else:
            values = rows[column].fillna(0).to_numpy()
        out[name] = gap.history_bucket(values, edges)
    return out
