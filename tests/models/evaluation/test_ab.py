"""The A/B report on hand-made frames and seeded simulations with a known answer."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models.evaluation import ab as ab
from models.value import ValueWeights, realised_value
from warehouse.catalog import ACTIONS, C

BASE_RATES = {"click": 0.10, "like": 0.03, "comment": 0.01, "share": 0.01}
BASE_RATES |= {"hide": 0.01, "report": 0.002}
DAYS = ("2026-01-01", "2026-01-02", "2026-01-03")


def _simulate(n_users: int, mult: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw impressions and engagements of n_users per bucket over DAYS.

    Each user is active on a day with probability 0.7, opens 1 + Poisson(1.5) sessions of 5..14
    impressions, and acts on an impression with BASE_RATES x their propensity (Gamma, mean 1);
    in treatment every action's probability is x mult. Dwell on a click: Exponential(30 s).
    """
    rng = np.random.default_rng(seed)
    user = np.arange(2 * n_users)
    bucket = np.where(user < n_users, ab.CONTROL, ab.TREATMENT)
    propensity = rng.gamma(2.0, 0.5, size=user.size) * np.where(user < n_users, 1.0, mult)
    imps, engs, next_request, next_imp = [], [], 0, 0
    for ds in DAYS:
        active = user[rng.random(user.size) < 0.7]
        sessions = 1 + rng.poisson(1.5, size=active.size)
        session_user = np.repeat(active, sessions)
        sizes = rng.integers(5, 15, size=session_user.size)
        request = np.repeat(next_request + np.arange(session_user.size), sizes)
        owner = np.repeat(session_user, sizes)
        imp_id = next_imp + np.arange(owner.size)
        next_request, next_imp = request[-1] + 1, imp_id[-1] + 1
        imps.append(
            pd.DataFrame(
                {
                    C.DS: ds,
                    C.BUCKET: bucket[owner],
                    C.USER_ID: owner,
                    C.REQUEST_ID: request,
                    C.IMPRESSION_ID: imp_id,
                }
            )
        )
        for action, rate in BASE_RATES.items():
            hit = rng.random(owner.size) < np.minimum(1.0, rate * propensity[owner])
            dwell = rng.exponential(30.0, hit.sum()) if action == "click" else np.nan
            engs.append(
                pd.DataFrame({C.IMPRESSION_ID: imp_id[hit], C.ACTION: action, C.DWELL_S: dwell})
            )
    return pd.concat(imps, ignore_index=True), pd.concat(engs, ignore_index=True)


def _users(n_users: int, mult: float, seed: int) -> pd.DataFrame:
    return ab.user_metrics(*_simulate(n_users, mult, seed), ValueWeights())


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    return ab.compare(_users(2000, 1.3, seed=11), n_boot=1000, seed=0).set_index(["metric", C.DS])


@pytest.fixture(scope="module")
def null_table() -> pd.DataFrame:
    return ab.compare(_users(2000, 1.0, seed=12), n_boot=1000, seed=0)


def _user_rows(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """A user_metrics-shaped frame: the given columns, every other count 0."""
    frame = pd.DataFrame(rows).fillna(0)
    for col in (ab.IMPRESSIONS, ab.SESSIONS, *ACTIONS, ab.NEGATIVE, C.DWELL_S, C.VALUE):
        if col not in frame:
            frame[col] = 0
    return frame


def test_user_metrics_counts_by_hand():
    impressions = pd.DataFrame(
        [  # ds, bucket, user, request, impression
            ("d1", ab.CONTROL, 1, 11, 101),
            ("d1", ab.CONTROL, 1, 11, 102),
            ("d1", ab.CONTROL, 1, 12, 103),
            ("d1", ab.TREATMENT, 2, 21, 201),
            ("d2", ab.CONTROL, 1, 13, 104),
        ],
        columns=[C.DS, C.BUCKET, C.USER_ID, C.REQUEST_ID, C.IMPRESSION_ID],
    )
    engagements = pd.DataFrame(
        [
            (101, "click", 50.0),
            (101, "like", np.nan),
            (103, "hide", np.nan),
            (201, "report", np.nan),
            (999, "click", 10.0),  # an impression not given: left out
        ],
        columns=[C.IMPRESSION_ID, C.ACTION, C.DWELL_S],
    )
    weights = ValueWeights(like=2.0)
    got = ab.user_metrics(impressions, engagements, weights).set_index([C.DS, C.USER_ID])
    assert list(got.index) == [("d1", 1), ("d1", 2), ("d2", 1)]
    u1 = got.loc[("d1", 1)]
    # 3 impressions in requests 11 and 12; click + like + hide; value 1 + 2 - 10 + 0.02 * 50
    assert (u1[ab.IMPRESSIONS], u1[ab.SESSIONS]) == (3, 2)
    assert (u1["click"], u1["like"], u1["hide"], u1[ab.NEGATIVE]) == (1, 1, 1, 1)
    assert u1[C.DWELL_S] == 50.0
    assert u1[C.VALUE] == pytest.approx(-6.0)
    assert got.loc[("d1", 2), C.VALUE] == pytest.approx(-50.0)  # one report
    assert got.loc[("d1", 2), ab.NEGATIVE] == 1
    assert got.loc[("d2", 1), [*ACTIONS, C.VALUE]].sum() == 0  # active, did nothing
    # the value is the value model's realised value summed over the user's impressions
    labels = impressions.merge(engagements, how="left", on=C.IMPRESSION_ID)
    flags = pd.get_dummies(labels[C.ACTION]).reindex(columns=list(ACTIONS), fill_value=0)
    per_imp = pd.concat([labels[[C.IMPRESSION_ID, C.DWELL_S]], flags.astype(float)], axis=1)
    per_imp = per_imp.groupby(C.IMPRESSION_ID).sum(min_count=1)
    per_imp[C.DWELL_S] = per_imp[C.DWELL_S].fillna(0.0)
    assert got.loc[("d1", 1), C.VALUE] == pytest.approx(
        realised_value(per_imp.loc[[101, 102, 103]], weights).sum()
    )
    # Engagements as the warehouse reads them carry their own ds (and other columns).
    with_ds = engagements.assign(**{C.DS: "d1", C.USER_ID: 0})
    again = ab.user_metrics(impressions, with_ds, weights).set_index([C.DS, C.USER_ID])
    pd.testing.assert_frame_equal(again, got)


def test_user_metrics_rejects_a_user_in_two_buckets():
    impressions = pd.DataFrame(
        {
            C.DS: ["d1", "d2"],
            C.BUCKET: [ab.CONTROL, ab.TREATMENT],
            C.USER_ID: [1, 1],
            C.REQUEST_ID: [1, 2],
            C.IMPRESSION_ID: [1, 2],
        }
    )
    engagements = pd.DataFrame({C.IMPRESSION_ID: [1], C.ACTION: ["click"], C.DWELL_S: [1.0]})
    with pytest.raises(ValueError, match="more than one bucket"):
        ab.user_metrics(impressions, engagements, ValueWeights())
    with pytest.raises(ValueError, match="unknown actions"):
        ab.user_metrics(impressions.iloc[:1], engagements.assign(action="poke"), ValueWeights())


def test_ratio_metrics_are_ratios_of_sums_and_pooled_per_user_day():
    users = _user_rows(
        [
            # control: A 1 click in 1 impression, B 0 in 9 -> ctr 1/10 (mean of ratios: 0.5)
            {C.DS: "d1", C.BUCKET: ab.CONTROL, C.USER_ID: 1, ab.IMPRESSIONS: 1, "click": 1},
            {C.DS: "d1", C.BUCKET: ab.CONTROL, C.USER_ID: 2, ab.IMPRESSIONS: 9},
            # treatment: 1 in 4 and 1 in 6 -> 2/10
            {C.DS: "d1", C.BUCKET: ab.TREATMENT, C.USER_ID: 3, ab.IMPRESSIONS: 4, "click": 1},
            {C.DS: "d1", C.BUCKET: ab.TREATMENT, C.USER_ID: 4, ab.IMPRESSIONS: 6, "click": 1},
            {C.DS: "d2", C.BUCKET: ab.TREATMENT, C.USER_ID: 3, ab.IMPRESSIONS: 5},
        ]
    ).assign(**{ab.SESSIONS: 1, C.VALUE: [0.0, 0.0, 3.0, 5.0, 1.0]})
    got = ab.bucket_metrics(users).set_index([C.DS, C.BUCKET])
    assert got.loc[("d1", ab.CONTROL), "ctr"] == pytest.approx(0.1)
    assert got.loc[("d1", ab.TREATMENT), "ctr"] == pytest.approx(0.2)
    # pooled: user 3 has 2 days (value 4), user 4 one (value 5): 9 / 3 user-days, not the
    # mean of per-user daily averages (2 + 5) / 2 = 3.5
    assert got.loc[(ab.ALL, ab.TREATMENT), ab.VALUE_PER_USER] == pytest.approx(3.0)
    assert got.loc[("d2", ab.TREATMENT), "n_users"] == 1
    with pytest.raises(ValueError, match="d2: no active users in control"):
        ab.compare(users, n_boot=50)
    table = ab.compare(users[users[C.DS] == "d1"], n_boot=50).set_index(["metric", C.DS])
    assert table.loc[("ctr", "d1"), "lift"] == pytest.approx(1.0)  # 0.2 / 0.1 - 1
    assert table.loc[("ctr", "d1"), ["n_control", "n_treatment"]].tolist() == [2, 2]


def test_ratio_estimate_by_hand():
    # den all 1: the standard error of the mean; var([1, 0, 2, 1], ddof=1) = 2/3, n = 4
    got = ab.ratio_estimate([1, 0, 2, 1], [1, 1, 1, 1])
    assert (got.value, got.se) == pytest.approx((1.0, np.sqrt(2 / 3 / 4)))
    # every unit has the same ratio: no uncertainty left
    assert ab.ratio_estimate([1, 3, 5], [2, 6, 10]).se == pytest.approx(0.0, abs=1e-15)


def test_identical_buckets_give_no_lift(null_table):
    pooled = null_table[null_table[C.DS] == ab.ALL].set_index("metric")
    for metric in (ab.VALUE_PER_USER, "sessions_per_user", "ctr", "like_rate"):
        row = pooled.loc[metric]
        # the noise at 2000 users a bucket: sd ~7% for the value (hide and report weigh -10
        # and -50), ~3% for ctr; a planted effect here is 30%
        assert abs(row["lift"]) < 0.1, metric
        assert row["ci_low"] < 0 < row["ci_high"], metric
        assert row["p_value"] > 0.05, metric


def test_planted_lift_is_found(planted):
    # every action's probability x1.3 and sessions unchanged: value (linear in the counts and
    # dwell), the rates and dwell per session rise by 30%, sessions per user do not move
    for metric in (ab.VALUE_PER_USER, "ctr", "like_rate", "negative_rate", "dwell_per_session"):
        row = planted.loc[(metric, ab.ALL)]
        assert row["ci_low"] < 0.3 < row["ci_high"], metric
        assert row["p_value"] < 0.01, metric
    # a day has fewer users and a wider interval than the pooled rows, but still finds it
    day = planted.loc[(ab.VALUE_PER_USER, DAYS[0])]
    assert day["ci_low"] < 0.3 < day["ci_high"] and day["p_value"] < 0.01
    assert day["ci_high"] - day["ci_low"] > (
        planted.loc[(ab.VALUE_PER_USER, ab.ALL), "ci_high"]
        - planted.loc[(ab.VALUE_PER_USER, ab.ALL), "ci_low"]
    )
    sessions = planted.loc[("sessions_per_user", ab.ALL)]
    assert sessions["ci_low"] < 0 < sessions["ci_high"]


def test_bootstrap_ci_matches_the_delta_method_on_a_large_sample():
    rng = np.random.default_rng(5)
    rows = []
    for bucket, rate in ((ab.CONTROL, 0.10), (ab.TREATMENT, 0.12)):
        imps = 1 + rng.poisson(20, size=10_000)
        clicks = rng.binomial(imps, np.minimum(1.0, rate * rng.gamma(2.0, 0.5, imps.size)))
        rows.append(pd.DataFrame({C.BUCKET: bucket, ab.IMPRESSIONS: imps, "click": clicks}))
    users = _user_rows(pd.concat(rows, ignore_index=True))
    users[C.DS], users[C.USER_ID], users[ab.SESSIONS] = "d1", np.arange(len(users)), 1
    row = ab.compare(users, n_boot=2000, seed=1).set_index(["metric", C.DS]).loc[("ctr", "d1")]
    # analytic: log(R_t / R_c) is normal with variance se_t^2 / R_t^2 + se_c^2 / R_c^2
    est = {b: ab.ratio_estimate(g["click"], g[ab.IMPRESSIONS]) for b, g in users.groupby(C.BUCKET)}
    c, t = est[ab.CONTROL], est[ab.TREATMENT]
    sd = np.hypot(c.se / c.value, t.se / t.value)
    z = stats.norm.ppf(0.975)
    lo, hi = np.exp(np.log(t.value / c.value) + np.array([-z, z]) * sd) - 1
    width = hi - lo
    assert row["ci_low"] == pytest.approx(lo, abs=0.1 * width)
    assert row["ci_high"] == pytest.approx(hi, abs=0.1 * width)
    assert row["lift"] == pytest.approx(t.value / c.value - 1)


def test_bootstrap_is_reproducible_with_its_seed():
    users = _users(300, 1.1, seed=3)
    first = ab.compare(users, n_boot=200, seed=7)
    pd.testing.assert_frame_equal(first, ab.compare(users, n_boot=200, seed=7))
    other = ab.compare(users, n_boot=200, seed=8)
    pd.testing.assert_frame_equal(
        first.drop(columns=["ci_low", "ci_high"]), other.drop(columns=["ci_low", "ci_high"])
    )
    assert not np.allclose(first["ci_low"], other["ci_low"])


def test_mlflow_metric_names(null_table):
    got = ab.mlflow_metrics(null_table)
    assert set(got) == {f"ab/{m}/{s}" for m in ab.METRICS for s in ab.STATS}
    row = null_table[(null_table["metric"] == "ctr") & (null_table[C.DS] == ab.ALL)].iloc[0]
    assert got["ab/ctr/lift"] == row["lift"]
    assert got["ab/ctr/p_value"] == row["p_value"]


def _bandit(n: int, seed: int):
    """A logged two-context, four-action bandit with known propensities and reward means."""
    rng = np.random.default_rng(seed)
    mu = np.array([[0.1, 0.2, 0.3, 0.8], [0.7, 0.3, 0.2, 0.1]])  # (context, action)
    logging = np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]])
    target = np.array([[0.1, 0.1, 0.1, 0.7], [0.7, 0.1, 0.1, 0.1]])
    x = rng.integers(0, 2, size=n)
    a = (rng.random(n)[:, None] > np.cumsum(logging[x], axis=1)).sum(axis=1)
    r = (rng.random(n) < mu[x, a]).astype(float)
    truth = 0.5 * (target * mu).sum()  # contexts equally likely
    return r, target[x, a], logging[x, a], truth


@pytest.mark.parametrize("estimator", [ab.ips, ab.snips])
def test_off_policy_estimators_recover_the_target_value(estimator):
    r, pt, pl, truth = _bandit(40_000, seed=9)
    got = estimator(r, pt, pl)
    assert abs(r.mean() - truth) > 0.2  # the logged average is far off: the weights matter
    assert got.value == pytest.approx(truth, abs=max(4 * got.se, 1e-3))
    assert 0 < got.se < 0.01


def test_snips_normalises_the_weights_and_ips_does_not():
    pt, pl = [0.5, 0.5, 0.0], [0.25, 0.25, 0.5]  # w = (2, 2, 0): sum 4 over 3 rows
    # a constant reward of 1: SNIPS = sum(w) / sum(w) = 1 with no error; IPS = mean(w) = 4/3,
    # se = sd(2, 2, 0) / sqrt(3) = sqrt(4/3) / sqrt(3) = 2/3
    snips = ab.snips(np.ones(3), pt, pl)
    assert (snips.value, snips.se) == pytest.approx((1.0, 0.0))
    ips = ab.ips(np.ones(3), pt, pl)
    assert (ips.value, ips.se) == pytest.approx((4 / 3, 2 / 3))
    assert ab.snips([2.0, 0.0, 7.0], pt, pl).value == pytest.approx(1.0)  # (4 + 0 + 0) / 4


@pytest.mark.parametrize(
    ("pt", "pl", "match"),
    [
        ([0.5, 0.5], [0.5, 0.0], "logging_prob"),  # a logged action cannot have probability 0
        ([0.5, 0.5], [0.5, 1.5], "logging_prob"),
        ([0.5, 1.2], [0.5, 0.5], "target_prob"),
        ([0.5, -0.1], [0.5, 0.5], "target_prob"),
        ([0.5, 0.5], [0.5], "misaligned"),
        ([0.5, np.nan], [0.5, 0.5], "finite"),
    ],
)
def test_off_policy_estimators_reject_bad_propensities(pt, pl, match):
    for estimator in (ab.ips, ab.snips):
        with pytest.raises(ValueError, match=match):
            estimator([1.0, 0.0], pt, pl)


def test_figures(planted):
    table = planted.reset_index()
    daily = ab.daily_lift_figure(table)
    (ax,) = daily.axes
    points = ax.containers[0].lines[0].get_ydata()  # the errorbar's markers, one per day
    want = 100 * table[(table["metric"] == ab.VALUE_PER_USER) & (table[C.DS] != ab.ALL)]["lift"]
    np.testing.assert_allclose(points, want)
    bars = ab.action_lift_figure(table).axes[0].patches
    assert [round(b.get_height(), 9) for b in bars] == [
        round(100 * planted.loc[(m, ab.ALL), "lift"], 9) for m in ab.ACTION_METRICS
    ]
    for fig in (daily, ab.action_lift_figure(table, ds=DAYS[1])):
        fig.savefig(io.BytesIO(), format="png")
    with pytest.raises(ValueError, match="no daily rows"):
        ab.daily_lift_figure(table, metric="nope")


def test_markdown_formats_lift_ci_and_p_value():
    table = pd.DataFrame(
        [("ctr", ab.ALL, 0.1, 0.13123, 0.3123, 0.2, 0.405, 0.00123, 100, 110)],
        columns=list(ab.TABLE_COLUMNS),
    )
    text = ab.markdown(table, title="Ranked vs chronological")
    assert text.startswith("# Ranked vs chronological")
    assert "| metric | control | treatment | lift | CI | p-value |" in text
    assert "| ctr | 0.1 | 0.1312 | +31.2% | [+20.0%, +40.5%] | 0.0012 |" in text
    assert "100 control and 110 treatment users" in text
