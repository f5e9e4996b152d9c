"""models.evaluation.gap: history cohorts, AUC tables against the first scorer, cohort gaps with
their
share and a bootstrap interval over users."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.evaluation import gap
from models.evaluation.gap import (
    ALL,
    MODEL,
    ORACLE,
    auc_table,
    cohort_table,
    history_bucket,
    history_interests,
)
from models.evaluation.metrics import auc


@pytest.mark.parametrize(
    ("edges", "counts", "want"),
    [
        # The cohorts: an edge belongs to the bucket it closes.
        (
            (0, 20, 100),
            [0, 1, 20, 21, 100, 101, 5000],
            ["0", "1-20", "1-20", "21-100", "21-100", ">100", ">100"],
        ),
        ((10, 50), [0, 10, 11, 51], ["0-10", "0-10", "11-50", ">50"]),
        ((0,), [0, 3], ["0", ">0"]),
    ],
)
def test_history_bucket(edges, counts, want):
    got = history_bucket(np.array(counts), edges)
    assert list(got.astype(str)) == want
    assert got.ordered and len(got.categories) == len(edges) + 1


@pytest.mark.parametrize("edges", [(), (20, 20), (5, 1), (-1, 3)])
def test_history_bucket_rejects_bad_edges(edges):
    with pytest.raises(ValueError, match="edges"):
        history_bucket(np.array([1]), edges)


def _day(n: int = 4000, users: int = 200, seed: int = 0):
    """Labels drawn from a known probability; the model sees it through noise."""
    r = np.random.default_rng(seed)
    truth = r.beta(1, 12, n)
    y = {t: (r.random(n) < truth * s).astype(int) for t, s in (("click", 1), ("hide", 0.3))}
    labels = pd.DataFrame({f"label_{t}": v for t, v in y.items()})
    noisy = truth * np.exp(r.normal(0, 1.0, n))
    scorers = {
        ORACLE: pd.DataFrame({"p_click": truth, "p_hide": truth}),
        MODEL: pd.DataFrame({"p_click": noisy, "p_hide": noisy}),
    }
    return labels, scorers, r.integers(0, users, n)


def test_auc_table_counts_each_scorers_loss_from_the_first():
    labels, scorers, _ = _day()
    table = auc_table(labels, scorers, ("click", "hide")).set_index("scorer")
    for t in ("click", "hide"):
        y = labels[f"label_{t}"]
        assert table.loc[ORACLE, f"auc_{t}"] == auc(y, scorers[ORACLE][f"p_{t}"])
        assert table.loc[ORACLE, f"loss_{t}"] == 0.0  # the reference loses nothing to itself
        want = auc(y, scorers[ORACLE][f"p_{t}"]) - auc(y, scorers[MODEL][f"p_{t}"])
        assert table.loc[MODEL, f"loss_{t}"] == pytest.approx(want)
        assert want > 0  # noise costs AUC


def test_cohort_table_shares_gaps_and_intervals():
    labels, scorers, users = _day()
    cohort = history_bucket(users % 3, (0, 1))  # "0", "1", ">1" by a function of the user
    table = cohort_table(labels, scorers, cohort, users, ("click", "hide"), n_boot=100)
    assert list(table["cohort"].unique()) == [ALL, "0", "1", ">1"]
    click = table[table["task"] == "click"].set_index("cohort")
    assert click.loc[ALL, "share"] == 1.0 and click.loc[ALL, "n"] == len(labels)
    assert click.drop(ALL)["share"].sum() == pytest.approx(1.0)
    assert click.drop(ALL)["positives"].sum() == labels["label_click"].sum()
    for name, row in click.iterrows():
        rows = np.arange(len(labels)) if name == ALL else np.flatnonzero(cohort == name)
        y = labels["label_click"].to_numpy()[rows]
        assert row["auc_oracle"] == auc(y, scorers[ORACLE]["p_click"].to_numpy()[rows])
        assert row["gap"] == pytest.approx(row["auc_oracle"] - row["auc_model"])
        assert row["gap_lo"] < row["gap"] < row["gap_hi"]
    # The same seed, the same draws.
    again = cohort_table(labels, scorers, cohort, users, ("click", "hide"), n_boot=100)
    pd.testing.assert_frame_equal(table, again)


def test_a_model_equal_to_the_oracle_has_no_gap():
    labels, scorers, users = _day()
    same = {ORACLE: scorers[ORACLE], MODEL: scorers[ORACLE]}
    table = cohort_table(labels, same, history_bucket(users, (100,)), users, ("click",), n_boot=20)
    assert (
        (table["gap"] == 0).all() and (table["gap_lo"] == 0).all() and (table["gap_hi"] == 0).all()
    )


def test_a_cohort_with_too_few_positives_has_no_auc():
    labels, scorers, users = _day()
    cohort = history_bucket(np.arange(len(labels)) % 2, (0,))
    table = cohort_table(labels, scorers, cohort, users, ("hide",), n_boot=10, min_positives=10**6)
    assert table["positives"].sum() > 0
    assert table[["auc_model", "auc_oracle", "gap", "gap_lo", "gap_hi"]].isna().all().all()


def test_an_empty_cohort_or_one_without_positives_is_nan():
    labels, scorers, users = _day(n=400)
    cohort = history_bucket(np.zeros(len(labels)), (0, 5))  # nobody in "1-5" nor ">5"
    table = cohort_table(labels, scorers, cohort, users, ("click",), n_boot=10).set_index("cohort")
    assert table.loc["1-5", "n"] == 0 and table.loc["1-5", "share"] == 0.0
    assert np.isnan(table.loc["1-5", "auc_model"]) and np.isnan(table.loc["1-5", "gap_lo"])


def test_user_draws_keep_each_users_rows_together():
    users = np.array([7, 7, 7, 3, 9, 9])
    sizes = pd.Series(users).value_counts()
    repeated = False
    for rows in gap._user_draws(users, 50, np.random.default_rng(1)):
        picked = pd.Series(users[rows]).value_counts()
        assert (picked % sizes[picked.index] == 0).all()  # whole users only
        repeated |= bool((picked > sizes[picked.index]).any())
    assert repeated  # drawn with replacement


def test_cohort_table_needs_both_scorers():
    labels, scorers, users = _day(n=100)
    with pytest.raises(ValueError, match="model"):
        cohort_table(labels, {ORACLE: scorers[ORACLE]}, history_bucket(users), users)


def test_history_interests_shrink_each_viewer_towards_everyone():
    # Users 0 and 1 engaged with topics 0 and 2; user 2 with nothing.
    user = np.array([0, 0, 0, 1])
    topic = np.array([0, 0, 2, 2])
    est = history_interests(user, topic, n_users=3, n_topics=3, concentration=4.0)
    np.testing.assert_allclose(est.sum(axis=1), 1.0)
    everyone = np.array([2, 0, 2]) / 4  # the population's engaged topics
    np.testing.assert_allclose(est[2], everyone)  # no history: the prior
    # User 0: (counts + 4 * prior) / (3 + 4) = ([2, 0, 1] + [2, 0, 2]) / 7.
    np.testing.assert_allclose(est[0], np.array([4, 0, 3]) / 7)
    # More engagements, less prior: a long history is mostly the user's own mix.
    long = history_interests(np.zeros(400, int), np.r_[np.zeros(300, int), np.full(100, 1)], 1, 3)
    assert long[0, 0] == pytest.approx(0.75, abs=0.01)


def test_history_interests_reject_bad_ids():
    with pytest.raises(ValueError, match="user ids"):
        history_interests(np.array([5]), np.array([0]), n_users=3, n_topics=2)
    with pytest.raises(ValueError, match="topics"):
        history_interests(np.array([0]), np.array([2]), n_users=3, n_topics=2)
    # Nobody engaged at all: every user gets the uniform mix.
    np.testing.assert_allclose(history_interests(np.array([]), np.array([]), 2, 4), 0.25)
