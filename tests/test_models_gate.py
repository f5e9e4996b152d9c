"""models.gate: every branch of `decide`, the harm guard, and `choose` over one night's kinds.

Numbers are chosen around the margins: NDCG margin 0.002, harm margin 0.01."""

from __future__ import annotations

import math

import pytest

from models.gate import NO_GUARD, Candidate, HarmGuard, choose, decide

BASELINES = {"reverse_chron": 0.60, "popularity": 0.65, "logged": math.nan}
GUARD = HarmGuard(("hide", "report"), 0.01)
CHAMPION_Q = {"hide/auc": 0.70, "hide/nce": 0.95, "report/auc": 0.68, "report/nce": 0.97}


def test_undefined_metric_never_promotes():
    d = decide(math.nan, None, BASELINES, 0.002, metric="validation NDCG@10")
    assert not d.promote and "undefined" in d.reason


def test_must_beat_the_best_baseline_by_the_margin():
    # 0.651 < popularity 0.65 + 0.002; the NaN baseline never counts as best.
    d = decide(0.651, None, BASELINES, 0.002)
    assert not d.promote
    assert "does not beat the best baseline 0.6500" in d.reason and "popularity" in d.reason


def test_no_champion_promotes_on_the_baseline_alone():
    d = decide(0.70, None, BASELINES, 0.002, guard=GUARD, quality={"hide/auc": 0.5})
    assert d.promote and d.reason.startswith("no champion yet")  # no champion: nothing to guard


def test_must_beat_the_champion_by_the_margin():
    d = decide(0.701, 0.70, BASELINES, 0.002)
    assert not d.promote and "does not beat champion 0.7000" in d.reason
    assert decide(0.702, 0.70, BASELINES, 0.002).promote  # exactly the margin is enough


def test_a_better_ndcg_with_harmless_negatives_is_promoted():
    # hide AUC 0.005 lower and NCE 0.005 higher: within the harm margin.
    quality = {**CHAMPION_Q, "hide/auc": 0.695, "hide/nce": 0.955}
    d = decide(
        0.72, 0.70, BASELINES, 0.002, guard=GUARD, quality=quality, champion_quality=CHAMPION_Q
    )
    assert d.promote and "beats champion" in d.reason


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("hide/auc", 0.50, "hide AUC 0.5000 against the champion's 0.7000 (worse by 0.2000"),
        ("report/nce", 1.00, "report NCE 1.0000 against the champion's 0.9700 (worse by 0.0300"),
    ],
)
def test_the_harm_guard_refuses_a_winner_blind_to_negative_feedback(key, value, words):
    quality = {**CHAMPION_Q, key: value}
    d = decide(
        0.75, 0.70, BASELINES, 0.002, guard=GUARD, quality=quality, champion_quality=CHAMPION_Q
    )
    assert not d.promote
    assert "beats champion 0.7000" in d.reason and "harm guard refuses it" in d.reason
    assert words in d.reason and "harm margin 0.01" in d.reason


def test_the_guard_skips_what_either_side_lacks():
    # A real log without hides: no hide metric on either side, nothing to compare.
    assert GUARD.harms({"report/auc": 0.68}, {"hide/auc": 0.7}) == []
    assert GUARD.harms({"hide/auc": math.nan}, CHAMPION_Q) == []
    assert NO_GUARD.harms({"hide/auc": 0.0}, CHAMPION_Q) == []


def candidate(version, kind, score, **quality):
    return Candidate(version, kind, score, BASELINES, {**CHAMPION_Q, **quality})


def test_choose_promotes_the_best_that_passes_and_says_why_for_the_others():
    night = [
        candidate("4", "gbdt", 0.71),
        candidate("5", "dnn", 0.69),  # under the champion
        candidate("6", "ensemble", 0.73, **{"hide/auc": 0.6}),  # best NDCG, harms hide
    ]
    out = choose(night, 0.70, CHAMPION_Q, 0.002, GUARD, metric="validation NDCG@10")
    assert [v for v, d in out.items() if d.promote] == ["4"]
    assert "harm guard refuses it" in out["6"].reason and "hide AUC 0.6000" in out["6"].reason
    assert "does not beat champion" in out["5"].reason
    assert "best of this night's kinds" in out["4"].reason
    assert "ensemble v6 0.7300, gbdt v4 0.7100, dnn v5 0.6900" in out["4"].reason


def test_choose_promotes_one_version_only():
    night = [candidate("4", "gbdt", 0.75), candidate("5", "ensemble", 0.76)]
    out = choose(night, None, None, 0.002, GUARD)
    assert out["5"].promote and not out["4"].promote
    assert out["4"].reason.startswith("version 5 (ensemble) won with 0.7600")
    # An undefined score sorts last and never wins.
    out = choose(
        [candidate("7", "dnn", math.nan), candidate("8", "gbdt", 0.7)], None, None, 0.0, GUARD
    )
    assert out["8"].promote and not out["7"].promote
