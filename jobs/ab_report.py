"""The closed loop's A/B report: treatment (ranked feeds) against control (chronological).

    spark-submit jobs/ab_report.py --ds 2026-01-19 --profile demo

For a closed-loop day ds (simulator.serving.loop_days), from the committed raw logs:
1. per bucket, each loop day up to ds and pooled over them: weighted engagement per active
   user (the value model's weights), CTR and each action's rate, the negative-action rate,
   dwell per session and sessions per user; the lift with its bootstrap interval over users
   and a p-value (models.evaluation.ab);
2. the same comparison on the days before the loop (an A/A test of the same split: both
   buckets chronological), which must find nothing;
3. the ceiling: the offline feed quality of the feeds that served the loop's first day, on
   that day (the oracle's top-10 value of the same candidates against our feed's and the
   chronological order's), evaluated now that the day is simulated (jobs.precompute_feeds);
4. off-policy: how much of what treatment served the chronological policy could have shown
   at all (the support an IPS estimate from its logs needs before a test), and a SNIPS
   estimate, from treatment's logged propensities, of the ranked policy without exploration;
5. what each serving rule is worth: treatment's expected value per user (the simulator's
   truth) as served and re-simulated without fresh blending and without exploration.
Logged to MLflow (ab/<metric>/lift, ci_low, ci_high, p_value; plots) and written as
reports/ab_report/<ds>/report.md under the data root.
"""

from __future__ import annotations

import logging
import sys
import time

import mlflow
import numpy as np
import pandas as pd

from jobs import reading
from jobs.common import (
    AB_REPORT,
    check_day,
    days_before,
    log_settings,
    run_job,
    shift_ds,
    use_tracking,
)
from jobs.settings import Settings
from models.evaluation import ab as ab
from models.evaluation.markdown import markdown as md_table
from models.feed import quality as fq
from models.registry.runs import log_figure, log_report
from models.registry.tags import AB_STAGE, DS_TAG, PROFILE_TAG, STAGE_TAG
from models.value import realised_value, value_score
from simulator import simulate_day
from simulator.closed_loop import TREATMENT
from warehouse.catalog import (
    ACTIONS,
    CHRONOLOGICAL,
    CLICK,
    ENGAGEMENTS,
    IMPRESSIONS,
    RANKED,
    TRUTH_IMPRESSIONS,
    C,
    truth_column,
)
from warehouse.store import Warehouse, WarehouseError

log = logging.getLogger(__name__)
JOB = AB_REPORT
AA = "A/A"  # the label of the pre-period rows
_IMPRESSION_COLUMNS = [
    C.IMPRESSION_ID,
    C.REQUEST_ID,
    C.USER_ID,
    C.POST_ID,
    C.AUTHOR_ID,
    C.SOURCE,
    C.BUCKET,
    C.POLICY,
    C.PROPENSITY,
    C.POSITION,
]


def run(
    settings: Settings, ds: str, feed_quality: dict[str, float] | None = None
) -> dict[str, float]:
    """The report of the loop days up to ds; returns the MLflow metrics it logged.

    `feed_quality`: the offline evaluation of the feeds that served the first loop day, on
    that day (jobs/evaluate_feeds.py of `feeds_day(settings)`, which the DAG runs first);
    the report says when there is none."""
    check_day(settings, ds)
    sim = settings.simulator
    loop = loop_days(settings)
    if ds not in loop:
        raise ValueError(
            f"ds={ds} is not a closed-loop day of profile {settings.profile!r} "
            f"(serving.loop_days = {sim.serving.loop_days}: {loop or 'none'})"
        )
    log_settings(JOB, settings, ds)
    started = time.perf_counter()
    store = settings.open_warehouse()
    days = [d for d in loop if d <= ds]
    before = days_before(sim.start_date, loop[0], len(days))  # as many days, just before
    weights = settings.training.value
    imps, eng = _logs(store, days), _engagements(store, days)
    users = ab.user_metrics(imps, eng, weights)
    table = ab.compare(users, n_boot=sim.serving.report_boot, seed=sim.seed)
    aa_imps = _logs(store, before)
    aa_table = ab.compare(
        ab.user_metrics(aa_imps, _engagements(store, before), weights),
        n_boot=sim.serving.report_boot,
        seed=sim.seed,
    )
    support = _support(settings, imps, store, days)
    variants = _variants(settings, store, ds)
    report = _markdown(settings, ds, table, aa_table, feed_quality, support, variants, imps)
    metrics = ab.mlflow_metrics(table)
    metrics |= {f"aa/{k.removeprefix('ab/')}": v for k, v in ab.mlflow_metrics(aa_table).items()}
    metrics |= {f"ab/support/{k}": v for k, v in support.items()}
    metrics |= {f"ab/expected_value_per_user/{_slug(name)}": v for name, v in variants.items()}
    folder = settings.root.report_folder(JOB, ds)
    use_tracking(settings)
    with mlflow.start_run(run_name=f"{JOB} {ds}"):
        mlflow.set_tags({DS_TAG: ds, PROFILE_TAG: settings.profile, STAGE_TAG: AB_STAGE})
        mlflow.log_params({"loop_days": ",".join(days), "aa_days": ",".join(before)})
        mlflow.log_dict(sim.serving.model_dump(mode="json"), "serving_settings.json")
        mlflow.log_metrics(metrics)
        mlflow.log_table(table, "ab/table.json")
        mlflow.log_table(aa_table, "ab/aa_table.json")
        log_figure(ab.daily_lift_figure(table), "ab/daily_lift.png", folder)
        log_figure(ab.action_lift_figure(table), "ab/action_lift.png", folder)
        log_report(report, folder)
    log.info("A/B report ds=%s in %.1fs:\n%s", ds, time.perf_counter() - started, report)
    return metrics


def loop_days(settings: Settings) -> list[str]:
    """The profile's closed-loop days (ds strings)."""
    return [d.isoformat() for d in settings.simulator.loop_dates()]


def _logs(store: Warehouse, days: list[str]) -> pd.DataFrame:
    return store.read_pandas(IMPRESSIONS, days, columns=_IMPRESSION_COLUMNS)


def _engagements(store: Warehouse, days: list[str]) -> pd.DataFrame:
    cols = [C.IMPRESSION_ID, C.ACTION, C.DWELL_S]
    return store.read_pandas(ENGAGEMENTS, days, columns=cols)


def _variants(settings: Settings, store: Warehouse, ds: str) -> dict[str, float]:
    """Expected value per active user of ds (the simulator's truth under the value weights:
    no noise from the drawn actions): control and treatment as served, then treatment as the
    same day re-simulated in memory (same seeds, same feeds) without blending fresh posts and
    without exploration: the effect of each serving rule. Needs the feed store to still serve
    the feeds of ds-1 (not so once a later loop day's feeds are published): else empty."""
    sim = settings.simulator
    imps = store.read_pandas(IMPRESSIONS, ds, columns=[C.IMPRESSION_ID, C.USER_ID, C.BUCKET])
    truth = store.read_pandas(TRUTH_IMPRESSIONS, ds).drop(columns=C.DS)
    out = {
        bucket: _expected_per_user(settings, rows, truth) for bucket, rows in imps.groupby(C.BUCKET)
    }
    rules = {"treatment without fresh blending": {"fresh_every": 0}}
    rules["treatment without exploration"] = {"explore_share": 0.0}
    day = reading.day_index(sim, ds)
    prior = reading.prior_engagements(store, sim, ds)
    try:
        with reading.read_path(settings, ds) as client:
            for name, change in rules.items():
                cfg = sim.model_copy(update={"serving": sim.serving.model_copy(update=change)})
                logs = simulate_day(reading.world(sim), cfg, day, prior, client)
                rows = logs.impressions[logs.impressions[C.BUCKET] == TREATMENT]
                out[name] = _expected_per_user(settings, rows, logs.truth)
    except WarehouseError as err:
        log.info("no counterfactual treatment for ds=%s: %s", ds, err)
    return out


def _expected_per_user(settings: Settings, imps: pd.DataFrame, truth: pd.DataFrame) -> float:
    t = imps[[C.IMPRESSION_ID, C.USER_ID]].merge(truth, on=C.IMPRESSION_ID)
    probs = {a: t[truth_column(a)].to_numpy() for a in ACTIONS}
    dwell = t[truth_column(CLICK)].to_numpy() * t[C.E_DWELL_S].to_numpy()
    value = value_score(probs, dwell, settings.training.value)
    return float(value.sum() / imps[C.USER_ID].nunique())


def _slug(name: str) -> str:
    return name.replace(" ", "_")


def feeds_day(settings: Settings) -> str:
    """The day whose published feeds served the loop's first day (the day before it)."""
    return shift_ds(loop_days(settings)[0], -1)


def _support(
    settings: Settings, imps: pd.DataFrame, store: Warehouse, days: list[str]
) -> dict[str, float]:
    """Off-policy figures: the chronological policy's support of treatment, and SNIPS.

    An IPS estimate of the ranked policy from chronological logs, before a test, needs every
    post treatment shows to be one the chronological policy could show that user: a followee's
    post (its network slots) or a popular post (its popular slots). The share of treatment's
    impressions inside that support is reported, not guessed around.

    What the logged propensities do support is an estimate of the ranked policy without its
    exploration (target: the feed's next post with probability 1, an explored post 0), by
    SNIPS over treatment's impressions, set beside the value treatment measured per impression.
    """
    t = imps[imps[C.POLICY] == RANKED]
    if t.empty:
        return {}
    follows = reading.world(settings.simulator).follows[[C.FOLLOWER_ID, C.FOLLOWEE_ID]]
    edges = pd.MultiIndex.from_frame(follows.rename(columns={C.FOLLOWER_ID: C.USER_ID}))
    pairs = pd.MultiIndex.from_frame(t[[C.USER_ID, C.AUTHOR_ID]].set_axis(edges.names, axis=1))
    network = pairs.isin(edges)
    c = imps[imps[C.POLICY] == CHRONOLOGICAL]
    popular = t[C.POST_ID].isin(c.loc[c[C.SOURCE] == "popular", C.POST_ID]).to_numpy()
    value = _impression_value(settings, t, _engagements(store, days))
    target = (t[C.SOURCE] != "explore").to_numpy(np.float64)
    no_explore = ab.snips(value, target, t[C.PROPENSITY].to_numpy())
    return {
        "treatment_in_network": float(network.mean()),
        "treatment_supported": float((network | popular).mean()),
        "treatment_value_per_impression": float(value.mean()),
        "no_explore_value_per_impression_snips": no_explore.value,
        "no_explore_value_per_impression_se": no_explore.se,
    }


def _impression_value(settings: Settings, imps: pd.DataFrame, eng: pd.DataFrame) -> np.ndarray:
    """The realised value of each impression: the value weights on what the user did."""
    flags = pd.crosstab(eng[C.IMPRESSION_ID], eng[C.ACTION]).clip(upper=1)
    dwell = eng.groupby(C.IMPRESSION_ID)[C.DWELL_S].max()
    labels = pd.DataFrame(index=pd.Index(imps[C.IMPRESSION_ID]))
    for action in ACTIONS:
        col = flags[action] if action in flags else pd.Series(dtype=np.float64)
        labels[action] = col.reindex(labels.index, fill_value=0).to_numpy(np.float64)
    labels[C.DWELL_S] = dwell.reindex(labels.index).to_numpy()
    return realised_value(labels, settings.training.value)


def _markdown(settings, ds, table, aa_table, quality, support, variants, imps) -> str:
    counts = imps.groupby([C.BUCKET, C.POLICY, C.SOURCE]).size().rename("impressions")
    lines = [
        f"# A/B test up to {ds}: ranked feeds (treatment) vs chronological (control)",
        "",
        f"Profile `{settings.profile}`; control share {settings.simulator.serving.control_share}; "
        f"fresh every {settings.simulator.serving.fresh_every} slots; explore share "
        f"{settings.simulator.serving.explore_share}.",
        "",
        ab.markdown(table, title="Closed loop"),
        "",
        ab.markdown(aa_table, title=f"{AA} before the loop (both buckets chronological)"),
        "",
        "## Impressions by bucket, policy and source",
        "",
        md_table(counts.reset_index()),
    ]
    if quality:
        k = settings.precompute.quality_k
        rows = [
            (r, quality.get(f"feeds/value_at_{k}/{r}"), quality.get(f"feeds/share_of_oracle/{r}"))
            for r in (fq.ORACLE, fq.FEED, fq.BEFORE_RERANK, fq.REVERSE_CHRON, fq.POPULAR)
        ]
        frame = pd.DataFrame(rows, columns=["ranking", f"value@{k}", "share of oracle"])
        lines += [
            "",
            f"## Ceiling: offline feed value@{k} of the feeds served on the loop's first day",
            "",
            md_table(frame),
        ]
    if variants:
        lines += [
            "",
            f"## Expected value per active user on {ds} (simulator truth, value weights)",
            "",
            "Treatment re-simulated without each serving rule (same seeds, same feeds): what "
            "the rule is worth.",
            "",
            md_table(
                pd.Series(variants, name="expected value per user")
                .rename_axis("bucket")
                .reset_index()
            ),
        ]
    if support:
        lines += ["", "## Off-policy support", ""]
        lines += [f"- {k}: {v:.4f}" for k, v in support.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return run_job(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
