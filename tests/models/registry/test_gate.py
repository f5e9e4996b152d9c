"""models.registry.gate: every branch of `decide`, the harm guard, and `choose` over one night's
kinds.

Numbers are chosen around the margins: NDCG margin 0.002, harm margin 0.01."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.registry.gate import NO_GUARD, Candidate, HarmGuard, Sample, SampleRule, choose, decide

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


def test_the_harm_guard_prefers_a_safer_peer_of_the_same_night():
    # The demo night: no champion, the ensemble wins validation NDCG@10 by 0.00008 but its
    # hide AUC is 0.053 below the GBDT's, far beyond the 0.01 harm margin.
    night = [
        candidate("1", "gbdt", 0.74776, **{"hide/auc": 0.673}),
        candidate("2", "ensemble", 0.74784, **{"hide/auc": 0.620}),
    ]
    out = choose(night, None, None, 0.002, GUARD, metric="validation NDCG@10")
    assert out["1"].promote and not out["2"].promote
    assert "the harm guard prefers gbdt v1 of this night" in out["2"].reason
    assert "hide AUC 0.6200 against its 0.6730 (worse by 0.0530 > harm margin 0.01)" in (
        out["2"].reason
    )
    assert out["1"].reason.startswith("no champion yet")
    assert "ensemble v2 0.7478, gbdt v1 0.7478" in out["1"].reason


def test_a_peer_that_fails_the_gate_does_not_block():
    # The DNN is safer on hides but under the best baseline (0.65 + 0.002): it is no
    # alternative, so the ensemble above it is promoted despite its lower hide AUC.
    night = [
        candidate("2", "ensemble", 0.75, **{"hide/auc": 0.60}),
        candidate("3", "dnn", 0.651, **{"hide/auc": 0.70}),
    ]
    out = choose(night, None, None, 0.002, GUARD)
    assert out["2"].promote and not out["3"].promote
    assert "does not beat the best baseline" in out["3"].reason


def test_the_peer_guard_walks_down_a_chain_of_three():
    # The ensemble is no worse than the DNN right below it (hide AUC 0.60 vs 0.605, within
    # 0.01) but worse than the GBDT further down (0.60 vs 0.70): every lower peer counts. The
    # DNN is worse than the GBDT on hide AUC and report NCE (1.00 vs 0.97); the GBDT, last,
    # has no peer below and is promoted.
    night = [
        candidate("1", "gbdt", 0.72, **{"hide/auc": 0.70}),
        candidate("2", "ensemble", 0.74, **{"hide/auc": 0.60}),
        candidate("3", "dnn", 0.73, **{"hide/auc": 0.605, "report/nce": 1.00}),
    ]
    out = choose(night, None, None, 0.002, GUARD)
    assert [v for v, d in out.items() if d.promote] == ["1"]
    assert "prefers gbdt v1" in out["2"].reason and "hide AUC 0.6000 against its 0.7000" in (
        out["2"].reason
    )
    assert "prefers gbdt v1" in out["3"].reason and "report NCE 1.0000 against its 0.9700" in (
        out["3"].reason
    )


def test_a_refused_top_candidate_leaves_the_next_safe_one_the_winner():
    # The ensemble harms hide against the GBDT only; the DNN, next, is no worse than the
    # GBDT and wins; the GBDT is then refused in favour of the DNN.
    night = [
        candidate("1", "gbdt", 0.72, **{"hide/auc": 0.70}),
        candidate("2", "ensemble", 0.74, **{"hide/auc": 0.685}),
        candidate("3", "dnn", 0.73, **{"hide/auc": 0.695}),
    ]
    out = choose(night, None, None, 0.002, GUARD)
    assert [v for v, d in out.items() if d.promote] == ["3"]
    assert "prefers gbdt v1" in out["2"].reason
    assert out["1"].reason.startswith("version 3 (dnn) won with 0.7300")


def test_the_peer_guard_also_applies_against_a_champion():
    # Both beat the champion (0.70) and pass its guard; the ensemble is worse than the
    # GBDT on hide NCE (0.959 vs 0.945: +0.014) though each is within 0.01 of the champion.
    night = [
        candidate("1", "gbdt", 0.72, **{"hide/nce": 0.945}),
        candidate("2", "ensemble", 0.73, **{"hide/nce": 0.959}),
    ]
    out = choose(night, 0.70, CHAMPION_Q, 0.002, GUARD)
    assert out["1"].promote and not out["2"].promote
    assert "beats champion 0.7000" in out["2"].reason
    assert "hide NCE 0.9590 against its 0.9450 (worse by 0.0140" in out["2"].reason


def test_versions_that_each_harm_the_other_are_left_to_the_ranking():
    # This stop's demo night: the GBDT leads validation NDCG@10 and hide AUC, the ensemble and
    # the DNN lead report AUC. Each trades one risk for another, so none is safer than the
    # GBDT, which wins on NDCG.
    night = [
        candidate("1", "gbdt", 0.74776, **{"hide/auc": 0.6730, "report/auc": 0.6121}),
        candidate("2", "dnn", 0.73838, **{"hide/auc": 0.6195, "report/auc": 0.6423}),
        candidate("3", "ensemble", 0.74729, **{"hide/auc": 0.6566, "report/auc": 0.6392}),
    ]
    out = choose(night, None, None, 0.002, GUARD, metric="validation NDCG@10")
    assert [v for v, d in out.items() if d.promote] == ["1"]
    assert "won with 0.7478" in out["3"].reason and "won with 0.7478" in out["2"].reason


def test_a_safer_peer_is_named_as_worse_on_no_guarded_metric():
    night = [
        candidate("1", "gbdt", 0.72, **{"hide/auc": 0.70, "report/auc": 0.69}),
        candidate("2", "ensemble", 0.74, **{"hide/auc": 0.60, "report/auc": 0.695}),
    ]
    out = choose(night, None, None, 0.002, GUARD)
    assert out["1"].promote and "it is worse on no guarded metric" in out["2"].reason


# --- a gate that knows its sample -----------------------------------------------------------

RULE = SampleRule(min_requests=100, min_positives=150, n_boot=400, level=0.95, seed=0)


def gate_sample(n, gain, noise, seed=0):
    """Per request: popularity's metric, the model's = popularity's + gain + noise (centred, so
    the mean gain is `gain`), 2 positives each (so positives = 2n)."""
    rng = np.random.default_rng(seed)
    popularity = rng.uniform(0.4, 0.8, n)
    scatter = rng.normal(0, noise, n)
    return pd.DataFrame(
        {
            "model": popularity + gain + scatter - scatter.mean(),
            "popularity": popularity,
            "reverse_chron": popularity - 0.1,
            "logged": np.nan,
            "positives": 2.0,
        },
        index=pd.Index(np.arange(n) * 3, name="request_id"),
    )


def sample_decision(frame, champion=None, champion_series=None):
    base = {b: frame[b].mean() for b in ("popularity", "reverse_chron", "logged")}
    return decide(
        frame["model"].mean(), champion, base, 0.002, rule=RULE,
        sample=Sample(frame, champion=champion_series),
    )  # fmt: skip


def test_too_few_requests_or_positives_never_promote():
    # 24 requests whose mean gain is large (+0.05): the mean alone would promote.
    d = sample_decision(gate_sample(24, 0.05, 0.01))
    assert not d.promote
    assert "too small to decide: 24 requests where the metric is defined (minimum 100)" in d.reason
    few = gate_sample(120, 0.05, 0.01).assign(positives=1.0)  # 120 requests, 120 positives
    d = sample_decision(few)
    assert not d.promote and "120 positives in them (minimum 150)" in d.reason
    # Requests where the metric is undefined do not count.
    undefined = gate_sample(150, 0.05, 0.01)
    undefined.iloc[:60, 0] = np.nan
    assert "90 requests where" in sample_decision(undefined).reason


def test_a_gain_whose_interval_straddles_the_margin_is_not_promoted():
    # Mean gain +0.004 over popularity, noise 0.1 over 400 requests: the 95% interval is
    # about +-0.01, so it straddles the margin 0.002.
    frame = gate_sample(400, 0.004, 0.1, seed=1)
    d = sample_decision(frame)
    assert frame["model"].mean() >= frame["popularity"].mean() + 0.002  # the mean would pass
    assert not d.promote
    assert "beats the best baseline" in d.reason and "but not surely" in d.reason
    assert "straddles the margin 0.002" in d.reason and "over 400 requests" in d.reason


def test_a_sure_gain_promotes_and_the_champion_is_compared_request_by_request():
    frame = gate_sample(400, 0.05, 0.02, seed=2)
    first = sample_decision(frame)
    assert first.promote and first.reason.startswith("no champion yet")
    # A champion only 0.001 below on each request: the paired gain's interval is tight around
    # 0.001, below the margin, though the two means differ by as much as the spread allows.
    champion = frame["model"] - 0.001
    d = sample_decision(frame, champion.mean(), champion.sample(frac=1, random_state=0))
    assert not d.promote and "does not beat champion" in d.reason
    champion = frame["model"] - 0.01 + np.random.default_rng(3).normal(0, 0.1, 400)
    d = sample_decision(frame, champion.mean(), champion)
    assert not d.promote and "beats champion" in d.reason and "straddles" in d.reason
    champion = frame["model"] - 0.01
    assert sample_decision(frame, champion.mean(), champion).promote
    # A rule without a champion's sample cannot compare: nothing is promoted.
    d = sample_decision(frame, champion.mean(), None)
    assert not d.promote and "no per-request sample of the champion" in d.reason


def test_choose_gates_every_candidate_on_its_sample():
    sure, unsure = gate_sample(400, 0.05, 0.02, seed=4), gate_sample(400, 0.004, 0.1, seed=5)

    def base(frame):
        return {"popularity": frame["popularity"].mean()}

    night = [
        Candidate("7", "dnn", unsure["model"].mean(), base(unsure), CHAMPION_Q, unsure),
        Candidate("8", "gbdt", sure["model"].mean(), base(sure), CHAMPION_Q, sure),
        Candidate("9", "ensemble", 0.9, base(sure), CHAMPION_Q),  # no sample logged
    ]
    out = choose(night, None, None, 0.002, GUARD, rule=RULE)
    assert out["8"].promote and not out["7"].promote and "straddles" in out["7"].reason
    assert not out["9"].promote and "no per-request validation sample" in out["9"].reason
